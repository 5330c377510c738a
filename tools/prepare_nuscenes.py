"""Write mmdet3d's v2 info pickles and the GT database for a nuScenes release, as
`tools/create_data.py nuscenes` of mmdet3d does, without its pitfalls.

    python tools/prepare_nuscenes.py --data-root data/nuscenes [--version v1.0-trainval] [--max-sweeps 10]

Writes nuscenes_infos_train.pkl, nuscenes_infos_val.pkl (v2), nuscenes_dbinfos_train.pkl and
nuscenes_gt_database/ into --data-root (docs/quickstart_nuscenes.md, step 1).
"""

import argparse
import inspect
import json
import os

from conceptminer3d.cli import run_tool
from conceptminer3d.datasets.nuscenes_conversion import convert_nuscenes

DEFAULTS = {k: p.default for k, p in inspect.signature(convert_nuscenes).parameters.items()}


def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument('--data-root', required=True, help='the nuScenes root (samples/, sweeps/, v1.0-*/)')
    p.add_argument('--version', default=DEFAULTS['version'], help='the release folder (default %(default)s)')
    p.add_argument('--max-sweeps', type=int, default=DEFAULTS['max_sweeps'], help='default %(default)s')
    args = p.parse_args()
    tables = os.path.join(args.data_root, args.version)
    if not os.path.isdir(tables):
        raise FileNotFoundError(f'no {args.version} tables at {tables}: unpack the nuScenes metadata there')
    print(json.dumps(convert_nuscenes(args.data_root, args.version, args.max_sweeps), indent=1))


if __name__ == '__main__':
    run_tool(main)
