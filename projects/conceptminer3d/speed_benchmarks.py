"""Speed benchmarks of the mining stages (called by ``tools/benchmark_mining.py``): the whole
pipeline on a slice of an info pickle, the outlier stage on synthetic embeddings, and the
subset stage on a synthetic mining dir of nuScenes train's size (``tools/benchmark_selection.py``).

The synthetic data stand in for CLIP crop embeddings: L2-normalised vectors that concentrate on a few
clusters in a low-dimensional subspace (common object types seen from many viewpoints),
plus a planted fraction of outliers (rare objects) that lie away from every cluster.
"""

from __future__ import annotations

import dataclasses
import json
import os
import pickle
import resource
import shutil
import subprocess
import sys
import time
from typing import Optional

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from .mining import MiningPipeline
from .mining.contracts import CAPTIONS_FILE, CONCEPTS_FILE, CROPS_FILE, EMBEDDINGS_FILE, FRAMES_FILE, MANIFEST_FILE
from .mining.outliers.scoring import combine_outlier_flags, score_outliers
from .mining.pipeline import MiningRun
from .mining.runtime.images import decode_batch
from .mining.stages.crops import cut_crops
from .mining.stages.frames import load_info_pickle, resolve_ann_file
from .registry import OUTLIER_DETECTORS
from .subsets import SUBSET_DIR, SUBSET_MANIFEST, subset_infos

__all__ = [
    'NUSCENES_TRAIN_IMAGES',
    'NUSCENES_TRAIN_SAMPLES',
    'make_synthetic_mining_dir',
    'run_selection_benchmark',
    'make_synthetic_embeddings',
    'project_stage_hours',
    'run_bare_script_benchmark',
    'run_outlier_benchmark',
    'run_pipeline_benchmark',
    'run_process_benchmark',
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


def run_outlier_benchmark(
    sizes=(10_000, 100_000, 1_000_000),
    dim: int = 512,
    seed: int = 0,
    contamination: float = 0.1,
    outlier_fraction: float = 0.05,
    detectors=None,
    verbose: bool = False,
) -> list[dict]:
    """Time the outlier detectors on synthetic embeddings and measure their recall.

    For every size, one data set is generated (not timed) and each detector is timed
    through :func:`~conceptminer3d.mining.outliers.scoring.score_outliers`, the call the mining
    pipeline makes: fitting plus scoring and flagging every crop.

    Args:
        sizes: numbers of crops to benchmark.
        dim: embedding size.
        seed: seed of the synthetic data.
        contamination: ``contamination`` of every detector (fraction flagged).
        outlier_fraction: fraction of planted outliers; keep it below ``contamination``
            so that a perfect detector reaches recall 1.
        detectors: detector configs (``dict(type=...)``, built from ``OUTLIER_DETECTORS``)
            to run; defaults to the three detectors with their default arguments.
        verbose: print each row as it is measured.

    Returns:
        One dict per (size, detector): ``n``, ``dim``, ``detector``, ``seconds`` (wall
        clock), ``cpu_seconds`` (all threads of this process; shows how much of the wall
        time other load on the machine took), ``crops_per_s``, ``recall`` (planted
        outliers flagged), ``precision`` (flagged crops that are planted outliers) and
        ``n_flagged``.
    """
    if detectors is None:
        detectors = [
            dict(type='IsolationForestOutliers'),
            dict(type='LocalOutlierFactorOutliers'),
            dict(type='KnnDistanceOutliers'),
        ]
    rows = []
    for n_samples in sizes:
        X, is_outlier = make_synthetic_embeddings(n_samples, dim=dim, outlier_fraction=outlier_fraction, seed=seed)
        # each detector alone, then all of them in one call, as the pipeline runs them (the
        # neighbour detectors share one search there)
        runs = [{c['type']: c} for c in detectors] + ([{c['type']: c for c in detectors}] if len(detectors) > 1 else [])
        for configs in runs:
            built = {name: OUTLIER_DETECTORS.build(dict(c, contamination=contamination)) for name, c in configs.items()}
            start, cpu_start = time.perf_counter(), time.process_time()
            flagged = combine_outlier_flags(score_outliers(built, X)[1])
            seconds = time.perf_counter() - start
            cpu_seconds = time.process_time() - cpu_start
            n_flagged = int(flagged.sum())
            n_true = int((flagged & is_outlier).sum())
            row = dict(
                n=n_samples,
                dim=dim,
                detector=next(iter(configs)) if len(configs) == 1 else 'all, one call (union)',
                seconds=round(seconds, 3),
                cpu_seconds=round(cpu_seconds, 3),
                crops_per_s=round(n_samples / seconds, 1),
                recall=round(n_true / max(int(is_outlier.sum()), 1), 4),
                precision=round(n_true / max(n_flagged, 1), 4),
                n_flagged=n_flagged,
            )
            rows.append(row)
            if verbose:
                print(row, flush=True)
        del X
    return rows


def _subset_pickle(data_root: str, ann_file: str, num_samples: int, out_path: str) -> str:
    infos = load_info_pickle(resolve_ann_file(data_root, ann_file))
    with open(out_path, 'wb') as f:
        pickle.dump(subset_infos(infos, range(min(num_samples, len(infos['data_list'])))), f)
    return out_path


def _die_with_parent() -> None:
    # A timed child must not outlive a benchmark that was killed: it would load the machine
    # under the next measurement. Linux only (prctl PR_SET_PDEATHSIG); elsewhere a no-op.
    if sys.platform.startswith('linux'):
        import ctypes
        import signal

        ctypes.CDLL(None, use_errno=True).prctl(1, signal.SIGKILL)  # 1: PR_SET_PDEATHSIG


def run_process_benchmark(mine_tool: str, cfg, data_root: str, ann_file: str, work_dir: str) -> dict:
    """``mine_tool`` (``tools/mine.py``) as a user runs it, in a process of its own on a fresh
    work dir: its wall time from start to exit (imports, model loading and every stage
    included) and its peak resident memory."""
    os.makedirs(work_dir, exist_ok=True)
    config = os.path.join(work_dir, 'mining_config.py')
    cfg.dump(config)
    run_dir = os.path.join(work_dir, 'process')
    shutil.rmtree(run_dir, ignore_errors=True)
    command = [sys.executable, mine_tool, config, '--data-root', data_root, '--ann-file', ann_file]
    command += ['--work-dir', run_dir, '--no-progress', '--no-report']  # the report is not mining
    start = time.perf_counter()
    subprocess.run(command, check=True, stdout=subprocess.DEVNULL, preexec_fn=_die_with_parent)
    wall = time.perf_counter() - start
    # ru_maxrss of waited-for children: the largest of them, in KiB on Linux.
    peak_kib = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss
    return dict(process_s=round(wall, 3), peak_rss_mb=round(peak_kib / 1024, 1))


def run_bare_script_benchmark(script: str, image_paths, detector, embedder, threads: int, work_dir: str) -> dict:
    """``script`` (``tools/benchmark_bare_models.py``) in a process of its own: the same two
    models, with the same settings, on the same images, and nothing else. Its wall time is
    what a user's minimal script would take; ``tools/mine.py`` is compared with it."""
    images_file = os.path.join(work_dir, 'bare_images.txt')
    with open(images_file, 'w') as f:
        f.write(''.join(f'{path}\n' for path in image_paths))
    source = embedder.source
    command = [sys.executable, script, images_file, '--yolo', detector.model_path, '--clip', source.model_name]
    command += ['--conf', str(detector.conf), '--max-det', str(detector.max_det), '--imgsz', str(detector.imgsz)]
    command += ['--yolo-batch', str(detector.batch_size), '--clip-batch', str(embedder.batch_size)]
    command += ['--threads', str(threads), '--device', str(embedder.device)]
    if source.pretrained:
        command += ['--clip-pretrained', source.pretrained]
    start = time.perf_counter()
    out = subprocess.run(command, check=True, capture_output=True, text=True, preexec_fn=_die_with_parent).stdout
    wall = time.perf_counter() - start
    counted = json.loads(out.strip().splitlines()[-1])
    return dict(
        bare_script_s=round(wall, 3), bare_script_model_s=counted['model_seconds'], bare_script_crops=counted['crops']
    )


def run_pipeline_benchmark(
    cfg,
    data_root: str,
    ann_file: str,
    num_samples: int,
    work_dir: str,
    mine_tool: Optional[str] = None,
    bare_script: Optional[str] = None,
) -> dict:
    """Per-stage throughput of a full mining run, and the per-image stage's overhead over
    bare model compute on the same frames.

    Bare compute: the same detector and embedder objects called on the same batches, with
    every image decoded and every crop's box found beforehand (untimed); cutting, resizing and
    normalising the crops is the embedder's (``encode_regions``) and timed with it. Pipeline: the cached,
    prefetching per-image stage as ``tools/mine.py`` runs it, on a fresh cache. Process: the
    whole ``tools/mine.py`` run in its own process (``run_process_benchmark``), which is what a
    user waits for. Bare script: the two models alone in a process of their own
    (``run_bare_script_benchmark``), as a user's minimal script would run them.
    """
    os.makedirs(work_dir, exist_ok=True)
    ann = _subset_pickle(data_root, ann_file, num_samples, os.path.join(work_dir, 'benchmark_infos.pkl'))
    run_dir = os.path.join(work_dir, 'run')
    shutil.rmtree(run_dir, ignore_errors=True)
    pipeline = MiningPipeline(cfg, data_root, ann, run_dir, progress=False)
    manifest = pipeline.run()

    frames = pipeline.frame_source.load(data_root, ann)
    batch = pipeline.frame_batch_size()
    threads = manifest['torch_threads']
    batches = [frames[i : i + batch] for i in range(0, len(frames), batch)]
    decoded = [[img for img, _ in decode_batch(b) if img is not None] for b in batches]
    detector, embedder = pipeline.detector, pipeline.embedder
    detector.detect(decoded[0])  # warm-up, as the pipeline's first batch had its own
    keep_classes = set(cfg.crops.get('yolo_classes') or [])
    detect_s = embed_s = 0.0
    n_crops = 0
    for images in decoded:
        t0 = time.perf_counter()
        detections = detector.detect(images)
        detect_s += time.perf_counter() - t0
        regions = [
            (i, crop.box)
            for i, (image, det) in enumerate(zip(images, detections))
            for crop in cut_crops(
                (image.shape[1], image.shape[0]),
                det,
                detector.class_names,
                cfg.crops.padding,
                cfg.crops.min_size,
                keep_classes,
            ).crops
        ]
        n_crops += len(regions)
        t0 = time.perf_counter()
        if regions:
            embedder.encode_regions(images, regions)
        embed_s += time.perf_counter() - t0

    timed_dir = os.path.join(work_dir, 'timed')
    shutil.rmtree(timed_dir, ignore_errors=True)
    timed = MiningPipeline(cfg, data_root, ann, timed_dir, progress=False)
    timed._detector, timed._embedder = detector, embedder  # loaded once: compare compute, not loading
    t0 = time.perf_counter()
    timed.detect_and_embed(MiningRun(frames=frames, threads=threads))
    pipeline_s = time.perf_counter() - t0
    bare = detect_s + embed_s
    process = {}
    if mine_tool:
        process = run_process_benchmark(mine_tool, cfg, data_root, ann, work_dir)
        process['process_overhead_pct'] = round(100.0 * (process['process_s'] - bare) / bare, 1)
    if bare_script:
        paths = [frame.img_path for frame in frames]
        process.update(run_bare_script_benchmark(bare_script, paths, detector, embedder, threads, work_dir))
        process['bare_script_overhead_pct'] = round(100.0 * (process['bare_script_s'] - bare) / bare, 1)
        if 'process_s' in process:
            script_s = process['bare_script_s']
            process['process_vs_bare_script_pct'] = round(100.0 * (process['process_s'] - script_s) / script_s, 1)
    return dict(
        frames=len(frames),
        crops=n_crops,
        bare_detect_s=round(detect_s, 3),
        bare_embed_s=round(embed_s, 3),
        bare_model_s=round(bare, 3),
        pipeline_detect_embed_s=round(pipeline_s, 3),
        overhead_pct=round(100.0 * (pipeline_s - bare) / bare, 1),
        **process,
        torch_threads=threads,
        stages=manifest['stages'],
        nuscenes_train_projection=project_stage_hours(manifest['stages'], len(frames)),
        counts=manifest['counts'],
    )


# nuScenes trainval's train split: 28,130 samples x 6 cameras.
NUSCENES_TRAIN_IMAGES = 28_130 * 6
_PER_IMAGE_STAGES = ('detect', 'embed', 'caption', 'caption_text_embed')


def project_stage_hours(stages: dict, frames: int, images: int = NUSCENES_TRAIN_IMAGES) -> dict:
    """Hours each per-image stage of a benchmark run would take on ``images`` images, by
    scaling its seconds per image (so at the run's crops per image and captioned share), and
    which stage bounds the run. The global stages (outliers, concepts) are left out: they
    take minutes at a million crops (``run_outlier_benchmark``)."""
    hours = {
        name: round(stages[name]['seconds'] / frames * images / 3600, 2)
        for name in _PER_IMAGE_STAGES
        if stages.get(name, {}).get('items')
    }
    bound = max(hours, key=hours.get) if hours else None
    return dict(images=images, hours=hours, total_hours=round(sum(hours.values()), 2), bound_by=bound)


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


def run_selection_benchmark(mining_dir: str, train_pkl: str, specs) -> list[dict]:
    """``build_subsets`` of each ``SubsetSpec`` in a process of its own (reading the tables,
    selecting, the random baseline, the coreset when there are embeddings, writing the
    pickles and the manifest): wall time and peak resident memory."""
    rows = []
    for spec in specs:
        code = (
            'import sys, time, json, resource\n'
            'from conceptminer3d.subsets import SubsetSpec, build_subsets\n'
            f'spec = SubsetSpec(**{dataclasses.asdict(spec)!r})\n'
            'start = time.perf_counter()\n'
            f'manifest = build_subsets({mining_dir!r}, {train_pkl!r}, spec)\n'
            'print(json.dumps(dict(seconds=time.perf_counter() - start, selected=manifest["num_selected"],'
            ' target=manifest["reasons"].get("target", 0),'
            ' peak_kib=resource.getrusage(resource.RUSAGE_SELF).ru_maxrss)))\n'
        )
        start = time.perf_counter()
        out = subprocess.run([sys.executable, '-c', code], check=True, capture_output=True, text=True,
                             preexec_fn=_die_with_parent).stdout  # fmt: skip
        wall = time.perf_counter() - start
        inner = json.loads(out.strip().splitlines()[-1])
        rows.append(
            dict(
                subset=spec.name,
                unit=spec.unit,
                process_s=round(wall, 2),
                build_subsets_s=round(inner['seconds'], 2),
                selected=inner['selected'],
                target_slots=inner['target'],
                peak_rss_mb=round(inner['peak_kib'] / 1024, 1),
            )
        )
    return rows
