"""What a search asks for: text prompts, crops of the run, or image files, as embeddings.

A query is read as

- a **crop id** of the run (``sample_token/camera/crop_index``, as in ``crops.parquet``): its
  embedding is the run's own row, no model runs;
- an **image file** (a path that exists): embedded whole with the run's embedder;
- otherwise a **text prompt**, written into the vocabulary's prompt template (``'a photo of a
  {}'``) unless it already reads like one, and embedded with the run's embedder.

The embedder is the one the run used (``manifest.json``'s ``config.embedder``), so queries and
crops share one space; it is built only when a text or image query needs it.
"""

from __future__ import annotations

import dataclasses
import os
import re
from typing import Callable, List, Optional, Sequence

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from ..mining.runtime.images import decode_image
from ..mining.stages.concepts import ConceptVocabulary
from ..registry import EMBEDDERS

__all__ = ['Query', 'build_run_embedder', 'embed_queries', 'parse_queries', 'prompt_text']

QUERY_TEXT, QUERY_CROP, QUERY_IMAGE = 'text', 'crop', 'image'
# sample token / camera / crop index; a token has no '/'
_CROP_ID = re.compile(r'^[^/\s]+/[A-Z][A-Z0-9_]*/\d+$')


@dataclasses.dataclass(frozen=True)
class Query:
    """One query: its kind (``text`` / ``crop`` / ``image``), what the user typed, and for a
    crop its row in the run's tables."""

    kind: str
    value: str
    row: Optional[int] = None


def prompt_text(text: str, template: str) -> str:
    """``text`` in the vocabulary's prompt template, unless it already starts as the template
    does (``'a photo of a bicycle'`` stays as it is; ``'bicycle'`` becomes it)."""
    prefix = template.split('{}')[0].strip().lower()
    if prefix and text.strip().lower().startswith(prefix):
        return text.strip()
    return template.format(text.strip().replace('_', ' '))


def parse_queries(raw: Sequence[str], crop_ids: pa.ChunkedArray) -> List[Query]:
    """Classify each query string; raises ``ValueError`` for an empty query or an unknown crop id."""
    if not raw:
        raise ValueError('no query: give a text prompt, a crop id (sample_token/CAMERA/index) or an image file')
    queries = []
    for value in raw:
        if not value.strip():
            raise ValueError('an empty query: give a text prompt, a crop id or an image file')
        if os.path.isfile(value):
            queries.append(Query(QUERY_IMAGE, value))
        elif _CROP_ID.match(value):
            row = pc.index(crop_ids, value).as_py()
            if row < 0:
                raise ValueError(f'no crop {value!r} in this run (crop ids are sample_token/CAMERA/crop_index)')
            queries.append(Query(QUERY_CROP, value, row))
        else:
            queries.append(Query(QUERY_TEXT, value))
    return queries


def build_run_embedder(embedder_config: Optional[dict], dim: int):
    """The run's embedder, built from its manifest's config; raises ``ValueError`` if the run
    names none or it does not give the run's ``dim``-d embeddings."""
    if not embedder_config:
        raise ValueError('this run names no embedder in its manifest: only crop ids can be searched')
    embedder = EMBEDDERS.build(dict(embedder_config))
    if embedder.embedding_dim != dim:
        raise ValueError(
            f'the embedder {embedder_config.get("model_name")!r} gives {embedder.embedding_dim}-d embeddings, '
            f'the run holds {dim}-d ones: it is not the model the run was mined with'
        )
    return embedder


def embed_queries(
    queries: Sequence[Query], embeddings: np.ndarray, embedder: Callable[[], object], template: str
) -> np.ndarray:
    """(n_queries, d) float32, unit rows: the crops' own embeddings, and the run's embedder
    (``embedder()`` returns it; called only for texts and images) for texts and images, each
    kind in one batch."""
    out = np.zeros((len(queries), embeddings.shape[1]), np.float32)
    texts = [(i, q) for i, q in enumerate(queries) if q.kind == QUERY_TEXT]
    images = [(i, q) for i, q in enumerate(queries) if q.kind == QUERY_IMAGE]
    decoded = []
    for _, q in images:
        image, _status = decode_image(q.value)
        if image is None:
            raise ValueError(f'cannot read image {q.value!r} (not an image file, or corrupt)')
        decoded.append(image)
    if texts:
        out[[i for i, _ in texts]] = embedder().encode_texts([prompt_text(q.value, template) for _, q in texts])
    if images:
        out[[i for i, _ in images]] = embedder().encode_images(decoded)
    for i, q in enumerate(queries):
        if q.kind == QUERY_CROP:
            out[i] = embeddings[q.row]
    return out


def vocabulary_template(concepts_config: Optional[dict]) -> str:
    """The prompt template of the run's vocabulary (the dataclass's default if it names none)."""
    vocabulary = (concepts_config or {}).get('vocabulary') or {}
    return vocabulary.get('prompt_template') or ConceptVocabulary.prompt_template
