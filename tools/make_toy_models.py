"""Build the tiny random-initialised models that configs/mining/toy.py uses (no downloads),
and on request the default captioner's architecture (Qwen2-VL-2B-Instruct) with random
weights, for timing captions without its download (tools/benchmark_mining.py).

python tools/make_toy_models.py --out data/toy_models [--seed 0] [--qwen2-vl-2b DIR]
"""

import argparse
import json

from conceptminer3d.cli import run_tool
from conceptminer3d_toy.models import build_random_qwen2_vl_2b, build_toy_models


def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument('--out', required=True)
    p.add_argument('--seed', type=int, default=0)
    p.add_argument(
        '--qwen2-vl-2b',
        metavar='DIR',
        help='also write Qwen2-VL-2B-Instruct with random weights here (about 4.4 GB; a few minutes on a CPU)',
    )
    args = p.parse_args()
    paths = build_toy_models(args.out, seed=args.seed)
    if args.qwen2_vl_2b:
        paths['qwen2_vl_2b'] = build_random_qwen2_vl_2b(args.qwen2_vl_2b, seed=args.seed)
    print(json.dumps(paths, indent=1))


if __name__ == '__main__':
    run_tool(main)
