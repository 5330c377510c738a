"""What the outlier detectors share: the scikit-learn estimator they derive from, and its checks.

Every camera crop carries an L2-normalised CLIP image embedding. Three scikit-learn outlier
detectors flag the unusual ones (``predict`` = -1 where ``score_samples < offset_``; see
:class:`BaseEmbeddingOutliers`): the isolation forest (:mod:`.isolation_forest`), LOF and kNN
distance (:mod:`.neighbour_detectors`); :mod:`.scoring` runs them the way the pipeline does and
merges their flags.

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
from sklearn.utils.validation import check_is_fitted, validate_data

__all__ = ['INPUT_DTYPES', 'BaseEmbeddingOutliers', 'check_positive_int', 'offset_for_contamination']

# float32 inputs stay as they are (a million 512-d crops are 2 GB); float64 ones too, and
# are converted block by block where they are used; anything else becomes float32.
INPUT_DTYPES = [np.float32, np.float64]


def _check_contamination(contamination) -> None:
    if isinstance(contamination, bool) or not isinstance(contamination, numbers.Real) or not 0.0 < contamination <= 0.5:
        raise ValueError(
            f'contamination must be a number in (0, 0.5] (the expected fraction of outliers), got {contamination!r}'
        )


def check_positive_int(name: str, value, minimum: int = 1) -> None:
    """Raise ``ValueError`` unless ``value`` is an integer (not a bool) >= ``minimum``."""
    if isinstance(value, bool) or not isinstance(value, numbers.Integral) or value < minimum:
        raise ValueError(f'{name} must be an integer >= {minimum}, got {value!r}')


def _flag_count(contamination: float, n_samples: int) -> int:
    # Round half up rather than Python's round-half-to-even, so e.g. 0.1 * 25 flags 3.
    return int(math.floor(contamination * n_samples + 0.5))


def offset_for_contamination(scores: np.ndarray, contamination: float) -> float:
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


class BaseEmbeddingOutliers(OutlierMixin, BaseEstimator):
    """Shared fit / offset / predict logic of the outlier detectors.

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
        X = validate_data(self, X, dtype=INPUT_DTYPES, ensure_min_samples=2)
        self._fit(X)
        self.fit_scores_ = self._score(X)
        self.offset_ = offset_for_contamination(self.fit_scores_, self.contamination)
        return self

    def score_samples(self, X) -> np.ndarray:
        """Normality of each sample: the higher, the more normal (float64, shape (n,))."""
        check_is_fitted(self, 'offset_')
        X = validate_data(self, X, dtype=INPUT_DTYPES, reset=False)
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
