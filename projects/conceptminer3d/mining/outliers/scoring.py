"""How the pipeline runs the outlier detectors: one scoring pass each, then merged flags.

:func:`score_outliers` fits, scores and flags in one pass per detector; the mining pipeline
and the outlier benchmark both run it, so the benchmark times what the pipeline does.
:func:`combine_outlier_flags` merges the detectors' flags (``union`` or majority ``vote``).
:func:`score_outlier_groups` scores groups of rows (all crops, or each YOLO class) apart;
:func:`outlier_columns` does all of it for the crops table.
"""

from __future__ import annotations

import numbers
from collections.abc import Mapping

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
from sklearn.base import OutlierMixin

from .neighbour_detectors import fit_sharing_neighbours

__all__ = ['combine_outlier_flags', 'outlier_columns', 'row_groups', 'score_outlier_groups', 'score_outliers']


def score_outliers(
    detectors: Mapping[str, OutlierMixin], embeddings
) -> tuple[dict[str, np.ndarray], dict[str, np.ndarray]]:
    """Fit every detector on ``embeddings``, then score and flag each row.

    Fitting already scores the fit data (``fit_scores_``), so each detector makes one pass
    over the embeddings: what ``fit`` + ``score_samples`` + ``predict`` would compute in
    three. Neighbour detectors that agree on their search (LOF and kNN distance with the same
    reference, projection and seed, as by default) share one neighbour search
    (:func:`~.neighbour_detectors.fit_sharing_neighbours`). The mining pipeline and the outlier
    benchmark both call this.

    Args:
        detectors (Mapping[str, estimator]): Name -> detector of :mod:`.outliers`; each is
            (re)fitted in place.
        embeddings (array-like): Embeddings of shape (n_samples, n_features).

    Returns:
        tuple[dict, dict]: Name -> outlier score of each row (``-score_samples``, float64:
        the higher, the more unusual) and name -> boolean mask (True = outlier, i.e.
        ``predict == -1``).
    """
    scores, flags = {}, {}
    sharing = {}
    for detector in detectors.values():
        if hasattr(detector, 'neighbour_search_options'):
            sharing.setdefault(detector.neighbour_search_options(), []).append(detector)
    fitted = set()
    for group in sharing.values():
        if len(group) > 1:
            fit_sharing_neighbours(group, embeddings)
            fitted.update(map(id, group))
    for name, detector in detectors.items():
        if id(detector) not in fitted:
            detector.fit(embeddings)
        scores[name] = -detector.fit_scores_
        flags[name] = detector.fit_scores_ < detector.offset_
    return scores, flags


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
    raise ValueError(
        f'flags of {name!r} must be a boolean mask (True = outlier) or '
        f'predict() labels (+1 inlier / -1 outlier), got dtype {flags.dtype}'
    )


def combine_outlier_flags(
    flags: Mapping[str, np.ndarray], rule: str = 'union', min_votes: int | None = None
) -> np.ndarray:
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
    if isinstance(min_votes, bool) or not isinstance(min_votes, numbers.Integral) or not 1 <= min_votes <= n_detectors:
        raise ValueError(f'min_votes must be an integer in [1, {n_detectors}], got {min_votes!r}')
    return stacked.sum(axis=0) >= min_votes


def score_outlier_groups(
    detectors: Mapping[str, OutlierMixin], embeddings, groups: Mapping[str, np.ndarray], min_rows: int
) -> tuple[dict[str, np.ndarray], dict[str, np.ndarray], list[str]]:
    """``score_outliers`` on each group of rows apart (rows never scored keep score 0, no flag).

    Args:
        detectors (Mapping[str, estimator]): as for :func:`score_outliers`.
        embeddings (array-like): (n_samples, n_features); a group of every row is scored in
            place (a copy would double the memory).
        groups (Mapping[str, ndarray]): group name -> row indices.
        min_rows (int): groups with fewer rows are not scored.

    Returns:
        tuple: name -> float32 scores and name -> boolean flags over all rows, and the names
        of the groups too small to score.
    """
    n = len(embeddings)
    scores = {name: np.zeros(n, np.float32) for name in detectors}
    flags = {name: np.zeros(n, bool) for name in detectors}
    too_small = []
    for group, idx in groups.items():
        if len(idx) < min_rows:
            too_small.append(group)
            continue
        group_scores, group_flags = score_outliers(detectors, embeddings if len(idx) == n else embeddings[idx])
        for name in detectors:
            scores[name][idx] = group_scores[name]
            flags[name][idx] = group_flags[name]
    return scores, flags, too_small


def row_groups(labels, n: int) -> dict[str, np.ndarray]:
    """Groups of rows scored apart: ``{'all': every row}``, or with ``labels`` (a pyarrow array
    of class names, e.g. YOLO classes) one group per label, in sorted order."""
    if labels is None:
        return {'all': np.arange(n)}
    return {
        c: np.flatnonzero(pc.equal(labels, c).to_numpy(zero_copy_only=False))
        for c in sorted(pc.unique(labels).to_pylist())
    }


def outlier_columns(
    crops: pa.Table, embeddings, detectors: Mapping[str, OutlierMixin], per_class: bool, min_rows: int, combine: str
) -> tuple[pa.Table, list[str]]:
    """``crops`` with every detector's ``outlier_score_<name>`` and ``is_outlier_<name>``, then
    the combined ``is_outlier`` (``combine``: ``union`` or ``vote``) appended; scored over all
    crops, or each YOLO class apart (``per_class``). Also returns the groups too small to score."""
    n = len(embeddings)
    groups = row_groups(crops.column('yolo_class') if per_class else None, n)
    scores, flags, too_small = score_outlier_groups(detectors, embeddings, groups, min_rows)
    combined = combine_outlier_flags(flags, rule=combine) if n else np.zeros(0, bool)
    for name in detectors:
        crops = crops.append_column(f'outlier_score_{name}', pa.array(scores[name], pa.float32()))
        crops = crops.append_column(f'is_outlier_{name}', pa.array(flags[name]))
    return crops.append_column('is_outlier', pa.array(combined, pa.bool_())), too_small
