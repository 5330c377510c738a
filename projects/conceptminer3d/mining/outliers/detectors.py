"""Outlier detectors for CLIP crop embeddings (the "unusual crop" stage of mining).

Every camera crop carries an L2-normalised CLIP image embedding. Three scikit-learn outlier
detectors flag the unusual ones (``predict`` = -1 where ``score_samples < offset_``; see
:class:`_BaseEmbeddingOutliers`); :mod:`.outlier_scoring` runs them the way the pipeline
does and merges their flags.

All three are linear in the number of crops: the neighbour detectors search a
PCA-projected random reference subsample (:mod:`.neighbours` explains how, and when the
result is exact); the isolation forest is fitted on a subsample, as each tree only sees
``max_samples`` rows anyway.
"""

from __future__ import annotations

import math
import numbers

import numpy as np
from sklearn.base import BaseEstimator, OutlierMixin
from sklearn.ensemble import IsolationForest
from sklearn.utils import check_random_state
from sklearn.utils.validation import check_is_fitted, validate_data

from conceptminer3d.registry import OUTLIER_DETECTORS

from .neighbours import CentredProjection, build_reference, nearest_first, parallel_map, row_blocks

__all__ = [
    'IsolationForestOutliers',
    'fit_sharing_neighbours',
    'KnnDistanceOutliers',
    'LocalOutlierFactorOutliers',
]

# float32 inputs stay as they are (a million 512-d crops are 2 GB); float64 ones too, and
# are converted block by block where they are used; anything else becomes float32.
_INPUT_DTYPES = [np.float32, np.float64]
# Rows per isolation-forest scoring block: one block per thread task.
_FOREST_BLOCK = 32768
# Added to the mean reachability distance before inverting it, as scikit-learn's LOF does,
# so that duplicates (reachability distance 0) get a large but finite density.
_LRD_EPSILON = 1e-10


def _check_contamination(contamination) -> None:
    if isinstance(contamination, bool) or not isinstance(contamination, numbers.Real) or not 0.0 < contamination <= 0.5:
        raise ValueError(
            f'contamination must be a number in (0, 0.5] (the expected fraction of outliers), got {contamination!r}'
        )


def _check_positive_int(name: str, value, minimum: int = 1) -> None:
    if isinstance(value, bool) or not isinstance(value, numbers.Integral) or value < minimum:
        raise ValueError(f'{name} must be an integer >= {minimum}, got {value!r}')


def _flag_count(contamination: float, n_samples: int) -> int:
    # Round half up rather than Python's round-half-to-even, so e.g. 0.1 * 25 flags 3.
    return int(math.floor(contamination * n_samples + 0.5))


def _offset_for_contamination(scores: np.ndarray, contamination: float) -> float:
    """A score below which ``round(contamination * n)`` of ``scores`` fall.

    Placed halfway between the last flagged and the first kept score, so that re-computing
    the same scores (``predict`` on the fit data) flags exactly the same samples.
    """
    n_flagged = _flag_count(contamination, scores.size)
    ordered = np.sort(scores)
    if n_flagged == 0:
        return float(ordered[0])
    last_flagged, first_kept = float(ordered[n_flagged - 1]), float(ordered[n_flagged])
    offset = last_flagged + (first_kept - last_flagged) / 2
    # Adjacent floats have no midpoint: move up to the kept score (it stays an inlier,
    # as the comparison is strict).
    return offset if offset > last_flagged else first_kept


class _BaseEmbeddingOutliers(OutlierMixin, BaseEstimator):
    """Shared fit / offset / predict logic of the detectors below.

    ``fit(X)`` learns the model, scores the fit data once (``fit_scores_``) and places
    ``offset_`` so that ``round(contamination * n)`` of them score below it (ties at the
    boundary stay inliers). ``score_samples``: the higher, the more normal;
    ``decision_function = score_samples - offset_``, negative for outliers; ``predict``:
    +1 inlier / -1 outlier; ``fit_predict`` reuses the fit-time scores.

    As in scikit-learn, ``__init__`` only stores the parameters; ``check_params`` validates
    them and ``fit`` calls it. Subclasses extend ``check_params`` and implement ``_fit``
    (learn from validated ``X``) and ``_score`` (``score_samples`` of validated ``X``).

    Args:
        contamination (float): Expected fraction of outliers, in (0, 0.5]: ``fit`` sets
            ``offset_`` so that ``round(contamination * n)`` of the fit data are flagged.
            Defaults to 0.1.

    Attributes:
        fit_scores_ (ndarray): ``score_samples`` of the fit data, computed during ``fit``.
        offset_ (float): ``decision_function = score_samples - offset_``.
        n_features_in_ (int): Embedding size seen by ``fit``.
    """

    def __init__(self, *, contamination: float = 0.1):
        self.contamination = contamination

    def check_params(self) -> None:
        """Raise ``ValueError`` for an invalid parameter, without fitting anything.

        ``fit`` calls it; the mining pipeline also calls it when it builds the detectors,
        so that a bad config fails before any image is read.
        """
        _check_contamination(self.contamination)

    def _fit(self, X: np.ndarray) -> None:
        raise NotImplementedError

    def _score(self, X: np.ndarray) -> np.ndarray:
        raise NotImplementedError

    def fit(self, X, y=None):
        """Fit on embeddings ``X`` of shape (n_samples, n_features); ``y`` is ignored."""
        self.check_params()
        X = validate_data(self, X, dtype=_INPUT_DTYPES, ensure_min_samples=2)
        self._fit(X)
        self.fit_scores_ = self._score(X)
        self.offset_ = _offset_for_contamination(self.fit_scores_, self.contamination)
        return self

    def score_samples(self, X) -> np.ndarray:
        """Normality of each sample: the higher, the more normal (float64, shape (n,))."""
        check_is_fitted(self, 'offset_')
        X = validate_data(self, X, dtype=_INPUT_DTYPES, reset=False)
        return self._score(X)

    def decision_function(self, X) -> np.ndarray:
        """``score_samples(X) - offset_``: negative for outliers."""
        return self.score_samples(X) - self.offset_

    def predict(self, X) -> np.ndarray:
        """+1 for inliers, -1 for outliers."""
        return self._labels(self.score_samples(X))

    def fit_predict(self, X, y=None) -> np.ndarray:
        """Fit on ``X`` and label it (+1 inlier, -1 outlier), reusing the fit-time scores."""
        return self.fit(X)._labels(self.fit_scores_)

    def _labels(self, scores: np.ndarray) -> np.ndarray:
        return np.where(scores < self.offset_, -1, 1)


@OUTLIER_DETECTORS.register_module()
class IsolationForestOutliers(_BaseEmbeddingOutliers):
    """Isolation forest (:class:`sklearn.ensemble.IsolationForest`): easy to isolate = unusual.

    ``score_samples`` is scikit-learn's (minus the mean normalised path length, in
    [-1, 0]).

    Args:
        contamination (float): Expected fraction of outliers, in (0, 0.5]. Defaults to
            0.1.
        n_estimators (int): Number of isolation trees. Defaults to 100.
        max_samples (int): Rows drawn (without replacement) to grow each tree. Defaults
            to 256.
        random_state (int | None): Seed of the subsampling, the PCA sample and the trees.
            Defaults to 42.
        n_components (int | None): If set, the trees split on this many leading PCA axes
            instead of the raw embedding (faster scoring). Defaults to None: trees pick
            split features uniformly, so once the PCA keeps more axes than the data's
            intrinsic dimension, most splits land on near-noise axes and recall drops
            sharply (measured on the synthetic benchmark), while the raw embedding is
            robust.
        n_fit_samples (int): Rows drawn to fit the forest (and the PCA). Each tree only
            uses ``max_samples`` of them, so a sample of a few thousand is as good as the
            full data. Defaults to 16384.
        n_jobs (int | None): Threads used to grow the trees and to score; -1 = all cores.
            Defaults to -1.
    """

    def __init__(
        self,
        *,
        contamination: float = 0.1,
        n_estimators: int = 100,
        max_samples: int = 256,
        random_state: int | None = 42,
        n_components: int | None = None,
        n_fit_samples: int = 16384,
        n_jobs: int | None = -1,
    ):
        super().__init__(contamination=contamination)
        self.n_estimators = n_estimators
        self.max_samples = max_samples
        self.random_state = random_state
        self.n_components = n_components
        self.n_fit_samples = n_fit_samples
        self.n_jobs = n_jobs

    def check_params(self) -> None:
        super().check_params()
        _check_positive_int('n_estimators', self.n_estimators)
        _check_positive_int('max_samples', self.max_samples)
        _check_positive_int('n_fit_samples', self.n_fit_samples, minimum=2)
        if self.n_components is not None:
            _check_positive_int('n_components', self.n_components)

    def _fit(self, X: np.ndarray) -> None:
        rng = check_random_state(self.random_state)
        n_samples = X.shape[0]
        if n_samples > self.n_fit_samples:
            sample = X[np.sort(rng.choice(n_samples, self.n_fit_samples, replace=False))]
        else:
            sample = X
        self.projection_ = CentredProjection(sample, self.n_components)
        projected_sample = self.projection_.transform(sample)
        self.forest_ = IsolationForest(
            n_estimators=self.n_estimators,
            max_samples=min(self.max_samples, projected_sample.shape[0]),
            # The offset comes from our own scores; 'auto' skips sklearn's extra
            # scoring pass over the training data.
            contamination='auto',
            random_state=rng.randint(np.iinfo(np.int32).max),
            n_jobs=self.n_jobs,
        ).fit(projected_sample)

    def _score(self, X: np.ndarray) -> np.ndarray:
        # sklearn scores a block tree by tree; threads over row blocks use all cores (the
        # tree traversal releases the GIL).
        scores = parallel_map(
            lambda rows: self.forest_.score_samples(self.projection_.transform(X[rows])),
            list(row_blocks(X.shape[0], _FOREST_BLOCK)),
            self.n_jobs,
        )
        return np.concatenate(scores).astype(np.float64, copy=False)


class _ReferenceNeighbourOutliers(_BaseEmbeddingOutliers):
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
        _check_positive_int('n_neighbors', self.n_neighbors)
        _check_positive_int('n_reference', self.n_reference, minimum=2)
        _check_positive_int('chunk_size', self.chunk_size)
        if self.n_components is not None:
            _check_positive_int('n_components', self.n_components)

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
        X = validate_data(detector, X, dtype=_INPUT_DTYPES, ensure_min_samples=2)
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
        detector.offset_ = _offset_for_contamination(detector.fit_scores_, detector.contamination)


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
