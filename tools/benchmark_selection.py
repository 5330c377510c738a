"""Time the subset stage at nuScenes train's size: a synthetic mining dir (28,130 samples in 700
scenes, 3 M scored crops, 5% of them Target crops), then tools/build_subsets.py's work for each
selection rule in a process of its own (reading the tables, selecting, the random baseline,
writing the pickles and the manifest), with its peak memory.

    python tools/benchmark_selection.py [--crops 3000000] [--samples 28130] [--embedding-dim 0]
        [--selections coverage ranked uniform] [--unit sample] [--diversity 0.5] [--work-dir DIR]

--embedding-dim 512 writes real-size embeddings (6 GB at 3 M crops): the k-center coreset and
the diversity clusters then run too.
"""

import argparse
import json
import os

from conceptminer3d.cli import run_tool
from conceptminer3d.subsets import SubsetSpec
from conceptminer3d.subsets.selection import SELECTIONS, UNITS
from conceptminer3d_benchmarks.selection_speed import run_selection_benchmark
from conceptminer3d_benchmarks.synthetic import NUSCENES_TRAIN_SAMPLES, make_synthetic_mining_dir


def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument('--samples', type=int, default=NUSCENES_TRAIN_SAMPLES)
    p.add_argument('--crops', type=int, default=3_000_000)
    p.add_argument('--embedding-dim', type=int, default=0)
    p.add_argument('--selections', nargs='+', choices=SELECTIONS, default=['coverage', 'ranked', 'uniform'])
    p.add_argument('--unit', choices=UNITS, default=SubsetSpec.unit)
    p.add_argument('--diversity', type=float, default=0.0, help='also time coverage with this diversity weight')
    p.add_argument('--work-dir', default='work_dirs/benchmark_selection')
    p.add_argument('--out', help='write the rows as JSON here')
    args = p.parse_args()
    mining_dir = os.path.join(args.work_dir, f'mining_{args.samples}_{args.crops}_{args.embedding_dim}')
    train_pkl = os.path.join(mining_dir, 'nuscenes_infos_train.pkl')
    if not os.path.isfile(train_pkl):
        make_synthetic_mining_dir(mining_dir, samples=args.samples, crops=args.crops, embedding_dim=args.embedding_dim)
    specs = [SubsetSpec(unit=args.unit, selection=s) for s in args.selections]
    if args.diversity:
        specs.append(SubsetSpec(unit=args.unit, selection='coverage', diversity=args.diversity))
    rows = run_selection_benchmark(mining_dir, train_pkl, specs)
    print(f'{"subset":<40}{"unit":>8}{"process s":>11}{"build s":>9}{"peak MB":>9}{"target slots":>14}')
    for r in rows:
        print(
            f'{r["subset"]:<40}{r["unit"]:>8}{r["process_s"]:>11.1f}{r["build_subsets_s"]:>9.1f}'
            f'{r["peak_rss_mb"]:>9.0f}{r["target_slots"]:>14}'
        )
    if args.out:
        with open(args.out, 'w') as f:
            json.dump(rows, f, indent=1)


if __name__ == '__main__':
    run_tool(main)
