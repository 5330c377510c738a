"""Train the toy mining models (a small YOLO and a small open_clip model) on a toy world of their
own, or reuse the cached ones, link them where configs/mining/toy_trained.py looks, and report
their quality on the benchmark world's val cameras (logic in conceptminer3d_toy.models.trained).

    python tools/train_toy_mining_models.py --out data/toy_models_trained
    python tools/train_toy_mining_models.py --out data/toy_models_trained --eval-data-root data/toy_benchmark

Models are cached under $CM3D_CACHE (default ~/.cache/conceptminer3d)/toy_mining_models/<key>,
the training world (the benchmark preset with --seed) under .../toy_worlds/. Without
--eval-data-root the benchmark world (--eval-seed) is generated there too. The metrics go to
metrics.json beside the models.
"""

import argparse
import dataclasses
import json
import os
import time

from conceptminer3d.cli import run_tool
from conceptminer3d_toy.models.trained import (
    TRAINING_WORLD,
    TrainedToyModelsSpec,
    build_trained_toy_models,
    check_separate_worlds,
    default_cache_root,
    ensure_toy_world,
    evaluate_trained_toy_models,
    link_trained_toy_models,
)
from conceptminer3d_toy.models.trained_clip import ClipTrainSettings
from conceptminer3d_toy.models.trained_yolo import YoloTrainSettings
from conceptminer3d_toy.world import PRESETS


def parse_args(argv=None):
    yolo, clip = YoloTrainSettings(), ClipTrainSettings()
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument(
        '--out', default='data/toy_models_trained', help='link (or with --copy, copy) the models here; "" to skip'
    )
    p.add_argument('--copy', action='store_true', help='copy the models to --out instead of linking them')
    p.add_argument('--cache-dir', default=None, help=f'cache root (default: $CM3D_CACHE or {default_cache_root()})')
    w = p.add_argument_group('training world (the benchmark preset with another seed)')
    w.add_argument('--seed', type=int, default=TRAINING_WORLD.seed)
    w.add_argument('--train-scenes', type=int, default=TRAINING_WORLD.train_scenes)
    w.add_argument('--val-scenes', type=int, default=TRAINING_WORLD.val_scenes)
    t = p.add_argument_group('training')
    t.add_argument('--yolo-epochs', type=int, default=yolo.epochs)
    t.add_argument('--imgsz', type=int, default=yolo.imgsz)
    t.add_argument('--clip-epochs', type=int, default=clip.epochs)
    t.add_argument('--threads', type=int, default=None, help='torch threads (default: all cores)')
    e = p.add_argument_group('evaluation')
    e.add_argument(
        '--eval-data-root',
        default=None,
        help='an existing benchmark world (default: generate the benchmark preset with --eval-seed)',
    )
    e.add_argument('--eval-seed', type=int, default=PRESETS['benchmark'].seed)
    e.add_argument('--no-eval', action='store_true')
    p.add_argument('--verbose', action='store_true', help="show ultralytics' training log")
    return p.parse_args(argv)


def _print_metrics(metrics: dict) -> None:
    yolo, clip = metrics['yolo'], metrics['clip']
    print(
        f"YOLO 2D mAP50 {yolo['map50']:.3f} (mAP50-95 {yolo['map50_95']:.3f}) on "
        f"{yolo['dataset']['images']} val images / {yolo['dataset']['boxes']} boxes"
    )
    print('  ' + ', '.join(f'{name} {ap:.3f}' for name, ap in yolo['map50_per_class'].items()))
    print(
        f"CLIP zero-shot accuracy {clip['accuracy']:.3f} (balanced {clip['balanced_accuracy']:.3f}, "
        f"chance {clip['chance']:.3f}) on {clip['crops']} GT crops"
    )
    print('  ' + ', '.join(f"{name} {v['accuracy']:.3f} (n={v['crops']})" for name, v in clip['per_class'].items()))


def main(argv=None):
    args = parse_args(argv)
    world = dataclasses.replace(
        TRAINING_WORLD, seed=args.seed, train_scenes=args.train_scenes, val_scenes=args.val_scenes
    )
    eval_world = dataclasses.replace(PRESETS['benchmark'], seed=args.eval_seed)
    check_separate_worlds(world, eval_world)
    spec = TrainedToyModelsSpec(
        world=world,
        yolo=dataclasses.replace(
            YoloTrainSettings(), epochs=args.yolo_epochs, imgsz=args.imgsz, num_threads=args.threads
        ),
        clip=dataclasses.replace(ClipTrainSettings(), epochs=args.clip_epochs, num_threads=args.threads),
    )
    start = time.perf_counter()
    result = build_trained_toy_models(spec, args.cache_dir, verbose=args.verbose)
    manifest = result['manifest']
    print(
        f"models {'reused' if result['reused'] else 'trained'} in {time.perf_counter() - start:.1f} s: "
        f"{result['dir']} (key {result['key']})"
    )
    print(
        f"  yolo: {manifest['yolo']['parameters']:,} parameters, {manifest['yolo']['bytes'] / 1e6:.1f} MB, "
        f"trained in {manifest['yolo']['seconds']:.0f} s"
    )
    print(
        f"  clip: {manifest['clip']['parameters']:,} parameters, {manifest['clip']['bytes'] / 1e6:.1f} MB, "
        f"trained in {manifest['clip']['seconds_with_data']:.0f} s"
    )
    if args.out:
        print(f'linked to {link_trained_toy_models(result["dir"], args.out, copy=args.copy)}')
    if args.no_eval:
        return
    data_root = args.eval_data_root or ensure_toy_world(eval_world, args.cache_dir)
    if args.eval_data_root and os.path.realpath(data_root) == os.path.realpath(manifest['training_world']['root']):
        raise ValueError('--eval-data-root is the training world')
    metrics = evaluate_trained_toy_models(result['dir'], data_root, spec=spec, num_threads=args.threads)
    _print_metrics(metrics)
    print(f"metrics: {os.path.join(result['dir'], 'metrics.json')}")
    print(json.dumps({'yolo_map50': metrics['yolo']['map50'], 'clip_accuracy': metrics['clip']['accuracy']}))


if __name__ == '__main__':
    run_tool(main)
