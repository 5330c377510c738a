"""Config loading shared by tools/train.py and tools/test.py (OpenMMLab conventions)."""

from __future__ import annotations

import argparse
import os.path as osp
from typing import Optional

from mmengine.config import Config, DictAction


def add_run_arguments(parser: argparse.ArgumentParser) -> argparse.ArgumentParser:
    """The options tools/train.py and tools/test.py share, as mmdet3d's tools spell them."""
    parser.add_argument('--work-dir', help='where logs and checkpoints go')
    parser.add_argument('--cfg-options', nargs='+', action=DictAction, help='override config keys: key=value')
    # No --local_rank: torchrun passes LOCAL_RANK in the environment, where mmengine reads it.
    parser.add_argument('--launcher', choices=['none', 'pytorch', 'slurm', 'mpi'], default='none')
    return parser


def load_run_config(
    config: str, work_dir: Optional[str] = None, cfg_options: Optional[dict] = None, launcher: str = 'none'
) -> Config:
    """A training/testing config as mmdet3d's tools load it.

    Args:
        config (str): the config file.
        work_dir (str, optional): overrides the config's ``work_dir``; without either, the
            work dir is ``./work_dirs/<config name>``.
        cfg_options (dict, optional): ``{'dotted.key': value}`` overrides.
        launcher (str): ``'none'``, ``'pytorch'``, ``'slurm'`` or ``'mpi'``.
    """
    if not osp.isfile(config):
        raise FileNotFoundError(f'config file not found: {config}')
    cfg = Config.fromfile(config)
    if cfg_options:
        cfg.merge_from_dict(cfg_options)
    cfg.launcher = launcher
    if work_dir is not None:
        cfg.work_dir = work_dir
    elif cfg.get('work_dir') is None:
        cfg.work_dir = osp.join('./work_dirs', osp.splitext(osp.basename(config))[0])
    return cfg
