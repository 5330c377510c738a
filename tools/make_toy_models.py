"""Build the tiny random-initialised models that configs/mining/toy.py uses (no downloads).

python tools/make_toy_models.py --out data/toy_models [--seed 0]
"""

import argparse
import json

from conceptminer3d.toy_models import build_toy_models


def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument('--out', required=True)
    p.add_argument('--seed', type=int, default=0)
    args = p.parse_args()
    print(json.dumps(build_toy_models(args.out, seed=args.seed), indent=1))


if __name__ == '__main__':
    main()
