"""Mine an info pickle: frames → 2D boxes → crops → CLIP embeddings → outliers → captions →
concept groups. Writes frames/crops/captions/concepts.parquet, embeddings.npy and
manifest.json and the HTML report (report/index.html) under --work-dir; re-runs reuse cached
stages and resume killed runs.

    python tools/mine.py CONFIG --data-root DIR --ann-file PKL --work-dir DIR [--models-dir DIR]
        [--cfg-options k=v ...] [--wait [--wait-timeout S]]

With several GPUs, run it under torchrun with --launcher pytorch (tools/dist_mine.sh does):
every rank mines its share of the images, rank 0 runs the global stages and writes the outputs,
which are the same as one process's.

One writer per work dir: a run that finds another writing there stops at once naming it, or
with --wait waits for it and reuses its finished outputs.
"""

import argparse
import json
import logging

from conceptminer3d.apis import run_mining
from conceptminer3d.cli import run_tool
from conceptminer3d.launch import DictAction, init_distributed
from conceptminer3d.mining.models.model_loading import MODELS_DIR_ENV
from conceptminer3d.mining.runtime.writer_lock import add_writer_arguments, if_busy_of, tool_writer_lock
from conceptminer3d.report import build_report


def parse_args():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument('config', help='mining config, e.g. configs/mining/default.py')
    p.add_argument('--data-root', required=True, help='dataset root (holds samples/ and the v1.0-* tables)')
    p.add_argument('--ann-file', required=True, help='v2 info pickle (absolute, or relative to --data-root)')
    p.add_argument('--work-dir', required=True, help='where the tables, cache and manifest go')
    p.add_argument('--cfg-options', nargs='+', action=DictAction, help='override config keys: key=value')
    p.add_argument(
        '--models-dir',
        help=f'where model names resolve first (the config\'s models_dir; default ${MODELS_DIR_ENV} or ./models)',
    )
    p.add_argument('--no-progress', action='store_true', help='no progress bars')
    p.add_argument('--no-report', action='store_true', help='do not write WORK_DIR/report/ (tools/report.py can later)')
    add_writer_arguments(p)
    p.add_argument('--launcher', choices=['none', 'pytorch', 'slurm', 'mpi'], default='none', help='job launcher')
    return p.parse_args()


def main():
    args = parse_args()
    logging.basicConfig(level=logging.INFO, format='%(asctime)s %(levelname)s %(name)s: %(message)s')
    init_distributed(args.launcher)
    manifest = run_mining(
        args.config,
        args.data_root,
        args.ann_file,
        args.work_dir,
        cfg_options={**(args.cfg_options or {}), **({'models_dir': args.models_dir} if args.models_dir else {})},
        progress=not args.no_progress,
        if_busy=if_busy_of(args),
        wait_timeout_s=args.wait_timeout,
    )
    if manifest is None:  # not rank 0: rank 0 reports for the job
        return
    if not args.no_report:
        with tool_writer_lock(args.work_dir, args):
            report = build_report(args.work_dir, progress=not args.no_progress)
        logging.getLogger('conceptminer3d').info(
            'report: %s (%s MB, %s s)', report['path'], report['megabytes'], report['seconds']
        )
    print(json.dumps(dict(counts=manifest['counts'], skips=manifest['skips'], stages=manifest['stages']), indent=1))


if __name__ == '__main__':
    run_tool(main)
