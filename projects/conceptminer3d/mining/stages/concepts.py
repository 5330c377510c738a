"""Stage 6: score captioned crops against a concept vocabulary and group them.

score(crop, c) = (1 - w) · cos(image, c) + w · cos(caption, c)

with a fixed text weight w, or the research prototype's adaptive weight that trusts the
caption more when it agrees with the image:
    q = clip((cos(image, caption) + 0.2) / 0.7, 0, 1),   w = clip(0.2 + 0.6 · q, 0.1, 0.8)
Groups: Target (top concept in the target list), Rare (top concept not in the common
list), Common (otherwise). Everything here is a pure function of arrays.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Optional, Sequence, Tuple, Union

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from ..contracts import GROUP_COMMON, GROUP_RARE, GROUP_TARGET, concept_table

# The ten nuScenes detection classes, in mmdet3d's config order (the captioner's prompt
# names them). The mining vocabulary is not derived from it: it is a user's list, written
# in the mining config (configs/mining/default.py) and nowhere else.
NUSCENES_CLASSES = (
    'car',
    'truck',
    'construction_vehicle',
    'bus',
    'trailer',
    'barrier',
    'motorcycle',
    'bicycle',
    'pedestrian',
    'traffic_cone',
)
TextWeight = Union[float, str]


@dataclass(frozen=True)
class ConceptVocabulary:
    """The concepts crops are scored against, and how their names group them.

    Args:
        concepts (tuple[str]): concept names, underscores for spaces.
        target (tuple[str]): concepts whose crops are Target.
        common (tuple[str]): concepts whose crops are Common; any other top concept is Rare.
        prompt_template (str): text encoded for each concept, with ``{}`` for its name.
    """

    concepts: Tuple[str, ...]
    target: Tuple[str, ...]
    common: Tuple[str, ...]
    prompt_template: str = 'a photo of a {}'

    def __post_init__(self):
        object.__setattr__(self, 'concepts', tuple(self.concepts))
        object.__setattr__(self, 'target', tuple(self.target))
        object.__setattr__(self, 'common', tuple(self.common))
        if not self.concepts:
            raise ValueError('the concept vocabulary is empty')
        if len(set(self.concepts)) != len(self.concepts):
            raise ValueError('the concept vocabulary has duplicates')
        unknown = sorted((set(self.target) | set(self.common)) - set(self.concepts))
        if unknown:
            raise ValueError(f'target/common concepts not in the vocabulary: {unknown}')
        if '{}' not in self.prompt_template:
            raise ValueError("prompt_template needs a '{}' for the concept name")

    def prompts(self) -> list:
        return [self.prompt_template.format(c.replace('_', ' ')) for c in self.concepts]


def adaptive_text_weight(image_caption_cos: np.ndarray) -> np.ndarray:
    quality = np.clip((image_caption_cos + 0.2) / 0.7, 0.0, 1.0)
    return np.clip(0.2 + 0.6 * quality, 0.1, 0.8)


def validate_text_weight(weight_text: TextWeight) -> None:
    if weight_text == 'adaptive':
        return
    if isinstance(weight_text, bool) or not isinstance(weight_text, (int, float)) or not 0.0 <= weight_text <= 1.0:
        raise ValueError(f"weight_text must be 'adaptive' or a number in [0, 1], got {weight_text!r}")


def score_concepts(
    image_emb: np.ndarray, caption_emb: np.ndarray, concept_emb: np.ndarray, weight_text: TextWeight = 'adaptive'
) -> Tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Returns (scores (n, c), text weight per crop (n,), cos(image, caption) (n,)).

    All embeddings must be L2-normalised, so dot products are cosines."""
    if image_emb.shape != caption_emb.shape:
        raise ValueError(f'image and caption embeddings differ in shape: {image_emb.shape} vs {caption_emb.shape}')
    validate_text_weight(weight_text)
    image_caption_cos = np.einsum('nd,nd->n', image_emb, caption_emb)
    w = (
        adaptive_text_weight(image_caption_cos)
        if weight_text == 'adaptive'
        else np.full(len(image_emb), float(weight_text))
    )
    scores = (1.0 - w)[:, None] * (image_emb @ concept_emb.T) + w[:, None] * (caption_emb @ concept_emb.T)
    return scores.astype(np.float32), w.astype(np.float32), image_caption_cos.astype(np.float32)


def top_k(scores: np.ndarray, k: int) -> Tuple[np.ndarray, np.ndarray]:
    """Indices and values of the k best concepts per row, best first (ties: lower index)."""
    k = min(k, scores.shape[1])
    order = np.argsort(-scores, axis=1, kind='stable')[:, :k]
    return order, np.take_along_axis(scores, order, axis=1)


def top_concepts(
    embeddings: np.ndarray,
    rows: np.ndarray,
    caption_emb: Optional[np.ndarray],
    concept_emb: np.ndarray,
    weight_text: TextWeight,
    k: int,
    block_rows: int = 65536,
) -> Tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """``top_k`` of ``score_concepts`` for crops ``embeddings[rows]`` (with caption embeddings
    ``caption_emb``, row-aligned with ``rows``; None without captions), a block of rows at a
    time, so that memory does not grow with the number of crops (both inputs may be
    memory-mapped).

    Without a caption the text term has nothing to add: the score is cos(image, concept),
    whatever ``weight_text`` says, and the agreement is NaN.

    Returns:
        (top concept indices (n, k), their scores (n, k), text weight (n,), cos(image, caption) (n,)).
    """
    n, k = len(rows), min(k, len(concept_emb))
    order = np.zeros((n, k), np.int64)
    values = np.zeros((n, k), np.float32)
    weights = np.zeros(n, np.float32)
    agreement = np.full(n, np.nan, np.float32)
    for start in range(0, n, block_rows):
        block = slice(start, min(start + block_rows, n))
        image_emb = np.asarray(embeddings[rows[block]], np.float32)
        if caption_emb is None:
            scores, weights[block], _ = score_concepts(image_emb, np.zeros_like(image_emb), concept_emb, 0.0)
        else:
            caption_block = np.asarray(caption_emb[block], np.float32)
            scores, weights[block], agreement[block] = score_concepts(
                image_emb, caption_block, concept_emb, weight_text
            )
        order[block], values[block] = top_k(scores, k)
    return order, values, weights, agreement


def assign_groups(top_concepts: Sequence[str], vocabulary: ConceptVocabulary) -> list:
    target, common = set(vocabulary.target), set(vocabulary.common)
    return [GROUP_TARGET if c in target else GROUP_RARE if c not in common else GROUP_COMMON for c in top_concepts]


def concepts_of_crops(
    crops: pa.Table,
    embeddings: np.ndarray,
    scored_ids: pa.Array,
    caption_emb: Optional[np.ndarray],
    concept_emb: np.ndarray,
    vocabulary: ConceptVocabulary,
    weight_text: TextWeight,
    k: int,
) -> pa.Table:
    """The concept table (``contracts.CONCEPT_SCHEMA``) of the crops ``scored_ids`` names, in
    that order: ``top_concepts`` of their image embeddings (rows of ``embeddings``, aligned with
    ``crops``) and their caption embeddings (aligned with ``scored_ids``; None without
    captions), and the group of each crop's top concept."""
    rows = pc.index_in(scored_ids, value_set=crops.column('crop_id')).to_numpy().astype(np.int64, copy=False)
    order, values, weights, agreement = top_concepts(embeddings, rows, caption_emb, concept_emb, weight_text, k)
    top_names = np.asarray(vocabulary.concepts, dtype=object)[order]
    groups = assign_groups(top_names[:, 0], vocabulary)
    return concept_table(crops.take(pa.array(rows)), top_names, values, weights, agreement, groups)
