"""Neighbour search behind the LOF and kNN-distance outlier detectors, and the threading
they share with the isolation forest.

Exact LOF and kNN distance compare every crop with every other crop, O(N^2 d): about
10^12 distance evaluations for N = 10^6, far beyond the budget (the whole outlier stage
must score 10^6 x 512 crops in under two minutes on two CPU cores). The search here
therefore

1. projects the embeddings onto their top ``n_components`` principal axes
   (:class:`CentredProjection`, fitted on a subsample). CLIP embeddings have a low
   intrinsic dimension, so 32 axes keep the neighbourhood structure while making each
   distance 16x cheaper than in 512-d;
2. searches neighbours in a fixed-size random *reference* subsample of ``n_reference``
   crops instead of the whole set (:class:`ReferenceNeighbours`). Every crop is scored
   against the reference, so the cost is O(N m d) and linear in N; the reference crops
   themselves are scored leave-one-out. A reference subsample estimates the same density,
   only at a coarser scale (k neighbours among m reference crops cover about k N / m
   crops), which suits the search for *rare* objects: a cluster much smaller than N / m
   crops counts as rare;
3. ranks the reference by ``||r||^2 - 2 q.r`` with one float32 matrix product per chunk
   of queries (``||q||^2`` is constant per query), finds the k smallest with a
   block-minimum pre-selection followed by ``np.argpartition`` on ~sqrt(m k) candidates
   (argpartition over all m columns costs more than the matrix product), and computes the
   k selected distances again in float64 from the coordinates. BLAS sums a row's products
   in an order that depends on where the row sits in the matrix, so the float32 values of
   one crop differ by ~1e-7 between two orderings of the same crops; the float64 ones from
   the same coordinates do not (scikit-learn's sample-order invariance check, where the
   projection is the centring alone; a PCA projection is itself a float32 product). Memory is bounded by
   ``chunk_size x n_reference`` per worker; chunks run on ``n_jobs`` threads
   (:func:`parallel_map`: numpy and single-threaded BLAS release the GIL).

When the data fit in the reference (N <= ``n_reference``) and are not reduced
(``n_components=None`` or >= the embedding size), the search is exact.

Leave-one-out is defined by content, so that scoring the fit data again reproduces the
fit-time scores exactly: a query that is bit-identical to a reference crop is treated as
that crop and one identical copy is left out of its neighbourhood (leaving out one
duplicate or another gives the same distances).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor

import numpy as np
from joblib import effective_n_jobs
from sklearn.utils import check_random_state
from threadpoolctl import threadpool_limits

__all__ = ['CentredProjection', 'ReferenceNeighbours', 'build_reference', 'nearest_first', 'parallel_map', 'row_blocks']

# A neighbour whose squared distance is below this fraction of the squared norms is checked
# for being a bit-identical copy of the query. A copy's projected coordinates can still differ
# from the query's in the last float32 bit, so a tolerance catches it; a false candidate only
# costs an exact comparison.
_COPY_CANDIDATE_RTOL = 1e-4
# Padding value for reference columns that only round the reference up to whole blocks.
_FAR_AWAY = np.float32(np.finfo(np.float32).max / 16)


def row_blocks(n_rows: int, block_size: int) -> Iterator[slice]:
    """Consecutive slices of at most ``block_size`` rows covering ``n_rows``."""
    for start in range(0, n_rows, block_size):
        yield slice(start, min(start + block_size, n_rows))


class CentredProjection:
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


def parallel_map(function: Callable, items: list, n_jobs: int | None) -> list:
    """``map`` over ``items`` on ``n_jobs`` threads, with single-threaded BLAS per thread.

    Limiting BLAS avoids oversubscription (each thread would otherwise start its own BLAS
    threads); with one job, BLAS keeps its own multithreading.
    """
    n_workers = min(effective_n_jobs(n_jobs), len(items))
    if n_workers <= 1:
        return [function(item) for item in items]
    with threadpool_limits(limits=1, user_api='blas'), ThreadPoolExecutor(max_workers=n_workers) as executor:
        return list(executor.map(function, items))


class ReferenceNeighbours:
    """k-nearest-neighbour search of query crops in a fixed reference set.

    The reference is stored both raw (to recognise bit-identical copies of a query) and
    projected, in the augmented form ``[-2 r, ||r||^2]`` so that a single matrix product
    ``[q, 1] @ [-2 r, ||r||^2]^T`` gives ``||r||^2 - 2 q.r``, the squared distance minus
    the per-query constant ``||q||^2``.
    """

    def __init__(self, reference_raw: np.ndarray, projection: CentredProjection):
        self.raw = np.ascontiguousarray(reference_raw, dtype=np.float32)
        self.projection = projection
        projected = projection.transform(self.raw)
        self.projected = projected
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
            padded[: self.size] = self.augmented
            padded[self.size :, -1] = _FAR_AWAY
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
        best = np.argpartition(candidates.reshape(n_queries, -1), n_select - 1, axis=1)[:, :n_select]
        block_rank, offset_in_block = np.divmod(best, block_size)
        return np.take_along_axis(best_blocks, block_rank, axis=1) + n_blocks * offset_in_block

    def kneighbors(self, queries_raw: np.ndarray, n_neighbors: int) -> tuple[np.ndarray, np.ndarray]:
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
        queries64 = queries.astype(np.float64)
        squared = np.empty(indices.shape, dtype=np.float64)
        for j in range(n_select):
            difference = queries64 - self.projected[indices[:, j]]
            squared[:, j] = np.einsum('ij,ij->i', difference, difference)

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
        return (squared[keep].reshape(n_queries, n_neighbors), indices[keep].reshape(n_queries, n_neighbors))


def build_reference(X: np.ndarray, n_reference: int, n_components, random_state) -> tuple:
    """The reference subsample's row indices and its neighbour search."""
    n_samples = X.shape[0]
    if n_samples > n_reference:
        rng = check_random_state(random_state)
        indices = np.sort(rng.choice(n_samples, n_reference, replace=False))
    else:
        indices = np.arange(n_samples)
    reference = np.asarray(X[indices], dtype=np.float32)
    # The reference is a uniform sample, so it also serves to fit the PCA.
    return indices, ReferenceNeighbours(reference, CentredProjection(reference, n_components))


def nearest_first(squared: np.ndarray, indices: np.ndarray) -> tuple:
    """Each row's neighbours nearest first (ties by index), so that a detector that takes the
    first k of a wider search sees what its own search of k finds, in the same order."""
    order = np.lexsort((indices, squared), axis=1)
    return np.take_along_axis(squared, order, axis=1), np.take_along_axis(indices, order, axis=1)
