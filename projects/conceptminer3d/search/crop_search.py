"""Search the crops of a mining run by text, by example crop or by image file.

:func:`search_mining_run` embeds the queries (:mod:`.queries`), matches them against the run's
crop embeddings with the exact or the cached approximate index (:mod:`.index`), and returns the
top crops with where they lie (sample, camera, box) and what the run made of them (YOLO class,
top concept, group). :func:`write_search_results` writes them as ``search.parquet`` and a page
of thumbnails (:mod:`.page`).
"""

from __future__ import annotations

import dataclasses
import json
import os
from typing import List, Optional, Sequence, Tuple

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from ..mining.contracts import (
    CONCEPTS_FILE,
    CROPS_FILE,
    EMBEDDINGS_FILE,
    MANIFEST_FILE,
    require_mining_outputs,
)
from ..mining.models.model_loading import component_config
from ..mining.runtime.atomic_files import write_table_atomic
from ..mining.runtime.cache import CACHE_DIR
from .index import ExactCropIndex, IvfCropIndex, combine_scores, load_or_build_index, top_k_rows
from .page import write_search_page
from .queries import Query, build_run_embedder, embed_queries, parse_queries, vocabulary_template

__all__ = ['INDEX_KINDS', 'SEARCH_FILE', 'MiningRunEmbeddings', 'search_mining_run', 'write_search_results']

SEARCH_FILE = 'search.parquet'
INDEX_EXACT, INDEX_APPROXIMATE = 'exact', 'approximate'
INDEX_KINDS = (INDEX_EXACT, INDEX_APPROXIMATE)
# Crop columns a result row carries, and the padded box the embedding saw (for thumbnails).
_RESULT_COLUMNS = ('crop_id', 'sample_token', 'camera', 'x1', 'y1', 'x2', 'y2', 'yolo_class', 'yolo_conf')
_EMBEDDED_BOX = ('crop_x1', 'crop_y1', 'crop_x2', 'crop_y2')
# With several queries, the approximate index gathers this many candidates per wanted result
# from each query before ranking them all by their exact combined score.
_CANDIDATES_PER_RESULT = 4


@dataclasses.dataclass
class MiningRunEmbeddings:
    """A finished run's crop keys and embeddings (memory-mapped), and what computed them."""

    work_dir: str
    crop_ids: pa.ChunkedArray
    cameras: pa.ChunkedArray
    embeddings: np.ndarray
    manifest: dict
    _embedded: dict = dataclasses.field(default_factory=dict, repr=False)
    _embedder: object = dataclasses.field(default=None, repr=False)

    @classmethod
    def open(cls, work_dir: str) -> MiningRunEmbeddings:
        require_mining_outputs(work_dir, (CROPS_FILE, EMBEDDINGS_FILE, MANIFEST_FILE))
        with open(os.path.join(work_dir, MANIFEST_FILE)) as f:
            manifest = json.load(f)
        embeddings = np.load(os.path.join(work_dir, EMBEDDINGS_FILE), mmap_mode='r')
        if embeddings.ndim != 2 or embeddings.shape[1] == 0:
            raise ValueError(
                f'{work_dir} holds no crop embeddings (a run of the annotation concept source has none): '
                'search a run of the 2D models'
            )
        crops = pq.read_table(os.path.join(work_dir, CROPS_FILE), columns=['crop_id', 'camera'])
        if crops.num_rows != embeddings.shape[0]:
            raise ValueError(f'{work_dir}: {crops.num_rows} crops but {embeddings.shape[0]} embeddings (a torn run?)')
        return cls(work_dir, crops.column('crop_id'), crops.column('camera'), embeddings, manifest)

    @property
    def identity(self) -> dict:
        """What the embeddings were computed from: the run's detection-and-embedding cache key
        (models, frames, options) and the array's shape."""
        key = (self.manifest.get('cache') or {}).get('detect_embed', {}).get('key')
        return dict(detect_embed=key or self.manifest.get('fingerprint'), shape=list(self.embeddings.shape))

    def embed(self, queries: Sequence[str]) -> Tuple[List[Query], np.ndarray]:
        """The parsed queries and their embeddings, in the run's embedding space (kept, so a
        search and a subset from the same queries embed them once)."""
        key = tuple(queries)
        if key not in self._embedded:
            parsed = parse_queries(queries, self.crop_ids)
            template = vocabulary_template(self.config.get('concepts'))
            self._embedded[key] = parsed, embed_queries(parsed, self.embeddings, self.embedder, template)
        return self._embedded[key]

    @property
    def config(self) -> dict:
        return self.manifest.get('config') or {}

    def embedder(self):
        """The run's embedder, built on first use and kept."""
        if self._embedder is None:
            self._embedder = build_run_embedder(component_config(self.config, 'embedder'), self.embeddings.shape[1])
        return self._embedder

    def camera_mask(self, cameras: Optional[Sequence[str]]) -> Optional[np.ndarray]:
        if not cameras:
            return None
        known = set(pc.unique(self.cameras).to_pylist())
        unknown = sorted(set(cameras) - known)
        if unknown:
            raise ValueError(
                f'no crops from camera {", ".join(unknown)} in this run (it has {", ".join(sorted(known))})'
            )
        return pc.is_in(self.cameras, value_set=pa.array(list(cameras))).to_numpy(zero_copy_only=False)


def _approximate_search(
    run: MiningRunEmbeddings, vectors: np.ndarray, top: int, combine: str, mask: Optional[np.ndarray]
) -> tuple:
    index, info = load_or_build_index(
        os.path.join(run.work_dir, CACHE_DIR), run.embeddings, run.identity, IvfCropIndex()
    )
    wanted = top if len(vectors) == 1 else top * _CANDIDATES_PER_RESULT
    rows, _ = index.search(vectors, wanted, mask)
    # The candidates are ranked by their exact combined score, ties by row, as the exact search
    # ranks them (faiss orders ties as its cells happen to hold them).
    candidates = np.unique(rows[rows >= 0])
    exact = combine_scores(vectors @ np.asarray(run.embeddings[candidates]).T, combine)
    order = top_k_rows(exact, top)
    return candidates[order], exact[order], info


def search_mining_run(
    work_dir: str,
    queries: Sequence[str],
    top: int = 20,
    cameras: Optional[Sequence[str]] = None,
    combine: str = 'mean',
    index: str = INDEX_EXACT,
    run: Optional[MiningRunEmbeddings] = None,
) -> tuple:
    """The ``top`` crops of the run in ``work_dir`` most like ``queries``.

    Args:
        work_dir (str): a finished ``tools/mine.py`` run of the 2D models.
        queries (list[str]): text prompts, crop ids of the run, or image files (:mod:`.queries`).
        top (int): crops returned.
        cameras (list[str], optional): only crops from these cameras.
        combine (str): several queries score a crop by the ``mean`` of their cosines, or the
            ``max`` (a crop like any of them).
        index (str): ``exact`` (streamed over the embeddings) or ``approximate`` (faiss IVF,
            built once per run and cached under ``work_dir/cache/search_index/``).
        run (MiningRunEmbeddings, optional): the opened run, when the caller has it.

    Returns:
        tuple: a DataFrame of the results, best first (``rank``, ``score`` and the crop's
        ``sample_token``, ``camera``, box, ``yolo_class``, ``top_concept``, ``group``), the
        parsed queries, and the index's record (``None`` for the exact search).
    """
    if top < 1:
        raise ValueError(f'--top must be at least 1, got {top}')
    if index not in INDEX_KINDS:
        raise ValueError(f'index must be one of {INDEX_KINDS}, got {index!r}')
    combine_scores(np.zeros((1, 1)), combine)  # validates the rule before any model is built
    run = run or MiningRunEmbeddings.open(work_dir)
    mask = run.camera_mask(cameras)
    parsed, vectors = run.embed(queries)
    info = None
    if index == INDEX_APPROXIMATE:
        rows, scores, info = _approximate_search(run, vectors, top, combine, mask)
    else:
        rows, scores = ExactCropIndex(run.embeddings).search(vectors, top, combine, mask)
    return result_table(run, rows, scores), parsed, info


def result_table(run: MiningRunEmbeddings, rows: np.ndarray, scores: np.ndarray) -> pd.DataFrame:
    """The crops at ``rows`` (best first) with their score, box, class, top concept and group."""
    take = pa.array(rows, pa.int64())
    # crop ids and cameras are already in memory; the rest of the crop table is read once
    in_memory = dict(crop_id=run.crop_ids, camera=run.cameras)
    read = [c for c in (*_RESULT_COLUMNS, *_EMBEDDED_BOX) if c not in in_memory]
    picked = pq.read_table(os.path.join(run.work_dir, CROPS_FILE), columns=read).take(take).to_pandas()
    for name, column in in_memory.items():
        picked[name] = column.take(take).to_numpy(zero_copy_only=False)
    picked = picked[[*_RESULT_COLUMNS, *_EMBEDDED_BOX]]
    picked.insert(0, 'rank', np.arange(1, len(rows) + 1))
    picked.insert(1, 'score', np.asarray(scores, np.float32))
    picked.insert(2, 'row', np.asarray(rows, np.int64))
    concepts_path = os.path.join(run.work_dir, CONCEPTS_FILE)
    concepts = pd.DataFrame(columns=['crop_id', 'top_concept', 'group'])
    if os.path.isfile(concepts_path) and len(picked):
        concepts = pq.read_table(
            concepts_path,
            columns=['crop_id', 'top_concept', 'group'],
            filters=[('crop_id', 'in', list(picked.crop_id))],
        ).to_pandas()
    picked = picked.merge(concepts, on='crop_id', how='left')
    picked['top_concept'] = picked['top_concept'].fillna('')
    picked['group'] = picked['group'].fillna('')
    return picked


def write_search_results(
    out_dir: str, results: pd.DataFrame, queries: List[Query], work_dir: str, progress: bool = True
) -> dict:
    """``out_dir/search.parquet`` and ``out_dir/index.html`` (thumbnails, each linking to its
    camera image); returns their paths."""
    os.makedirs(out_dir, exist_ok=True)
    table_path = os.path.join(out_dir, SEARCH_FILE)
    write_table_atomic(pa.Table.from_pandas(results, preserve_index=False), table_path)
    page_path = write_search_page(out_dir, results, queries, work_dir, progress=progress)
    return dict(table=table_path, page=page_path)
