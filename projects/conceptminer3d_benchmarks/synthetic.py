"""Synthetic stand-ins for big mining runs, for timing what reads them.

The embeddings stand in for CLIP crop embeddings: L2-normalised vectors that concentrate on a
few clusters in a low-dimensional subspace (common object types seen from many viewpoints),
plus a planted fraction of outliers (rare objects) that lie away from every cluster. The
mining dir has nuScenes train's size; a replicated run is a real run N times over.
"""

from __future__ import annotations

import os
import pickle
import shutil

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from conceptminer3d.mining.contracts import (
    CAPTIONS_FILE,
    CONCEPTS_FILE,
    CROPS_FILE,
    EMBEDDINGS_FILE,
    FRAMES_FILE,
    MANIFEST_FILE,
)
from conceptminer3d.subsets import SUBSET_DIR, SUBSET_MANIFEST

__all__ = [
    'NUSCENES_TRAIN_SAMPLES',
    'NUSCENES_TRAIN_SCENES',
    'make_synthetic_embeddings',
    'make_synthetic_mining_dir',
    'replicate_mining_run',
]

_GENERATION_BLOCK = 65536  # rows generated at a time, to keep float32 temporaries small


def make_synthetic_embeddings(
    n_samples: int,
    dim: int = 512,
    outlier_fraction: float = 0.05,
    n_clusters: int = 8,
    intrinsic_dim: int = 16,
    cluster_spread: float = 0.35,
    noise: float = 0.15,
    seed: int = 0,
) -> tuple[np.ndarray, np.ndarray]:
    """L2-normalised float32 embeddings with planted outliers.

    Inliers are Gaussian clusters (unit-variance centres, ``cluster_spread`` spread) in a
    random ``intrinsic_dim``-dimensional subspace, plus isotropic noise of total norm
    about ``noise``. Outliers are drawn from a much wider Gaussian in the same subspace
    (landing between or beyond the clusters) with twice the off-subspace noise, so they are
    unusual in the subspace, not merely trivially far in the ambient space.

    Returns:
        ``(X, is_outlier)``: ``X`` of shape (n_samples, dim), float32, unit rows;
        ``is_outlier`` boolean of shape (n_samples,) with ``round(outlier_fraction * n)``
        planted outliers at random positions.
    """
    if not 0 <= outlier_fraction < 1:
        raise ValueError(f'outlier_fraction must be in [0, 1), got {outlier_fraction!r}')
    if intrinsic_dim > dim:
        raise ValueError(f'intrinsic_dim ({intrinsic_dim}) exceeds dim ({dim})')
    rng = np.random.default_rng(seed)
    basis, _ = np.linalg.qr(rng.standard_normal((dim, intrinsic_dim)))
    basis = basis.T.astype(np.float32)  # (intrinsic_dim, dim), orthonormal rows
    centres = rng.standard_normal((n_clusters, intrinsic_dim)).astype(np.float32)
    cluster_weights = rng.dirichlet(np.full(n_clusters, 2.0))

    is_outlier = np.zeros(n_samples, dtype=bool)
    n_outliers = int(round(outlier_fraction * n_samples))
    is_outlier[rng.choice(n_samples, n_outliers, replace=False)] = True

    X = np.empty((n_samples, dim), dtype=np.float32)
    noise_scale = np.float32(noise / np.sqrt(dim))
    for start in range(0, n_samples, _GENERATION_BLOCK):
        stop = min(start + _GENERATION_BLOCK, n_samples)
        block_outliers = is_outlier[start:stop]
        labels = rng.choice(n_clusters, stop - start, p=cluster_weights)
        latent = centres[labels] + np.float32(cluster_spread) * rng.standard_normal(
            (stop - start, intrinsic_dim), dtype=np.float32
        )
        latent[block_outliers] = np.float32(2.5) * rng.standard_normal(
            (block_outliers.sum(), intrinsic_dim), dtype=np.float32
        )
        block = latent @ basis
        block_noise = rng.standard_normal((stop - start, dim), dtype=np.float32)
        block_noise *= noise_scale
        block_noise[block_outliers] *= 2
        block += block_noise
        block /= np.linalg.norm(block, axis=1, keepdims=True)
        X[start:stop] = block
    return X, is_outlier


def replicate_mining_run(work_dir: str, out_dir: str, copies: int) -> int:
    """A mining run ``copies`` times the size of the one in ``work_dir``, for timing what reads
    the tables (the report): every crop, its concept row, caption and embedding repeated with
    a crop id made unique (``<id>~<copy>``), frames, manifest and subsets as they were.
    Returns the number of crops written."""
    os.makedirs(out_dir, exist_ok=True)
    for name in (FRAMES_FILE, MANIFEST_FILE):
        shutil.copyfile(os.path.join(work_dir, name), os.path.join(out_dir, name))
    if os.path.isfile(os.path.join(work_dir, SUBSET_DIR, SUBSET_MANIFEST)):
        os.makedirs(os.path.join(out_dir, SUBSET_DIR), exist_ok=True)
        shutil.copyfile(
            os.path.join(work_dir, SUBSET_DIR, SUBSET_MANIFEST), os.path.join(out_dir, SUBSET_DIR, SUBSET_MANIFEST)
        )
    for name in (CROPS_FILE, CONCEPTS_FILE, CAPTIONS_FILE):
        table = pq.read_table(os.path.join(work_dir, name))
        column = table.schema.get_field_index('crop_id')
        parts = [
            table.set_column(column, 'crop_id', pc.binary_join_element_wise(table.column('crop_id'), f'{k}', '~'))
            for k in range(copies)
        ]
        pq.write_table(pa.concat_tables(parts), os.path.join(out_dir, name))
    embeddings = np.load(os.path.join(work_dir, EMBEDDINGS_FILE), mmap_mode='r')
    np.save(os.path.join(out_dir, EMBEDDINGS_FILE), np.tile(embeddings, (copies, 1)))
    return len(embeddings) * copies


NUSCENES_TRAIN_SAMPLES = 28_130
NUSCENES_TRAIN_SCENES = 700
_TARGET_SHARES = dict(truck=0.55, trailer=0.17, construction_vehicle=0.11, motorcycle=0.09, bicycle=0.08)


def make_synthetic_mining_dir(
    out_dir: str,
    samples: int = NUSCENES_TRAIN_SAMPLES,
    scenes: int = NUSCENES_TRAIN_SCENES,
    crops: int = 3_000_000,
    target_share: float = 0.05,
    rare_share: float = 0.15,
    embedding_dim: int = 0,
    seed: int = 0,
) -> str:
    """A mining dir and train pickle of nuScenes train's size, for timing the subset stage.

    Every crop is scored (as the annotation source does; the 2D pipeline scores only the
    caption-selected ones, so this is the larger case); ``target_share`` of them are Target
    crops of the default target concepts in nuScenes-like proportions, scores uniform in
    [0.2, 0.9). ``embedding_dim`` 0 writes zero-width embeddings (no coreset, no diversity
    clusters), else a memory-mapped float32 ``embeddings.npy`` of random unit vectors.

    Returns:
        str: the train pickle's path (``out_dir/nuscenes_infos_train.pkl``).
    """
    rng = np.random.default_rng(seed)
    os.makedirs(out_dir, exist_ok=True)
    tokens = np.array([f'{i:032x}' for i in range(samples)], dtype=object)
    scene_of = np.array([f'scene{i:04d}' for i in np.sort(rng.integers(0, scenes, samples))], dtype=object)
    cameras = np.array(
        ['CAM_FRONT', 'CAM_FRONT_RIGHT', 'CAM_FRONT_LEFT', 'CAM_BACK', 'CAM_BACK_LEFT', 'CAM_BACK_RIGHT']
    )
    frames = pa.table(
        dict(
            sample_token=np.repeat(tokens, len(cameras)),
            scene_token=np.repeat(scene_of, len(cameras)),
            camera=np.tile(cameras, samples),
        )
    )
    pq.write_table(frames, os.path.join(out_dir, FRAMES_FILE))
    position = np.sort(rng.integers(0, samples, crops))
    camera = rng.integers(0, len(cameras), crops)
    index = np.arange(crops) - np.searchsorted(position, position)  # running index within a sample
    crop_ids = pa.array([f'{tokens[p]}/{cameras[c]}/{k}' for p, c, k in zip(position, camera, index)])
    pq.write_table(
        pa.table(dict(crop_id=crop_ids, sample_token=pa.array(tokens[position]))), os.path.join(out_dir, CROPS_FILE)
    )
    draw = rng.random(crops)
    group = np.where(draw < target_share, 'Target', np.where(draw < target_share + rare_share, 'Rare', 'Common'))
    targets = list(_TARGET_SHARES)
    concept = np.where(
        group == 'Target',
        np.array(targets)[rng.choice(len(targets), crops, p=list(_TARGET_SHARES.values()))],
        np.where(group == 'Rare', 'traffic_cone', 'car'),
    )
    pq.write_table(
        pa.table(
            dict(
                crop_id=crop_ids,
                sample_token=pa.array(tokens[position]),
                top_concept=pa.array(concept),
                top_score=pa.array(rng.uniform(0.2, 0.9, crops).astype(np.float32)),
                group=pa.array(group),
            )
        ),
        os.path.join(out_dir, CONCEPTS_FILE),
    )
    embeddings = np.lib.format.open_memmap(
        os.path.join(out_dir, EMBEDDINGS_FILE), mode='w+', dtype=np.float32, shape=(crops, embedding_dim)
    )
    for start in range(0, crops if embedding_dim else 0, _GENERATION_BLOCK):
        block = rng.standard_normal((min(_GENERATION_BLOCK, crops - start), embedding_dim)).astype(np.float32)
        embeddings[start : start + len(block)] = block / np.linalg.norm(block, axis=1, keepdims=True)
    embeddings.flush()
    del embeddings
    infos = dict(
        metainfo=dict(categories={'car': 0}, dataset='nuscenes', version='v1.0-trainval', info_version='1.1'),
        data_list=[dict(sample_idx=i, token=t, instances=[]) for i, t in enumerate(tokens)],
    )
    train_pkl = os.path.join(out_dir, 'nuscenes_infos_train.pkl')
    with open(train_pkl, 'wb') as f:
        pickle.dump(infos, f, protocol=4)
    return train_pkl
