"""Build mined subsets from existing mining outputs (the last stage of tools/mine.py, alone).

    python tools/build_subsets.py MINING_WORK_DIR --train-pkl PKL [--dbinfos PKL]
        [--target-ratio 0.1] [--random-ratio 0.1] [--unit sample|scene] [--seed 0]
"""
import argparse
import json

from conceptminer3d.subsets import SubsetSpec, build_subsets


def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument('mining_dir', help='work dir of tools/mine.py (holds concepts.parquet)')
    p.add_argument('--train-pkl', required=True, help='the train info pickle that was mined')
    p.add_argument('--dbinfos', help='GT database to filter (nuscenes_dbinfos_train.pkl)')
    p.add_argument('--out-dir', help='default: MINING_WORK_DIR/subsets')
    p.add_argument('--target-ratio', type=float, default=0.1)
    p.add_argument('--random-ratio', type=float, default=0.1)
    p.add_argument('--unit', choices=['sample', 'scene'], default='sample')
    p.add_argument('--seed', type=int, default=0)
    args = p.parse_args()
    spec = SubsetSpec(args.target_ratio, args.random_ratio, args.unit, args.seed)
    manifest = build_subsets(args.mining_dir, args.train_pkl, spec, args.dbinfos, args.out_dir)
    print(json.dumps({k: v for k, v in manifest.items() if k != 'selected'}, indent=1))


if __name__ == '__main__':
    main()
