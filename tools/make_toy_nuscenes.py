"""Generate the toy nuScenes world and convert it with mmdet3d's converter.

    python tools/make_toy_nuscenes.py --out data/toy_nuscenes [--seed 0]
    python tools/make_toy_nuscenes.py --out data/toy_benchmark --preset benchmark

writes the dataset (v1.0-* tables, samples/, sweeps/) under --out, then
nuscenes_infos_train.pkl, nuscenes_infos_val.pkl, nuscenes_dbinfos_train.pkl and
nuscenes_gt_database/. A --preset (conceptminer3d_toy.world.PRESETS) sets every default,
its realism knobs included; the flags below override it.
"""

import argparse
import dataclasses
import time

from conceptminer3d.cli import run_tool
from conceptminer3d_toy.world import PRESETS, ToyWorldConfig, build_toy_dataset


def parse_args(argv=None):
    preset = argparse.ArgumentParser(add_help=False)
    preset.add_argument('--preset', choices=sorted(PRESETS), help='start from a named world instead of the default one')
    known, _ = preset.parse_known_args(argv)
    defaults = PRESETS[known.preset] if known.preset else ToyWorldConfig()
    p = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter, parents=[preset]
    )
    p.add_argument('--out', required=True, help='dataset root to write')
    p.add_argument('--seed', type=int, default=defaults.seed)
    p.add_argument(
        '--version',
        choices=['v1.0-mini', 'v1.0-trainval'],
        default=defaults.version,
        help='v1.0-mini: up to 8 train + 2 val scenes; v1.0-trainval: up to 700 + 150',
    )
    p.add_argument('--train-scenes', type=int, default=defaults.train_scenes)
    p.add_argument('--val-scenes', type=int, default=defaults.val_scenes)
    p.add_argument('--samples-per-scene', type=int, default=defaults.samples_per_scene)
    p.add_argument('--sweeps-per-sample', type=int, default=defaults.sweeps_per_sample)
    p.add_argument(
        '--image-size', type=int, nargs=2, metavar=('W', 'H'), default=(defaults.image_width, defaults.image_height)
    )
    p.add_argument('--points-per-frame', type=int, default=defaults.points_per_frame)
    p.add_argument('--no-convert', action='store_true', help='only write the nuScenes tables and files')
    p.add_argument('--overwrite', action='store_true', help='replace an existing --out directory')
    args = p.parse_args(argv)
    args.config = dataclasses.replace(
        defaults,
        version=args.version,
        train_scenes=args.train_scenes,
        val_scenes=args.val_scenes,
        samples_per_scene=args.samples_per_scene,
        sweeps_per_sample=args.sweeps_per_sample,
        image_width=args.image_size[0],
        image_height=args.image_size[1],
        points_per_frame=args.points_per_frame,
        seed=args.seed,
    )
    return args


def main():
    args = parse_args()
    start = time.time()
    counts = build_toy_dataset(args.out, args.config, convert=not args.no_convert, overwrite=args.overwrite)
    print(
        f'toy world written to {args.out} in {time.time() - start:.1f} s: '
        f'{counts["scene"]} scenes, {counts["sample"]} samples, {counts["sample_annotation"]} annotations'
    )


if __name__ == '__main__':
    run_tool(main)
