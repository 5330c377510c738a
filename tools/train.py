"""Train a detector with mmengine's Runner and the ConceptMiner3D plugin loaded.

python tools/train.py CONFIG [--work-dir DIR] [--resume [CKPT]] [--cfg-options k=v ...]
"""

import argparse

from mmengine.runner import Runner

import conceptminer3d  # noqa: F401  (registers the plugin, applies compat shims)
from conceptminer3d.cli import run_tool
from conceptminer3d.launch import add_run_arguments, join_cpu_job, load_run_config


def parse_args():
    p = argparse.ArgumentParser(description='Train a 3D detector')
    p.add_argument('config')
    p.add_argument(
        '--resume',
        nargs='?',
        type=str,
        const='auto',
        help='resume from CKPT, or from the latest checkpoint in the work dir',
    )
    return add_run_arguments(p).parse_args()


def main():
    args = parse_args()
    cfg = load_run_config(args.config, args.work_dir, args.cfg_options, args.launcher)
    if args.resume == 'auto':
        cfg.resume, cfg.load_from = True, None
    elif args.resume is not None:
        cfg.resume, cfg.load_from = True, args.resume
    Runner.from_cfg(join_cpu_job(cfg)).train()


if __name__ == '__main__':
    run_tool(main)
