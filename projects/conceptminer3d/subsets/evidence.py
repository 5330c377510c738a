"""What the mined subset's Target slots are chosen by: the concepts' rarity weights, each
sample's Target scores (``selection='ranked'``) and the coverage objective's evidence, with the
crop-embedding clusters of its diversity term (``selection='coverage'``).

Apart from ``selection`` because the builder computes them from the mining tables before any
rule runs, and the selection measure (``evaluation``) weighs the 3D labels by the same rarity
rule.
"""

from __future__ import annotations

import math
from collections import Counter
from dataclasses import dataclass
from typing import Dict, Iterable, Mapping, Optional, Sequence, Tuple

import numpy as np
from scipy import sparse

from ..mining.contracts import GROUP_TARGET


@dataclass(frozen=True)
class ConceptEvidence:
    """What ``selection='coverage'`` maximises over (``target_evidence`` builds it).

    Attributes:
        matrix: (train samples, features) sparse evidence: a feature is a target concept (the
            summed scores of its Target crops in the sample) or one cluster of its crops.
        weights: ``w_f`` per feature.
        concepts: the concept of each feature.
        clusters: -1 for a concept's own feature, else the cluster's index within the concept.
    """

    matrix: sparse.csr_matrix
    weights: np.ndarray
    concepts: Tuple[str, ...]
    clusters: Tuple[int, ...]


def rarity_weights(top_concepts: Iterable[str]) -> Dict[str, float]:
    """concept → ``-ln(share)``, its share among the mined crops' top concepts.

    The surprisal of the concept, rather than ``1 / share``: it grows slowly enough that the
    crop's own confidence still counts. Among 10k crops, ``1 / share`` weighs a concept seen
    once 10× one seen ten times, so a single low-confidence (often mistaken) crop of it would
    outrank every confident crop of the other; ``-ln`` weighs them 9.2 and 6.9. A concept that
    is every mined crop weighs 0: there is no rarity to rank by, and the seeded draw decides.
    """
    return rarity_weights_of_counts(Counter(top_concepts))


def rarity_weights_of_counts(counts: Mapping[str, int]) -> Dict[str, float]:
    """``rarity_weights`` from the number of crops of each concept (concepts counted 0 left out)."""
    counts = {str(c): int(k) for c, k in counts.items() if k}
    total = sum(counts.values())
    return {c: -math.log(k / total) for c, k in sorted(counts.items())}


def target_scores(
    crops: Iterable[Tuple[int, str, str, float]], weights: Dict[str, float]
) -> Dict[int, Dict[str, float]]:
    """Train position → {target concept: best ``top_score × weight`` of its crops there}.

    Args:
        crops: ``(train position, group, top_concept, top_score)`` of each mined crop; only
            Target crops count.
        weights: ``rarity_weights`` of all mined crops.
    """
    scores: Dict[int, Dict[str, float]] = {}
    for i, group, concept, score in crops:
        if group != GROUP_TARGET:
            continue
        # A negative similarity is no evidence at all; clipped, so that rarity can only raise a score.
        value = max(float(score), 0.0) * weights[concept]
        best = scores.setdefault(i, {})
        best[concept] = max(best.get(concept, value), value)
    return scores


def target_evidence(
    positions: Sequence[int],
    concepts: Sequence[str],
    scores: Sequence[float],
    n: int,
    weights: Dict[str, float],
    clusters: Optional[Sequence[int]] = None,
    diversity: float = 0.0,
) -> ConceptEvidence:
    """The coverage objective's evidence from the Target crops.

    Args:
        positions, concepts, scores: train position, top concept and top score of each Target
            crop (parallel sequences). A negative similarity is no evidence (clipped to 0).
        n: number of train samples.
        weights: the concepts' rarity weights (``rarity_weights`` of every mined crop).
        clusters: each crop's cluster within its concept (``embedding_clusters``), for the
            diversity term.
        diversity: weight of the cluster features relative to the concept's own. With ``K``
            clusters, concept ``c`` contributes ``w_c·(√E_c + diversity·Σ_k √E_ck / √K)``:
            its cluster term lies between ``√E_c / √K`` (all evidence in one cluster) and
            ``√E_c`` (spread evenly), so ``diversity=1`` weighs spread as much as amount.

    Returns:
        ConceptEvidence: the same for any order of the crops (sums are taken in a canonical order).
    """
    positions = np.asarray(positions, np.int64)
    concepts = np.asarray(concepts, dtype=object)
    values = np.maximum(np.asarray(scores, np.float64), 0.0)
    names = sorted(set(concepts.tolist()))
    column = {c: k for k, c in enumerate(names)}
    feature_concepts, feature_clusters = list(names), [-1] * len(names)
    feature_weights = [weights[c] for c in names]
    rows, cols, vals = [positions], [np.array([column[c] for c in concepts], np.int64)], [values]
    if diversity and clusters is not None:
        clusters = np.asarray(clusters, np.int64)
        for c in names:
            of_c = concepts == c
            k = int(clusters[of_c].max()) + 1
            offset = len(feature_concepts)
            feature_concepts += [c] * k
            feature_clusters += list(range(k))
            feature_weights += [diversity * weights[c] / math.sqrt(k)] * k
            rows.append(positions[of_c])
            cols.append(offset + clusters[of_c])
            vals.append(values[of_c])
    rows, cols, vals = (np.concatenate(a) for a in (rows, cols, vals))
    # Summed in (sample, feature, value) order: float sums then do not depend on the crops' order.
    order = np.lexsort((vals, cols, rows))
    matrix = sparse.coo_matrix((vals[order], (rows[order], cols[order])), shape=(n, len(feature_concepts))).tocsr()
    return ConceptEvidence(
        matrix, np.asarray(feature_weights, np.float64), tuple(feature_concepts), tuple(feature_clusters)
    )


DIVERSITY_CLUSTERS = 8  # clusters of crop embeddings per target concept, for the diversity term
_CLUSTER_FIT_ROWS = 20_000  # k-means is fitted on at most this many crops of a concept (seeded draw)


def embedding_clusters(embeddings, concepts: Sequence[str], seed: int, k: int = DIVERSITY_CLUSTERS) -> np.ndarray:
    """Each crop's cluster among the crops of its concept: k-means (k-means++, seeded) on their
    CLIP embeddings, fitted on up to ``_CLUSTER_FIT_ROWS`` of them. Rows must come in a
    canonical order (the builder sorts by crop id) for the result not to depend on file order.

    Args:
        embeddings: (crops, d), row-aligned with ``concepts`` (may be a memmap slice).
        concepts: each crop's top concept.
        seed: k-means seed.
        k: clusters per concept (fewer when a concept has fewer distinct crops).
    """
    from sklearn.cluster import KMeans

    concepts = np.asarray(concepts, dtype=object)
    out = np.zeros(len(concepts), np.int64)
    for c in sorted(set(concepts.tolist())):
        rows = np.flatnonzero(concepts == c)
        x = np.asarray(embeddings[rows], np.float32)
        distinct = len(np.unique(x, axis=0)) if len(x) <= k else k
        if distinct < 2:
            continue
        fit_rows = np.random.default_rng(seed).permutation(len(x))[:_CLUSTER_FIT_ROWS]
        model = KMeans(n_clusters=min(k, distinct), n_init=1, random_state=seed).fit(x[np.sort(fit_rows)])
        out[rows] = model.predict(x)
    return out
