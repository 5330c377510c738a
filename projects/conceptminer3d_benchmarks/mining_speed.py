"""The mining pipeline's speed (``tools/benchmark_mining.py``): per-stage throughput of a whole
run on a slice of an info pickle; the per-image stage against bare model compute (the stage's
own batch function, ``mining.stages.batches.detect_and_embed_batch``, on images decoded
beforehand); the whole ``tools/mine.py`` process and a user's minimal script against it; and
the hours each stage would take on nuScenes train.
"""

from __future__ import annotations

import json
import os
import pickle
import resource
import shutil
import subprocess
import sys
import time
from typing import Optional

from conceptminer3d.mining import MiningPipeline
from conceptminer3d.mining.runtime.cache import CACHE_DIR
from conceptminer3d.mining.runtime.images import decode_batch
from conceptminer3d.mining.runtime.run_record import StageTimer
from conceptminer3d.mining.stages.batches import detect_and_embed_batch
from conceptminer3d.mining.stages.frames import load_info_pickle, resolve_ann_file
from conceptminer3d.subsets import subset_infos

from .child_process import die_with_parent

__all__ = [
    'NUSCENES_TRAIN_IMAGES',
    'project_stage_hours',
    'run_bare_script_benchmark',
    'run_pipeline_benchmark',
    'run_process_benchmark',
]


def _subset_pickle(data_root: str, ann_file: str, num_samples: int, out_path: str) -> str:
    infos = load_info_pickle(resolve_ann_file(data_root, ann_file))
    with open(out_path, 'wb') as f:
        pickle.dump(subset_infos(infos, range(min(num_samples, len(infos['data_list'])))), f)
    return out_path


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
    subprocess.run(command, check=True, stdout=subprocess.DEVNULL, preexec_fn=die_with_parent)
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
    out = subprocess.run(command, check=True, capture_output=True, text=True, preexec_fn=die_with_parent).stdout
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

    Bare compute: the model calls of the stage's own batch function (``detect_and_embed_batch``),
    on the same batches with every image decoded beforehand (untimed); cutting, resizing and
    normalising the crops is the embedder's (``encode_regions``) and timed with it. Pipeline: the
    cached, prefetching per-image stage as ``tools/mine.py`` runs it, on a fresh cache, with the
    models already loaded. Process: the whole ``tools/mine.py`` run in its own process
    (``run_process_benchmark``), which is what a user waits for. Bare script: the two models
    alone in a process of their own (``run_bare_script_benchmark``), as a user's minimal script
    would run them.
    """
    os.makedirs(work_dir, exist_ok=True)
    ann = _subset_pickle(data_root, ann_file, num_samples, os.path.join(work_dir, 'benchmark_infos.pkl'))
    run_dir = os.path.join(work_dir, 'run')
    shutil.rmtree(run_dir, ignore_errors=True)
    pipeline = MiningPipeline(cfg, data_root, ann, run_dir, progress=False)
    manifest = pipeline.run()  # also loads the models and warms them up

    run = pipeline.start()
    frames, threads = run.frames, manifest['torch_threads']
    batch = pipeline.frame_batch_size()
    batches = [frames[i : i + batch] for i in range(0, len(frames), batch)]
    decoded = [decode_batch(b) for b in batches]
    detector, embedder = pipeline.detector, pipeline.embedder
    detector.detect([img for img, _ in decoded[0] if img is not None])  # warm-up, as the pipeline had
    timer = StageTimer()
    for frame_batch, images in zip(batches, decoded):
        detect_and_embed_batch(detector, embedder, frame_batch, images, cfg.crops, timer)
    model_calls = timer.report()
    detect_s, embed_s = model_calls['detect']['seconds'], model_calls['embed']['seconds']
    n_crops = model_calls['embed']['items']

    # The pipeline's per-image stage again on a fresh cache, with the models it has loaded:
    # compute against compute, not loading.
    shutil.rmtree(os.path.join(run_dir, CACHE_DIR))
    t0 = time.perf_counter()
    pipeline.detect_and_embed(run)
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
