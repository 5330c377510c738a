"""Outlier detectors for CLIP crop embeddings (the "unusual crop" stage of mining).

Every camera crop carries an L2-normalised CLIP image embedding. Three detectors flag the
unusual ones; their flags are merged with :func:`combine_outlier_flags` (``union`` by
default, or a majority ``vote``). All three follow the scikit-learn outlier-detector API:

* ``fit(X)`` learns the model and sets ``threshold_`` so that ``round(contamination * n)``
  of the fit data score below it (ties at the boundary are kept as inliers);
  ``fit_scores_`` holds the scores of the fit data.
* ``score_samples(X)``: higher means more normal (as in scikit-learn).
* ``decision_function(X)``: ``score_samples(X) - threshold_``, negative for outliers.
* ``predict(X)``: +1 inlier / -1 outlier; ``fit_predict(X)`` reuses the fit-time scores.

Scaling to a million crops
--------------------------
Exact LOF and kNN distance compare every crop with every other crop, O(N^2 d): about
10^12 distance evaluations for N = 10^6, far beyond the budget (the whole stage must score
10^6 x 512 crops in under two minutes on two CPU cores). The neighbour detectors therefore

1. project the embeddings onto their top ``n_components`` principal axes (PCA fitted on a
   subsample). CLIP embeddings have a low intrinsic dimension, so 32 axes keep the
   neighbourhood structure while making each distance 16x cheaper than in 512-d;
2. search neighbours in a fixed-size random *reference* subsample of ``n_reference`` crops
   instead of the whole set. Every crop is scored against the reference, so the cost is
   O(N m d) and linear in N; the reference crops themselves are scored leave-one-out. A
   reference subsample estimates the same density, only at a coarser scale (k neighbours
   among m reference crops cover about k N / m crops), which suits the search for *rare*
   objects: a cluster much smaller than N / m crops counts as rare;
3. compute the distances as ``||r||^2 - 2 q.r`` with one float32 matrix product per chunk of
   queries (``||q||^2`` is constant per query and is added only to the k selected values),
   and find the k smallest with a block-minimum pre-selection followed by
   ``np.argpartition`` on ~sqrt(m k) candidates (argpartition over all m columns costs more
   than the matrix product). Memory is bounded by ``chunk_size x n_reference`` per worker;
   chunks run on ``n_jobs`` threads (numpy and single-threaded BLAS release the GIL).

When the data fit in the reference (N <= ``n_reference``) and are not reduced
(``n_components=None`` or >= the embedding size), the result is the exact method: the
LOF scores equal scikit-learn's ``LocalOutlierFactor(n_neighbors=k).negative_outlier_factor_``.

Leave-one-out is defined by content, so that ``predict`` on the fit data reproduces the
fit-time scores exactly: a query that is bit-identical to a reference crop is treated as
that crop and one identical copy is left out of its neighbourhood (leaving out one
duplicate or another gives the same distances).

``IsolationForestOutliers`` wraps :class:`sklearn.ensemble.IsolationForest`, which is
already linear in N: each tree only sees ``max_samples`` rows, so it is fitted on a random
subsample (changes nothing statistically, avoids touching 10^6 rows at fit time), and
scoring is chunked over rows and spread over threads.
"""
from __future__ import annotations

import math
import numbers
from collections.abc import Iterator, Mapping
from concurrent.futures import ThreadPoolExecutor

import numpy as np
from joblib import effective_n_jobs
from sklearn.base import BaseEstimator, OutlierMixin
from sklearn.ensemble import IsolationForest
from sklearn.utils import check_random_state
from sklearn.utils.validation import check_is_fitted
from threadpoolctl import threadpool_limits

from conceptminer3d.registry import OUTLIER_DETECTORS

__all__ = [
    'IsolationForestOutliers',
    'KnnDistanceOutliers',
    'LocalOutlierFactorOutliers',
    'combine_outlier_flags',
]

# Rows per block when validating the raw embeddings: bounds the temporary boolean and
# float32 copies (8 MB at 512-d) however large the input.
_ROW_BLOCK = 4096
# Added to the mean reachability distance before inverting it, as scikit-learn's LOF does,
# so that duplicates (reachability distance 0) get a large but finite density.
_LRD_EPSILON = 1e-10
# A neighbour whose squared distance is below this fraction of the squared norms is checked
# for being a bit-identical copy of the query. The float32 expansion ||q||^2 + ||r||^2 - 2q.r
# leaves ~1e-7 relative error, so a true copy is always caught; a false candidate only costs
# an exact comparison.
_COPY_CANDIDATE_RTOL = 1e-4
# Padding value for reference columns that only round the reference up to whole blocks.
_FAR_AWAY = np.float32(np.finfo(np.float32).max / 16)


def _validate_contamination(contamination) -> float:
    if (isinstance(contamination, bool) or not isinstance(contamination, numbers.Real)
            or not 0.0 < contamination <= 0.5):
        raise ValueError(
            f'contamination must be a number in (0, 0.5] (the expected fraction of '
            f'outliers), got {contamination!r}')
    return float(contamination)


def _validate_positive_int(name: str, value, minimum: int = 1) -> int:
    if isinstance(value, bool) or not isinstance(value, numbers.Integral) or value < minimum:
        raise ValueError(f'{name} must be an integer >= {minimum}, got {value!r}')
    return int(value)


def _validate_n_components(n_components) -> int | None:
    if n_components is None:
        return None
    return _validate_positive_int('n_components', n_components)


def _row_blocks(n_rows: int, block_size: int) -> Iterator[slice]:
    for start in range(0, n_rows, block_size):
        yield slice(start, min(start + block_size, n_rows))


def _check_embeddings(X, *, min_samples: int = 1, n_features: int | None = None) -> np.ndarray:
    """Validate an (n_samples, n_features) embedding matrix without copying it.

    Conversion to float32 happens block by block where the data are used, so a float64 or
    memory-mapped input of a million crops is never copied as a whole.
    """
    X = np.asarray(X)
    if X.ndim != 2:
        raise ValueError(f'expected a 2-D array of embeddings (n_samples, n_features), '
                         f'got shape {X.shape}')
    if not (np.issubdtype(X.dtype, np.floating) or np.issubdtype(X.dtype, np.integer)):
        raise ValueError(f'embeddings must be numeric, got dtype {X.dtype}')
    if X.shape[0] < min_samples:
        raise ValueError(f'need at least {min_samples} samples, got {X.shape[0]}')
    if n_features is not None and X.shape[1] != n_features:
        raise ValueError(f'X has {X.shape[1]} features, but the detector was fitted with '
                         f'{n_features}')
    if X.shape[1] == 0:
        raise ValueError('embeddings have 0 features')
    if np.issubdtype(X.dtype, np.floating):
        for rows in _row_blocks(X.shape[0], _ROW_BLOCK):
            if not np.isfinite(X[rows]).all():
                raise ValueError('embeddings contain NaN or infinity (first bad row in '
                                 f'rows {rows.start}..{rows.stop - 1})')
    return X


def _flag_count(contamination: float, n_samples: int) -> int:
    # Round half up rather than Python's round-half-to-even, so e.g. 0.1 * 25 flags 3.
    return int(math.floor(contamination * n_samples + 0.5))


def _threshold_for_contamination(scores: np.ndarray, contamination: float) -> float:
    """A score threshold below which ``round(contamination * n)`` of ``scores`` fall.

    Placed halfway between the last flagged and the first kept score, so that re-computing
    the same scores (``predict`` on the fit data) flags exactly the same samples.
    """
    n_flagged = _flag_count(contamination, scores.size)
    ordered = np.sort(scores)
    if n_flagged == 0:
        return float(ordered[0])
    last_flagged, first_kept = float(ordered[n_flagged - 1]), float(ordered[n_flagged])
    threshold = last_flagged + (first_kept - last_flagged) / 2
    # Adjacent floats have no midpoint: move up to the kept score (it stays an inlier,
    # as the comparison is strict).
    return threshold if threshold > last_flagged else first_kept


class _CentredProjection:
    """Centring plus an optional PCA projection, fitted on a subsample, applied per block."""

    def __init__(self, sample: np.ndarray, n_components: int | None):
        sample = np.asarray(sample, dtype=np.float64)
        self.mean = sample.mean(axis=0)
        n_features = sample.shape[1]
        if n_components is None or n_components >= n_features:
            # Centring alone keeps distances exact and makes the float32 expansion
            # ||a||^2 + ||b||^2 - 2ab more precise (smaller norms, less cancellation).
            self.components = None
        else:
            # Eigenvectors of the covariance: for a few thousand samples of 512 features
            # this is faster than an SVD of the samples and exact (no randomised solver).
            centred = sample - self.mean
            eigenvalues, eigenvectors = np.linalg.eigh(centred.T @ centred)
            top = np.argsort(eigenvalues)[::-1][:n_components]
            components = eigenvectors[:, top]
            # Fix the sign of each axis so the projection does not depend on LAPACK.
            signs = np.sign(components[np.abs(components).argmax(axis=0), np.arange(n_components)])
            self.components = np.ascontiguousarray(components * signs, dtype=np.float32)
        self.mean32 = self.mean.astype(np.float32)

    def transform(self, block: np.ndarray) -> np.ndarray:
        centred = np.asarray(block, dtype=np.float32) - self.mean32
        return centred if self.components is None else centred @ self.components


def _parallel_map(function, items: list, n_jobs: int | None) -> list:
    """``map`` over ``items`` on ``n_jobs`` threads, with single-threaded BLAS per thread.

    Limiting BLAS avoids oversubscription (each thread would otherwise start its own BLAS
    threads); with one job, BLAS keeps its own multithreading.
    """
    n_workers = min(effective_n_jobs(n_jobs), len(items))
    if n_workers <= 1:
        return [function(item) for item in items]
    with threadpool_limits(limits=1, user_api='blas'), \
            ThreadPoolExecutor(max_workers=n_workers) as executor:
        return list(executor.map(function, items))


class _ReferenceNeighbours:
    """k-nearest-neighbour search of query crops in a fixed reference set.

    The reference is stored both raw (to recognise bit-identical copies of a query) and
    projected, in the augmented form ``[-2 r, ||r||^2]`` so that a single matrix product
    ``[q, 1] @ [-2 r, ||r||^2]^T`` gives ``||r||^2 - 2 q.r``, the squared distance minus
    the per-query constant ``||q||^2``.
    """

    def __init__(self, reference_raw: np.ndarray, projection: _CentredProjection):
        self.raw = np.ascontiguousarray(reference_raw, dtype=np.float32)
        self.projection = projection
        projected = projection.transform(self.raw)
        self.size = projected.shape[0]
        self.squared_norms = np.einsum('ij,ij->i', projected, projected)
        self.max_squared_norm = float(self.squared_norms.max())
        self.augmented = np.concatenate([-2.0 * projected, self.squared_norms[:, None]], axis=1)
        self._padded_augmented = {}

    def _augmented_for_blocks(self, padded_width: int) -> np.ndarray:
        """The augmented reference, padded to ``padded_width`` rows with far-away points.

        A padding row ``[0, ..., 0, FAR]`` yields exactly FAR for every query, so the
        padded columns of the product are never selected, and the product is written
        contiguously (a strided output would make numpy's matmul slower).
        """
        if padded_width not in self._padded_augmented:
            padded = np.zeros((padded_width, self.augmented.shape[1]), dtype=np.float32)
            padded[:self.size] = self.augmented
            padded[self.size:, -1] = _FAR_AWAY
            self._padded_augmented[padded_width] = padded
        return self._padded_augmented[padded_width]

    def _block_layout(self, n_candidates: int) -> tuple[int, int]:
        """Block size and count for the pre-selection of ``n_candidates`` neighbours.

        Scanning m block minima and then the n_candidates best blocks of b columns costs
        about m / b + n_candidates * b, minimal at b = sqrt(m / n_candidates).
        """
        block_size = max(1, int(round(math.sqrt(self.size / n_candidates))))
        n_blocks = -(-self.size // block_size)
        return block_size, n_blocks

    def _select_smallest(self, partial_sq: np.ndarray, n_select: int) -> np.ndarray:
        """Column indices of the ``n_select`` smallest entries of each row (unordered)."""
        n_queries = partial_sq.shape[0]
        block_size, n_blocks = self._block_layout(n_select)
        if n_blocks <= n_select or block_size == 1:
            return np.argpartition(partial_sq, n_select - 1, axis=1)[:, :n_select]
        # Block j holds the columns j, j + n_blocks, j + 2 n_blocks, ... so that the block
        # minima are an element-wise minimum of contiguous rows (fast and vectorised).
        # The n_select smallest entries all lie in the n_select blocks with the smallest
        # minima: any entry outside them has n_select block minima at or below it.
        strided = partial_sq.reshape(n_queries, block_size, n_blocks)
        block_minima = strided.min(axis=1)
        best_blocks = np.argpartition(block_minima, n_select - 1, axis=1)[:, :n_select]
        # Gathering whole blocks through the strided view is much faster than
        # np.take_along_axis with explicit column indices. Shape (n_queries, n_select,
        # block_size): the advanced indices, separated by a slice, go first.
        candidates = strided[np.arange(n_queries)[:, None], :, best_blocks]
        best = np.argpartition(candidates.reshape(n_queries, -1), n_select - 1,
                               axis=1)[:, :n_select]
        block_rank, offset_in_block = np.divmod(best, block_size)
        return np.take_along_axis(best_blocks, block_rank, axis=1) + n_blocks * offset_in_block

    def kneighbors(self, queries_raw: np.ndarray,
                   n_neighbors: int) -> tuple[np.ndarray, np.ndarray]:
        """Squared distances and reference indices of the ``n_neighbors`` nearest, unordered.

        One bit-identical copy of the query in the reference (the query itself, when it
        belongs to the reference) is left out.
        """
        queries_raw = np.asarray(queries_raw, dtype=np.float32)
        queries = self.projection.transform(queries_raw)
        n_queries = queries.shape[0]
        query_sq = np.einsum('ij,ij->i', queries, queries)
        n_select = n_neighbors + 1  # one more, in case a copy of the query is among them

        augmented_queries = np.empty((n_queries, queries.shape[1] + 1), dtype=np.float32)
        augmented_queries[:, :-1] = queries
        augmented_queries[:, -1] = 1.0
        block_size, n_blocks = self._block_layout(n_select)
        partial_sq = augmented_queries @ self._augmented_for_blocks(block_size * n_blocks).T

        indices = self._select_smallest(partial_sq, n_select)
        squared = np.take_along_axis(partial_sq, indices, axis=1) + query_sq[:, None]
        np.maximum(squared, 0.0, out=squared)  # rounding can push ~0 slightly negative

        # Drop one column per row: the query's copy if the reference holds one, otherwise
        # the farthest of the n_select.
        drop = squared.argmax(axis=1)
        tolerance = _COPY_CANDIDATE_RTOL * (query_sq + self.max_squared_norm)
        rows, cols = np.nonzero(squared <= tolerance[:, None])
        if rows.size:
            identical = (queries_raw[rows] == self.raw[indices[rows, cols]]).all(axis=1)
            rows, cols = rows[identical], cols[identical]
            # np.unique returns the first match of each row (rows come out sorted).
            copy_rows, first = np.unique(rows, return_index=True)
            drop[copy_rows] = cols[first]
        keep = np.ones(indices.shape, dtype=bool)
        keep[np.arange(n_queries), drop] = False
        return (squared[keep].reshape(n_queries, n_neighbors),
                indices[keep].reshape(n_queries, n_neighbors))


class _BaseEmbeddingOutliers(OutlierMixin, BaseEstimator):
    """Shared fit/threshold/predict logic; subclasses implement ``_fit`` and ``_score``."""

    def __init__(self, contamination: float = 0.1):
        self.contamination = contamination
        _validate_contamination(contamination)

    def _check_params(self) -> None:
        _validate_contamination(self.contamination)

    def _fit(self, X: np.ndarray) -> None:
        raise NotImplementedError

    def _score(self, X: np.ndarray) -> np.ndarray:
        raise NotImplementedError

    def fit(self, X, y=None):
        """Fit on embeddings ``X`` of shape (n_samples, n_features); ``y`` is ignored."""
        self._check_params()
        X = _check_embeddings(X, min_samples=2)
        self.n_features_in_ = X.shape[1]
        self._fit(X)
        self.fit_scores_ = self._score(X)
        self.threshold_ = _threshold_for_contamination(self.fit_scores_, self.contamination)
        return self

    def score_samples(self, X) -> np.ndarray:
        """Normality of each sample: the higher, the more normal (float64, shape (n,))."""
        check_is_fitted(self, 'threshold_')
        X = _check_embeddings(X, n_features=self.n_features_in_)
        return self._score(X)

    def decision_function(self, X) -> np.ndarray:
        """``score_samples(X) - threshold_``: negative for outliers."""
        return self.score_samples(X) - self.threshold_

    def predict(self, X) -> np.ndarray:
        """+1 for inliers, -1 for outliers."""
        return np.where(self.score_samples(X) < self.threshold_, -1, 1)

    def fit_predict(self, X, y=None) -> np.ndarray:
        """Fit on ``X`` and label it (+1 inlier, -1 outlier), reusing the fit-time scores."""
        self.fit(X)
        return np.where(self.fit_scores_ < self.threshold_, -1, 1)


@OUTLIER_DETECTORS.register_module()
class IsolationForestOutliers(_BaseEmbeddingOutliers):
    """Isolation forest (:class:`sklearn.ensemble.IsolationForest`): easy to isolate = unusual.

    ``score_samples`` is scikit-learn's (minus the mean normalised path length, in
    [-1, 0]).

    Args:
        contamination: expected fraction of outliers, in (0, 0.5].
        n_estimators: number of isolation trees.
        max_samples: rows drawn (without replacement) to grow each tree.
        random_state: seed of the subsampling, the PCA sample and the trees.
        n_components: if set, the trees split on this many leading PCA axes instead of
            the raw embedding (faster scoring). Off by default: trees pick split features
            uniformly, so once the PCA keeps more axes than the data's intrinsic dimension,
            most splits land on near-noise axes and recall drops sharply (measured on the
            synthetic benchmark), while the raw embedding is robust.
        n_fit_samples: rows drawn to fit the forest (and the PCA). Each tree only uses
            ``max_samples`` of them, so a sample of a few thousand is as good as the full
            data.
        n_jobs: threads used to grow the trees and to score; -1 = all cores.
    """

    def __init__(self,
                 contamination: float = 0.1,
                 n_estimators: int = 100,
                 max_samples: int = 256,
                 random_state: int | None = 42,
                 n_components: int | None = None,
                 n_fit_samples: int = 16384,
                 n_jobs: int | None = -1):
        super().__init__(contamination)
        self.n_estimators = n_estimators
        self.max_samples = max_samples
        self.random_state = random_state
        self.n_components = n_components
        self.n_fit_samples = n_fit_samples
        self.n_jobs = n_jobs
        self._check_params()

    def _check_params(self) -> None:
        super()._check_params()
        _validate_positive_int('n_estimators', self.n_estimators)
        _validate_positive_int('max_samples', self.max_samples)
        _validate_positive_int('n_fit_samples', self.n_fit_samples, minimum=2)
        _validate_n_components(self.n_components)

    def _fit(self, X: np.ndarray) -> None:
        rng = check_random_state(self.random_state)
        n_samples = X.shape[0]
        if n_samples > self.n_fit_samples:
            sample = X[np.sort(rng.choice(n_samples, self.n_fit_samples, replace=False))]
        else:
            sample = X
        self.projection_ = _CentredProjection(sample, self.n_components)
        projected_sample = self.projection_.transform(sample)
        self.forest_ = IsolationForest(
            n_estimators=self.n_estimators,
            max_samples=min(self.max_samples, projected_sample.shape[0]),
            # The threshold comes from our own scores; 'auto' skips sklearn's extra
            # scoring pass over the training data.
            contamination='auto',
            random_state=rng.randint(np.iinfo(np.int32).max),
            n_jobs=self.n_jobs,
        ).fit(projected_sample)

    def _score(self, X: np.ndarray) -> np.ndarray:
        blocks = list(_row_blocks(X.shape[0], 8 * _ROW_BLOCK))
        # sklearn scores a block tree by tree; threads over row blocks use all cores (the
        # tree traversal releases the GIL).
        scores = _parallel_map(
            lambda rows: self.forest_.score_samples(self.projection_.transform(X[rows])),
            blocks, self.n_jobs)
        return np.concatenate(scores).astype(np.float64, copy=False)


class _ReferenceNeighbourOutliers(_BaseEmbeddingOutliers):
    """Base of the neighbour-based detectors: PCA + random reference subsample.

    Args:
        contamination: expected fraction of outliers, in (0, 0.5].
        n_neighbors: neighbours per crop (in the reference set).
        n_reference: size of the random reference subsample the neighbours are searched
            in; with at most this many fit samples all of them are used (exact method).
        n_components: PCA dimensions the distances are measured in; None (or at least the
            embedding size) keeps exact distances.
        random_state: seed of the reference subsample.
        chunk_size: queries per matrix product; memory is ``chunk_size * n_reference * 4``
            bytes per worker.
        n_jobs: threads scoring chunks in parallel; -1 = all cores.
    """

    def __init__(self,
                 contamination: float = 0.1,
                 n_neighbors: int = 20,
                 n_reference: int = 8192,
                 n_components: int | None = 32,
                 random_state: int | None = 42,
                 chunk_size: int = 256,
                 n_jobs: int | None = -1):
        super().__init__(contamination)
        self.n_neighbors = n_neighbors
        self.n_reference = n_reference
        self.n_components = n_components
        self.random_state = random_state
        self.chunk_size = chunk_size
        self.n_jobs = n_jobs
        self._check_params()

    def _check_params(self) -> None:
        super()._check_params()
        _validate_positive_int('n_neighbors', self.n_neighbors)
        _validate_positive_int('n_reference', self.n_reference, minimum=2)
        _validate_positive_int('chunk_size', self.chunk_size)
        _validate_n_components(self.n_components)

    def _fit(self, X: np.ndarray) -> None:
        n_samples = X.shape[0]
        if n_samples > self.n_reference:
            rng = check_random_state(self.random_state)
            self.reference_indices_ = np.sort(
                rng.choice(n_samples, self.n_reference, replace=False))
        else:
            self.reference_indices_ = np.arange(n_samples)
        reference = np.asarray(X[self.reference_indices_], dtype=np.float32)
        # The reference is a uniform sample, so it also serves to fit the PCA.
        projection = _CentredProjection(reference, self.n_components)
        self._neighbours = _ReferenceNeighbours(reference, projection)
        # As in sklearn, k is capped by the number of *other* reference points.
        self.n_neighbors_ = min(self.n_neighbors, self._neighbours.size - 1)
        self._fit_reference()

    def _fit_reference(self) -> None:
        """Precompute per-reference-point statistics (after ``_neighbours`` exists)."""

    def _score_neighbours(self, squared: np.ndarray, indices: np.ndarray) -> np.ndarray:
        raise NotImplementedError

    def _map_chunks(self, X: np.ndarray, function) -> list:
        chunks = list(_row_blocks(X.shape[0], self.chunk_size))
        return _parallel_map(lambda rows: function(X[rows]), chunks, self.n_jobs)

    def _score(self, X: np.ndarray) -> np.ndarray:
        k = self.n_neighbors_

        def score_chunk(chunk):
            return self._score_neighbours(*self._neighbours.kneighbors(chunk, k))

        return np.concatenate(self._map_chunks(X, score_chunk))


@OUTLIER_DETECTORS.register_module()
class LocalOutlierFactorOutliers(_ReferenceNeighbourOutliers):
    """Local outlier factor (Breunig et al. 2000) with neighbours in a reference subsample.

    ``score_samples`` is ``-LOF`` (about -1 for inliers, lower for outliers), i.e.
    scikit-learn's ``negative_outlier_factor_`` convention; for N <= ``n_reference`` and
    no PCA reduction it equals ``LocalOutlierFactor(n_neighbors).negative_outlier_factor_``.
    Arguments: see :class:`_ReferenceNeighbourOutliers` (``n_neighbors`` defaults to 20, as
    in scikit-learn).
    """

    def _fit_reference(self) -> None:
        # k-distance and local reachability density of every reference point, computed
        # leave-one-out within the reference (the point's own copy is skipped).
        k = self.n_neighbors_

        def reference_neighbours(chunk):
            squared, indices = self._neighbours.kneighbors(chunk, k)
            return np.sqrt(squared, dtype=np.float64), indices

        parts = self._map_chunks(self._neighbours.raw, reference_neighbours)
        distances = np.concatenate([p[0] for p in parts])
        indices = np.concatenate([p[1] for p in parts])
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
        contamination: expected fraction of outliers, in (0, 0.5].
        n_neighbors: neighbours averaged (or the rank used with ``'kth'``).
        aggregation: ``'mean'`` (smoother, the default) or ``'kth'``.
        n_reference, n_components, random_state, chunk_size, n_jobs: see
            :class:`_ReferenceNeighbourOutliers` (reference subsample, PCA, chunking).
    """

    _AGGREGATIONS = ('mean', 'kth')

    def __init__(self,
                 contamination: float = 0.1,
                 n_neighbors: int = 10,
                 aggregation: str = 'mean',
                 n_reference: int = 8192,
                 n_components: int | None = 32,
                 random_state: int | None = 42,
                 chunk_size: int = 256,
                 n_jobs: int | None = -1):
        self.aggregation = aggregation
        super().__init__(contamination=contamination, n_neighbors=n_neighbors,
                         n_reference=n_reference, n_components=n_components,
                         random_state=random_state, chunk_size=chunk_size, n_jobs=n_jobs)

    def _check_params(self) -> None:
        super()._check_params()
        if self.aggregation not in self._AGGREGATIONS:
            raise ValueError(f'aggregation must be one of {self._AGGREGATIONS}, '
                             f'got {self.aggregation!r}')

    def _score_neighbours(self, squared: np.ndarray, indices: np.ndarray) -> np.ndarray:
        if self.aggregation == 'kth':
            return -np.sqrt(squared.max(axis=1), dtype=np.float64)
        return -np.sqrt(squared, dtype=np.float64).mean(axis=1)


def _as_outlier_mask(name: str, flags) -> np.ndarray:
    flags = np.asarray(flags)
    if flags.ndim != 1:
        raise ValueError(f'flags of {name!r} must be 1-D, got shape {flags.shape}')
    if flags.dtype == bool:
        return flags
    if np.issubdtype(flags.dtype, np.integer) and np.isin(flags, (-1, 1)).all():
        return flags == -1  # predict() labels
    # 0/1 integers are refused: an all-ones array would mean "all outliers" as a mask but
    # "no outliers" as predict() labels.
    raise ValueError(f'flags of {name!r} must be a boolean mask (True = outlier) or '
                     f'predict() labels (+1 inlier / -1 outlier), got dtype {flags.dtype}')


def combine_outlier_flags(flags: Mapping[str, np.ndarray],
                          rule: str = 'union',
                          min_votes: int | None = None) -> np.ndarray:
    """Merge the per-detector outlier flags into one boolean mask (True = outlier).

    Args:
        flags: detector name -> boolean mask (True = outlier) or ``predict`` labels
            (+1 inlier / -1 outlier), all of the same length.
        rule: ``'union'``: flagged by any detector (favours recall: mining would rather
            look at a few extra crops than miss a rare object); ``'vote'``: flagged by at
            least ``min_votes`` detectors.
        min_votes: votes needed with ``rule='vote'``; defaults to a strict majority.
    """
    if rule not in ('union', 'vote'):
        raise ValueError(f"rule must be 'union' or 'vote', got {rule!r}")
    if not flags:
        raise ValueError('no detector flags to combine')
    masks = {name: _as_outlier_mask(name, value) for name, value in flags.items()}
    lengths = {name: mask.size for name, mask in masks.items()}
    if len(set(lengths.values())) != 1:
        raise ValueError(f'all detectors must flag the same samples, got lengths {lengths}')
    stacked = np.stack(list(masks.values()))
    if rule == 'union':
        if min_votes is not None:
            raise ValueError("min_votes only applies to rule='vote'")
        return stacked.any(axis=0)
    n_detectors = stacked.shape[0]
    if min_votes is None:
        min_votes = n_detectors // 2 + 1
    if (isinstance(min_votes, bool) or not isinstance(min_votes, numbers.Integral)
            or not 1 <= min_votes <= n_detectors):
        raise ValueError(f'min_votes must be an integer in [1, {n_detectors}], '
                         f'got {min_votes!r}')
    return stacked.sum(axis=0) >= min_votes
