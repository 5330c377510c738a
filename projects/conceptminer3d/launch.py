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


def drop_train_only_hooks(cfg: Config) -> Config:
    """Leave out the custom hooks whose class says ``train_only`` (``DataMiningHook``): mmengine
    builds custom hooks for ``Runner.test()`` too, and evaluating a checkpoint must not mine."""
    from mmdet3d.registry import HOOKS

    def train_only(hook) -> bool:
        hook_type = hook['type'] if isinstance(hook, dict) else type(hook)
        hook_class = HOOKS.get(hook_type) if isinstance(hook_type, str) else hook_type
        return bool(getattr(hook_class, 'train_only', False))

    cfg.custom_hooks = [hook for hook in cfg.get('custom_hooks') or [] if not train_only(hook)]
    return cfg


def init_distributed(launcher: str) -> None:
    """Join the job a launcher started: NCCL on GPUs (through mmengine's ``init_dist``), gloo on
    CPU-only machines under torchrun (mmengine's ``init_dist`` selects a CUDA device even then,
    and fails without one)."""
    import torch

    if launcher == 'none':
        return
    if torch.cuda.is_available():
        from mmengine.dist import init_dist

        init_dist(launcher, backend='nccl')
    elif launcher == 'pytorch':
        import torch.distributed as dist

        dist.init_process_group('gloo')  # torchrun's environment: RANK, WORLD_SIZE, MASTER_ADDR/PORT
    else:
        raise RuntimeError(f'--launcher {launcher} needs GPUs here; on CPUs use torchrun (--launcher pytorch)')


def join_cpu_job(cfg: Config) -> Config:
    """Let ``tools/train.py`` / ``tools/test.py --launcher pytorch`` run on a machine without
    GPUs (a 2-process gloo job is how the multi-process paths are tested here): join the job
    with gloo before the Runner would (its ``init_dist`` selects a CUDA device whatever the
    backend), and wrap the model in DDP without device ids (CPU modules take none). With GPUs,
    or without a launcher, nothing changes: the Runner sets the job up as usual."""
    import torch

    if cfg.get('launcher', 'none') == 'none' or torch.cuda.is_available():
        return cfg
    init_distributed(cfg.launcher)
    wrapper = dict(type='MMDistributedDataParallel', device_ids=None)
    cfg.model_wrapper_cfg = dict(wrapper, **(cfg.get('model_wrapper_cfg') or {}))
    return cfg
