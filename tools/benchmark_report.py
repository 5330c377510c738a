"""How the HTML report scales: replicate a mining run to N times its crops, build its report
(first build, then a rebuild), and time headless Chromium opening the page until its gallery
is drawn.

    python tools/benchmark_report.py WORK_DIR [--copies 30] [--out work_dirs/benchmark_report]

Timings belong here, never in tests. Run on an idle machine.
"""

import argparse
import json
import os
import shutil
import subprocess
import time

from conceptminer3d.cli import run_tool
from conceptminer3d.report import build_report
from conceptminer3d_benchmarks.synthetic import replicate_mining_run


def open_in_chromium(path: str) -> float:
    """Seconds until headless Chromium has run the page's scripts and dumped its DOM."""
    chromium = shutil.which('chromium') or shutil.which('chromium-browser')
    if chromium is None:
        raise SystemExit('chromium is not installed (make browser)')
    start = time.perf_counter()
    dom = subprocess.run(
        [chromium, '--headless=new', '--no-sandbox', '--disable-gpu', '--dump-dom', f'file://{os.path.abspath(path)}'],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    seconds = time.perf_counter() - start
    if 'data-ready="1"' not in dom:
        raise SystemExit(f'{path}: the gallery was not drawn')
    return seconds


def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument('work_dir', help='a finished tools/mine.py work dir')
    p.add_argument('--copies', type=int, default=30)
    p.add_argument('--out', default='work_dirs/benchmark_report')
    args = p.parse_args()
    shutil.rmtree(args.out, ignore_errors=True)
    crops = replicate_mining_run(args.work_dir, args.out, args.copies)
    first = build_report(args.out)
    again = build_report(args.out, progress=False)
    results = dict(
        crops=crops,
        first_build=first,
        rebuild_seconds=again['seconds'],
        # The first launch of a browser also sets up its profile and font caches.
        chromium_open_seconds=dict(
            first_launch=round(open_in_chromium(first['path']), 2), again=round(open_in_chromium(first['path']), 2)
        ),
    )
    print(json.dumps(results, indent=1))


if __name__ == '__main__':
    run_tool(main)
