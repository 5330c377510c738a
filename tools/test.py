"""Evaluate a checkpoint with mmengine's Runner and the ConceptMiner3D plugin loaded.

python tools/test.py CONFIG CHECKPOINT [--work-dir DIR] [--cfg-options k=v ...]

Training-only hooks (DataMiningHook) are left out: a mined config evaluates without its mining
work dir or data root for mining being there.
"""

import argparse

from mmengine.runner import Runner

import conceptminer3d  # noqa: F401  (registers the plugin, applies compat shims)
from conceptminer3d.cli import run_tool
from conceptminer3d.launch import add_run_arguments, drop_train_only_hooks, join_cpu_job, load_run_config


def parse_args():
    p = argparse.ArgumentParser(description='Test (evaluate) a 3D detector')
    p.add_argument('config')
    p.add_argument('checkpoint')
    return add_run_arguments(p).parse_args()


def main():
    args = parse_args()
    cfg = drop_train_only_hooks(load_run_config(args.config, args.work_dir, args.cfg_options, args.launcher))
    cfg.load_from = args.checkpoint
    Runner.from_cfg(join_cpu_job(cfg)).test()


if __name__ == '__main__':
    run_tool(main)
