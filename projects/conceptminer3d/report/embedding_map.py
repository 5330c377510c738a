"""A 2-D map of the crop embeddings (t-SNE), computed once per set of points and cached."""

from __future__ import annotations

import hashlib
import os

import numpy as np

from ..mining.runtime.atomic_files import atomic_output

MAP_CACHE = 'embedding_map.npz'


def map_sample(num_crops: int, max_points: int, seed: int = 0) -> np.ndarray:
    """The crop rows drawn on the map: all of them, or ``max_points`` drawn with ``seed``
    (sorted, so the map's order follows the crops table)."""
    if num_crops <= max_points:
        return np.arange(num_crops)
    return np.sort(np.random.default_rng(seed).choice(num_crops, size=max_points, replace=False))


def embedding_map(report_dir: str, embeddings: np.ndarray, rows: np.ndarray, seed: int = 0) -> np.ndarray:
    """(len(rows), 2) t-SNE coordinates of ``embeddings[rows]``, scaled to [0, 1]; reused from
    ``report_dir/embedding_map.npz`` when the same points were mapped before."""
    points = np.ascontiguousarray(embeddings[rows], dtype=np.float32)
    key = hashlib.sha256(points.tobytes() + rows.astype(np.int64).tobytes() + str(seed).encode()).hexdigest()
    cache = os.path.join(report_dir, MAP_CACHE)
    if os.path.exists(cache):
        with np.load(cache) as stored:
            if str(stored['key']) == key:
                return stored['xy']
    xy = _tsne(points, seed)
    with atomic_output(cache, '.npz') as scratch:
        np.savez(scratch, key=np.array(key), xy=xy)
    return xy


def _tsne(points: np.ndarray, seed: int) -> np.ndarray:
    if len(points) < 5:  # t-SNE needs more points than its perplexity; a few points sit on a line
        xy = np.stack([np.linspace(0, 1, len(points)), np.full(len(points), 0.5)], axis=1)
        return xy.astype(np.float32)
    from sklearn.decomposition import PCA
    from sklearn.manifold import TSNE

    if points.shape[1] > 50 and len(points) > 50:
        points = PCA(n_components=50, random_state=seed).fit_transform(points)
    perplexity = float(min(30, (len(points) - 1) / 3))
    xy = TSNE(n_components=2, perplexity=perplexity, init='pca', random_state=seed).fit_transform(points)
    xy = (xy - xy.min(axis=0)) / np.maximum(xy.max(axis=0) - xy.min(axis=0), 1e-9)
    return xy.astype(np.float32)
