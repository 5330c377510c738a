"""Write (or rebuild) the HTML report of a mining run from its tables alone: no model is loaded.

    python tools/report.py WORK_DIR [--out DIR] [--max-map-points 20000]

Open WORK_DIR/report/index.html in a browser (it needs no server and no network).
"""

import argparse
import json

from conceptminer3d.cli import run_tool
from conceptminer3d.mining.runtime.writer_lock import add_writer_arguments, tool_writer_lock
from conceptminer3d.report import MAX_MAP_POINTS, build_report


def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument('work_dir', help='a tools/mine.py work dir')
    p.add_argument('--out', help='report directory (default: WORK_DIR/report)')
    p.add_argument('--max-map-points', type=int, default=MAX_MAP_POINTS, help='crops drawn on the embedding map')
    p.add_argument('--no-progress', action='store_true')
    add_writer_arguments(p)
    args = p.parse_args()
    with tool_writer_lock(args.work_dir, args):
        summary = build_report(args.work_dir, args.out, args.max_map_points, progress=not args.no_progress)
    print(json.dumps(summary, indent=1))


if __name__ == '__main__':
    run_tool(main)
