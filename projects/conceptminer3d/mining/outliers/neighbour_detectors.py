"""The neighbour-based outlier detectors, LOF and kNN distance, which search a random reference
subsample (:mod:`.neighbours`), and :func:`fit_sharing_neighbours`, which fits several of them
with one search."""

from __future__ import annotations

import numpy as np
from sklearn.utils.validation import validate_data

from conceptminer3d.registry import OUTLIER_DETECTORS

from .base import INPUT_DTYPES, BaseEmbeddingOutliers, check_positive_int, offset_for_contamination
from .neighbours import build_reference, nearest_first, parallel_map, row_blocks

__all__ = ['fit_sharing_neighbours', 'KnnDistanceOutliers', 'LocalOutlierFactorOutliers']

# Added to the mean reachability distance before inverting it, as scikit-learn's LOF does,
# so that duplicates (reachability distance 0) get a large but finite density.
_LRD_EPSILON = 1e-10


class _ReferenceNeighbourOutliers(BaseEmbeddingOutliers):
    """Base of the neighbour-based detectors: PCA + random reference subsample.

    Args:
        contamination (float): Expected fraction of outliers, in (0, 0.5]. Defaults to
            0.1.
        n_neighbors (int): Neighbours per crop (in the reference set). Defaults to 20.
        n_reference (int): Size of the random reference subsample the neighbours are
            searched in; with at most this many fit samples all of them are used (exact
            method). Defaults to 8192.
        n_components (int | None): PCA dimensions the distances are measured in; None
            (or at least the embedding size) keeps exact distances. Defaults to 32.
        random_state (int | None): Seed of the reference subsample. Defaults to 42.
        chunk_size (int): Queries per matrix product; memory is
            ``chunk_size * n_reference * 4`` bytes per worker. Defaults to 256.
        n_jobs (int | None): Threads scoring chunks in parallel; -1 = all cores.
            Defaults to -1.
    """

    def __init__(
        self,
        *,
        contamination: float = 0.1,
        n_neighbors: int = 20,
        n_reference: int = 8192,
        n_components: int | None = 32,
        random_state: int | None = 42,
        chunk_size: int = 256,
        n_jobs: int | None = -1,
    ):
        super().__init__(contamination=contamination)
        self.n_neighbors = n_neighbors
        self.n_reference = n_reference
        self.n_components = n_components
        self.random_state = random_state
        self.chunk_size = chunk_size
        self.n_jobs = n_jobs

    def check_params(self) -> None:
        super().check_params()
        check_positive_int('n_neighbors', self.n_neighbors)
        check_positive_int('n_reference', self.n_reference, minimum=2)
        check_positive_int('chunk_size', self.chunk_size)
        if self.n_components is not None:
            check_positive_int('n_components', self.n_components)

    def neighbour_search_options(self) -> tuple:
        """What the neighbour search depends on: detectors that agree on it can share one
        (:func:`fit_sharing_neighbours`)."""
        return (self.n_reference, self.n_components, self.random_state, self.chunk_size, self.n_jobs)

    # Whether ``_fit_reference`` needs the reference's own neighbours (LOF's densities do).
    _uses_reference_neighbours = False

    def _fit(self, X: np.ndarray) -> None:
        self._set_reference(X, build_reference(X, self.n_reference, self.n_components, self.random_state))
        if self._uses_reference_neighbours:
            self._fit_reference(*self._reference_neighbours(self.n_neighbors_))

    def _set_reference(self, X: np.ndarray, reference: tuple) -> None:
        self.reference_indices_, self.neighbours_ = reference
        # As in sklearn, k is capped by the number of *other* reference points.
        self.n_neighbors_ = min(self.n_neighbors, self.neighbours_.size - 1)

    def _reference_neighbours(self, k: int) -> tuple:
        """Every reference point's k nearest other reference points, nearest first."""
        parts = self._map_chunks(
            self.neighbours_.raw, lambda chunk: nearest_first(*self.neighbours_.kneighbors(chunk, k))
        )
        return np.concatenate([p[0] for p in parts]), np.concatenate([p[1] for p in parts])

    def _fit_reference(self, squared: np.ndarray, indices: np.ndarray) -> None:
        """Precompute per-reference-point statistics from the reference's own neighbours
        (leave-one-out, nearest first)."""

    def _score_neighbours(self, squared: np.ndarray, indices: np.ndarray) -> np.ndarray:
        raise NotImplementedError

    def _map_chunks(self, X: np.ndarray, function) -> list:
        chunks = list(row_blocks(X.shape[0], self.chunk_size))
        return parallel_map(lambda rows: function(X[rows]), chunks, self.n_jobs)

    def _score(self, X: np.ndarray) -> np.ndarray:
        k = self.n_neighbors_

        def score_chunk(chunk):
            return self._score_neighbours(*nearest_first(*self.neighbours_.kneighbors(chunk, k)))

        return np.concatenate(self._map_chunks(X, score_chunk))


def fit_sharing_neighbours(detectors: list, X) -> None:
    """Fit neighbour detectors that agree on ``neighbour_search_options`` with one search.

    The reference is drawn once, and each chunk of rows is searched once for the largest
    ``n_neighbors`` among the detectors; each detector scores the chunk with its own first k,
    nearest first, which is what its own search finds (up to distance ties at the k-th
    neighbour). Memory stays one chunk's neighbours, as in ``fit``. The result is each detector
    fitted as ``fit(X)`` would fit it.
    """
    options = {d.neighbour_search_options() for d in detectors}
    if len(options) != 1:
        raise ValueError(f'the detectors disagree on their neighbour search: {sorted(map(str, options))}')
    for detector in detectors:
        detector.check_params()
        X = validate_data(detector, X, dtype=INPUT_DTYPES, ensure_min_samples=2)
    first = detectors[0]
    reference = build_reference(X, first.n_reference, first.n_components, first.random_state)
    for detector in detectors:
        detector._set_reference(X, reference)
    k_max = max(d.n_neighbors_ for d in detectors)
    if any(d._uses_reference_neighbours for d in detectors):
        own_squared, own_indices = first._reference_neighbours(k_max)
        for detector in detectors:
            k = detector.n_neighbors_
            detector._fit_reference(own_squared[:, :k], own_indices[:, :k])

    def score_chunk(chunk):
        squared, indices = nearest_first(*reference[1].kneighbors(chunk, k_max))
        return [d._score_neighbours(squared[:, : d.n_neighbors_], indices[:, : d.n_neighbors_]) for d in detectors]

    parts = first._map_chunks(X, score_chunk)
    for i, detector in enumerate(detectors):
        detector.fit_scores_ = np.concatenate([p[i] for p in parts])
        detector.offset_ = offset_for_contamination(detector.fit_scores_, detector.contamination)


@OUTLIER_DETECTORS.register_module()
class LocalOutlierFactorOutliers(_ReferenceNeighbourOutliers):
    """Local outlier factor (Breunig et al. 2000) with neighbours in a reference subsample.

    ``score_samples`` is ``-LOF`` (about -1 for inliers, lower for outliers), i.e.
    scikit-learn's ``negative_outlier_factor_`` convention; for N <= ``n_reference`` and
    no PCA reduction it equals ``LocalOutlierFactor(n_neighbors).negative_outlier_factor_``.

    Args:
        contamination, n_neighbors, n_reference, n_components, random_state, chunk_size,
            n_jobs: See :class:`_ReferenceNeighbourOutliers` (``n_neighbors`` defaults
            to 20, as in scikit-learn).
    """

    _uses_reference_neighbours = True

    def _fit_reference(self, squared: np.ndarray, indices: np.ndarray) -> None:
        # k-distance and local reachability density of every reference point, computed
        # leave-one-out within the reference (the point's own copy is skipped).
        distances = np.sqrt(squared, dtype=np.float64)
        self.reference_k_distance_ = distances.max(axis=1)
        self.reference_lrd_ = self._local_reachability_density(distances, indices)

    def _local_reachability_density(self, distances: np.ndarray, indices: np.ndarray) -> np.ndarray:
        reachability = np.maximum(distances, self.reference_k_distance_[indices])
        return 1.0 / (reachability.mean(axis=1) + _LRD_EPSILON)

    def _score_neighbours(self, squared: np.ndarray, indices: np.ndarray) -> np.ndarray:
        distances = np.sqrt(squared, dtype=np.float64)
        density = self._local_reachability_density(distances, indices)
        return -(self.reference_lrd_[indices].mean(axis=1) / density)


@OUTLIER_DETECTORS.register_module()
class KnnDistanceOutliers(_ReferenceNeighbourOutliers):
    """Distance to the nearest neighbours: far from every other crop means unusual.

    ``score_samples`` is minus the mean Euclidean distance to the ``n_neighbors`` nearest
    reference crops (``aggregation='mean'``) or to the k-th nearest (``'kth'``). For
    L2-normalised embeddings the Euclidean distance is a monotone function of the cosine
    similarity, sqrt(2 - 2 cos).

    Args:
        contamination (float): Expected fraction of outliers, in (0, 0.5]. Defaults to
            0.1.
        n_neighbors (int): Neighbours averaged (or the rank used with ``'kth'``).
            Defaults to 10.
        aggregation (str): ``'mean'`` (smoother) or ``'kth'``. Defaults to ``'mean'``.
        n_reference, n_components, random_state, chunk_size, n_jobs: See
            :class:`_ReferenceNeighbourOutliers` (reference subsample, PCA, chunking).
    """

    _AGGREGATIONS = ('mean', 'kth')

    def __init__(
        self,
        *,
        contamination: float = 0.1,
        n_neighbors: int = 10,
        aggregation: str = 'mean',
        n_reference: int = 8192,
        n_components: int | None = 32,
        random_state: int | None = 42,
        chunk_size: int = 256,
        n_jobs: int | None = -1,
    ):
        super().__init__(
            contamination=contamination,
            n_neighbors=n_neighbors,
            n_reference=n_reference,
            n_components=n_components,
            random_state=random_state,
            chunk_size=chunk_size,
            n_jobs=n_jobs,
        )
        self.aggregation = aggregation

    def check_params(self) -> None:
        super().check_params()
        if self.aggregation not in self._AGGREGATIONS:
            raise ValueError(f'aggregation must be one of {self._AGGREGATIONS}, got {self.aggregation!r}')

    def _score_neighbours(self, squared: np.ndarray, indices: np.ndarray) -> np.ndarray:
        if self.aggregation == 'kth':
            return -np.sqrt(squared.max(axis=1), dtype=np.float64)
        return -np.sqrt(squared, dtype=np.float64).mean(axis=1)
