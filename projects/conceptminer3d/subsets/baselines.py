"""The baselines a mined subset is compared with, of the same size and seed: a uniform random
draw and k-center greedy (coreset) over per-sample CLIP embeddings.

Apart from ``selection`` because they ignore the mined concepts: neither reads a crop's group or
concept.
"""

from __future__ import annotations

from typing import List, Sequence

import numpy as np

_CHUNK = 1 << 16  # crop embeddings summed per step


def _draw(rng: np.random.Generator, pool: Sequence, k: int) -> List:
    pool = sorted(pool)
    k = min(k, len(pool))
    return [pool[i] for i in sorted(rng.choice(len(pool), size=k, replace=False))] if k else []


def select_random(n: int, size: int, seed: int) -> List[int]:
    """The random baseline: ``size`` samples uniformly, same seed."""
    return _draw(np.random.default_rng(seed), range(n), size)


def sample_embeddings(crop_positions: Sequence[int], crop_embeddings: np.ndarray, n: int) -> np.ndarray:
    """One embedding per train sample: the L2-normalised mean of its crops' embeddings.

    Args:
        crop_positions: train position of each crop, row-aligned with ``crop_embeddings``.
        crop_embeddings: (num_crops, d), as ``embeddings.npy``.
        n: number of train samples.

    Returns:
        np.ndarray: float32 (n, d). A sample without a crop gets the centroid of the samples
        that have one: the cameras saw nothing to describe it by, and the centroid is the point
        nearest to all the others, so k-center greedy covers such samples last instead of
        mistaking "no detection" for an unusual image.
    """
    positions = np.asarray(crop_positions, dtype=np.int64)
    sums = np.zeros((n, crop_embeddings.shape[1] if crop_embeddings.ndim == 2 else 0))
    # In chunks: the crops of a whole nuScenes run (millions, memory-mapped) never sit in memory at once.
    for start in range(0, len(positions), _CHUNK):
        rows = slice(start, start + _CHUNK)
        np.add.at(sums, positions[rows], np.asarray(crop_embeddings[rows], dtype=np.float64))
    has_crop = np.bincount(positions, minlength=n) > 0
    norms = np.linalg.norm(sums, axis=1, keepdims=True)
    out = np.divide(sums, norms, out=np.zeros_like(sums), where=norms > 0)
    if has_crop.any():
        out[~has_crop] = out[has_crop].mean(axis=0)
    return out.astype(np.float32)


def select_coreset(embeddings: np.ndarray, size: int, seed: int) -> List[int]:
    """k-center greedy (Sener & Savarese, 2018): ``size`` rows of ``embeddings`` such that the
    farthest row from its nearest chosen row is as near as the greedy 2-approximation gets.
    The first centre is drawn with ``seed``; each next one is the row farthest from the chosen
    ones (the lowest index among equals). O(N·d) memory, O(N·d·size) time.

    Returns:
        list[int]: the chosen rows, ascending.
    """
    x = np.asarray(embeddings, dtype=np.float32)
    n = len(x)
    size = min(size, n)
    if not size:
        return []
    sq_norms = np.einsum('ij,ij->i', x, x)
    first = int(np.random.default_rng(seed).integers(n))
    chosen = [first]
    nearest = np.full(n, np.inf, dtype=np.float32)
    centre = first
    for _ in range(size - 1):
        # squared distances, by the expansion: no (N, d) temporary per step
        dist = sq_norms - 2.0 * (x @ x[centre]) + sq_norms[centre]
        np.minimum(nearest, dist, out=nearest)
        nearest[chosen[-1]] = -1.0  # chosen rows are never picked again, even at rounding error's distance
        centre = int(np.argmax(nearest))
        chosen.append(centre)
    return sorted(chosen)
