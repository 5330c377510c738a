"""Coverage of the target concepts: a monotone submodular objective over per-unit evidence, and
its lazy greedy maximiser.

The objective is feature-based (Wei, Iyer & Bilmes, 2014; apricot's ``FeatureBasedSelection``
with ``concave_func='sqrt'``), with a weight per feature::

    F(S) = Σ_f  w_f · √( Σ_{u ∈ S} X[u, f] )

A feature is a target concept (its evidence in a unit: the summed scores of its Target crops
there) or, with ``diversity``, a cluster of a concept's crop embeddings. The square root gives
diminishing returns: a unit adds most where the chosen set holds little of a concept yet, so
the slots spread over the concepts and, within one, over its clusters, instead of going to the
units with the single strongest crop. ``SqrtCoverage`` maximises it under a budget on the
units' sizes (samples per unit: 1, or a scene's sample count) by the cost-benefit greedy rule,
lazily (Minoux, 1978): a unit's gain can only shrink as the set grows, so a stale gain is an
upper bound and most units are never recomputed.

Why not apricot or submodlib: apricot-select 0.6.1 (its last release, 2021) requires ``nose``,
which has been unmaintained since 2015 and no longer imports on Python 3.10+; submodlib-py
0.0.3 adds matplotlib and a compiled extension to the pinned stack. Neither breaks ties by a
seed, which the subsets' determinism needs. The greedy is 60 lines of numpy.
"""

from __future__ import annotations

import heapq
from typing import Optional, Sequence

import numpy as np
from scipy import sparse

__all__ = ['SqrtCoverage', 'sqrt_coverage_value']


def sqrt_coverage_value(totals: np.ndarray, weights: np.ndarray) -> float:
    """``Σ_f w_f · √totals_f``: the objective of a set whose evidence sums to ``totals``."""
    return float(np.dot(np.asarray(weights, np.float64), np.sqrt(np.maximum(np.asarray(totals, np.float64), 0.0))))


class SqrtCoverage:
    """Greedy maximiser of ``Σ_f w_f · √(Σ_{u∈S} X[u, f])`` under ``Σ_{u∈S} cost_u ≤ budget``.

    A scikit-learn-style selector: the constructor stores its parameters, ``fit`` selects and
    leaves what it learned in attributes ending in ``_``.

    Args:
        budget (float): total cost the chosen units may take (samples, in the subsets).
        weights (array-like): ``w_f`` per feature (column of ``X``), non-negative.
        overshoot_first (bool): the first unit may exceed the budget on its own (a scene
            larger than the whole quota is still taken, as the uniform rule takes it).

    Attributes:
        ranking_ (np.ndarray): chosen rows of ``X``, in the order they were picked.
        gains_ (np.ndarray): the objective's gain of each pick (not divided by its cost):
            where these flatten out, the selection stopped paying.
        costs_ (np.ndarray): each pick's cost.
        totals_ (np.ndarray): ``Σ_{u∈S} X[u]`` per feature.
        value_ (float): ``F(S)``.

    Picks maximise gain ÷ cost; among equal ratios the unit earlier in ``tie_order`` wins.
    Units whose gain is zero are never picked, so ``ranking_`` may use less than the budget
    (the caller tops a shortfall up by other means). Exactly the plain greedy's choice: a lazy
    entry is only taken once recomputed against the current set and still ahead of every bound.
    The guarantee for unit costs: ``F(greedy) ≥ (1 − 1/e) · F(optimum)`` (Nemhauser et al., 1978).
    """

    def __init__(self, budget: float, weights: Sequence[float], *, overshoot_first: bool = False):
        self.budget = budget
        self.weights = weights
        self.overshoot_first = overshoot_first

    def fit(
        self,
        X,
        costs: Optional[Sequence[float]] = None,
        tie_order: Optional[Sequence[int]] = None,
        initial_totals: Optional[Sequence[float]] = None,
    ):
        """Select rows of ``X`` (units × features, non-negative; dense or scipy sparse).

        Args:
            X: evidence of each feature in each unit.
            costs (array-like, optional): cost of each unit (default 1), positive.
            tie_order (array-like, optional): a permutation of the rows; among equal gains per
                cost the row that comes first in it wins (default: the lowest row).
            initial_totals (array-like, optional): evidence already in the set (units chosen
                by other means, outside ``X`` and the budget); gains and ``value_`` count it.
        """
        X = sparse.csr_matrix(X, dtype=np.float64)
        n, num_features = X.shape
        weights = np.asarray(self.weights, np.float64).reshape(-1)
        if weights.shape != (num_features,):
            raise ValueError(f'{num_features} features but {weights.size} weights')
        if (weights < 0).any() or (X.data < 0).any():
            raise ValueError('weights and evidence must be non-negative (the objective is monotone only then)')
        costs = np.ones(n) if costs is None else np.asarray(costs, np.float64).reshape(-1)
        if costs.shape != (n,) or (costs <= 0).any():
            raise ValueError(f'need {n} positive costs')
        rank = np.empty(n, np.int64)
        rank[np.arange(n) if tie_order is None else np.asarray(tie_order, np.int64)] = np.arange(n)

        totals = np.zeros(num_features) if initial_totals is None else np.array(initial_totals, np.float64)
        if totals.shape != (num_features,) or (totals < 0).any():
            raise ValueError(f'initial_totals must be {num_features} non-negative numbers')
        indptr, indices, data = X.indptr, X.indices, X.data

        def gain(u: int) -> float:
            cols, x = indices[indptr[u] : indptr[u + 1]], data[indptr[u] : indptr[u + 1]]
            now = totals[cols]
            # √(t + x) − √t written without the cancellation of two close square roots
            return float(np.dot(weights[cols], x / (np.sqrt(now + x) + np.sqrt(now))))

        # every unit's gain against the starting set, at once
        now = totals[indices]
        per_entry = weights[indices] * data / (np.sqrt(now + data) + np.sqrt(now))
        first = np.bincount(np.repeat(np.arange(n), np.diff(indptr)), per_entry, minlength=n)
        # Marked stale (-1): a unit is taken only on a gain from ``gain``, one formula throughout.
        heap = [(-first[u] / costs[u], rank[u], u, -1) for u in range(n) if first[u] > 0]
        heapq.heapify(heap)
        ranking, gains, spent, step = [], [], 0.0, 0
        while heap:
            _, _, u, fresh_at = heapq.heappop(heap)
            if spent + costs[u] > self.budget and not (self.overshoot_first and not ranking):
                continue  # spent only grows: a unit that does not fit now never will
            if fresh_at != step:  # stale: its gain is an upper bound; recompute and requeue
                g = gain(u)
                if g > 0:
                    heapq.heappush(heap, (-g / costs[u], rank[u], u, step))
                continue
            g = gain(u)
            cols = indices[indptr[u] : indptr[u + 1]]
            totals[cols] += data[indptr[u] : indptr[u + 1]]
            ranking.append(u)
            gains.append(g)
            spent += costs[u]
            step += 1
            if spent >= self.budget:
                break
        self.ranking_ = np.asarray(ranking, np.int64)
        self.gains_ = np.asarray(gains, np.float64)
        self.costs_ = costs[self.ranking_]
        self.totals_ = totals
        self.value_ = sqrt_coverage_value(totals, weights)
        return self
