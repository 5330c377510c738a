"""Helpers shared by the tests (importable as ``helpers``: pytest puts this directory on
``sys.path``, as it does for ``conftest``). Fixtures live in ``conftest.py``."""

from __future__ import annotations

import math
import os
import shutil
import sys
from typing import Dict, Mapping, Sequence

from mmengine.config import Config

from conceptminer3d.study.retarget import replace_path_prefix, retarget_data_root  # noqa: F401 (re-exported)
from conceptminer3d.subsets import SubsetSpec, build_subsets

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
TOY_MINING_CONFIG = os.path.join(REPO, 'configs', 'mining', 'toy.py')
NUSCENES_METRIC = 'NuScenes metric/pred_instances_3d_NuScenes'  # NuScenesMetric's key prefix


def toy_mining_cfg(toy_models: Dict[str, str]) -> Config:
    """``configs/mining/toy.py`` as the demo runs it, with its ``toy_models`` directory moved
    to where ``build_toy_models`` wrote ``toy_models``: the config's own file names are
    used, so a test that loads these models also checks that the demo config finds them."""
    cfg = Config.fromfile(TOY_MINING_CONFIG)
    return replace_path_prefix(cfg, cfg.toy_models, os.path.dirname(toy_models['yolo']))


def toy_blip_captioner(toy_models: Dict[str, str], **overrides) -> dict:
    """A ``BlipCaptioner`` config for the toy BLIP (the toy config captions with Qwen2-VL)."""
    return dict(type='BlipCaptioner', model=toy_models['blip'], **overrides)


def toy_train_dataset(toy_world):
    """mmdet3d's stock ``NuScenesDataset`` over the toy world's train pickle, no pipeline."""
    from mmdet3d.datasets import NuScenesDataset
    from mmengine.registry import init_default_scope

    init_default_scope('mmdet3d')
    root, config = toy_world
    return NuScenesDataset(
        data_root=root,
        ann_file='nuscenes_infos_train.pkl',
        pipeline=[],
        metainfo=dict(version=config.version),
        test_mode=False,
        data_prefix=dict(pts='samples/LIDAR_TOP', sweeps='sweeps/LIDAR_TOP', img=''),
    )


TOY_TRAIN_ITERS = 6


def mined_toy_cfg(toy_world, toy_models, work_dir, name='centerpoint_mined20_toy.py'):
    """The shipped toy config, pointed at the session's world, models and an empty work dir."""
    root, _ = toy_world
    cfg = retarget_data_root(Config.fromfile(os.path.join(REPO, 'configs', name)), root)
    mining_dir = os.path.join(work_dir, 'mining')
    cfg = replace_path_prefix(cfg, cfg.mining_work_dir, mining_dir)
    cfg.custom_hooks[0].update(
        progress=False,
        cfg_options={
            'detector.model': toy_models['yolo'],
            'detector.max_det': 3,
            'embedder.model_name': toy_models['clip'],
            'captioner.model': toy_models['qwen2_vl'],
            'captioner.max_new_tokens': 4,
            'frames.cameras': ['CAM_FRONT', 'CAM_BACK_LEFT'],
            'caption_selection.yolo_classes': [],
        },
    )
    cfg.work_dir = os.path.join(work_dir, 'train')
    return short_toy_training(cfg, TOY_TRAIN_ITERS)


def short_toy_training(cfg: Config, iters: int) -> Config:
    """``cfg`` trained for ``iters`` iterations at a constant learning rate, validated once at
    the end, in this process (no loader workers, no checkpoints), logging every iteration."""
    cfg.train_cfg.max_iters = cfg.train_cfg.val_interval = iters
    cfg.param_scheduler = [dict(type='ConstantLR', factor=1.0, by_epoch=False)]
    cfg.train_dataloader.num_workers = cfg.val_dataloader.num_workers = 0
    cfg.default_hooks.checkpoint = dict(type='CheckpointHook', interval=-1)
    cfg.default_hooks.logger.interval = 1
    return cfg


def free_port() -> int:
    """A TCP port nobody listens on now, for a torchrun rendezvous."""
    import socket

    with socket.socket() as s:
        s.bind(('127.0.0.1', 0))
        return s.getsockname()[1]


def torchrun_env() -> dict:
    """The environment for a tools/*.sh torchrun job in a test: this interpreter, a free port,
    one thread per rank (two ranks share the machine's cores)."""
    return dict(os.environ, PYTHON=sys.executable, PORT=str(free_port()), OMP_NUM_THREADS='1')


def copy_run_with_subsets(run_dir: str, data_root: str, out_dir: str) -> str:
    """A copy of the mining run ``run_dir`` (without its cache) in ``out_dir/mining``, with the
    default subsets of the toy train pickle built, and their GT databases."""
    work_dir = os.path.join(out_dir, 'mining')
    shutil.copytree(run_dir, work_dir, ignore=shutil.ignore_patterns('cache'))
    train, dbinfos = (os.path.join(data_root, f) for f in ('nuscenes_infos_train.pkl', 'nuscenes_dbinfos_train.pkl'))
    build_subsets(work_dir, train, SubsetSpec(), dbinfos)
    return work_dir


def assert_nuscenes_metrics_add_up(metrics: Mapping[str, float], classes: Sequence[str]) -> None:
    """The mAP and NDS that NuScenesMetric reports are the nuScenes definitions (Caesar et al.,
    2020, section 3) of the per-class numbers it reports beside them, for exactly ``classes``:
    mAP the mean over classes of each class's AP averaged over the four centre distances, NDS
    (5 mAP + sum of max(0, 1 - mTP) over the five mean TP errors) / 10. The parts it logs are
    rounded to 4 decimals (a NaN error, no true positive at all, scores 0)."""
    per_class = [
        sum(metrics[f'{NUSCENES_METRIC}/{c}_AP_dist_{d}'] for d in ('0.5', '1.0', '2.0', '4.0')) / 4 for c in classes
    ]
    mean_ap = metrics[f'{NUSCENES_METRIC}/mAP']
    assert math.isclose(mean_ap, sum(per_class) / len(classes), abs_tol=6e-5), (mean_ap, per_class)
    tp_scores = [max(0.0, 1.0 - metrics[f'{NUSCENES_METRIC}/{e}']) for e in ('mATE', 'mASE', 'mAOE', 'mAVE', 'mAAE')]
    assert math.isclose(metrics[f'{NUSCENES_METRIC}/NDS'], (5 * mean_ap + sum(tp_scores)) / 10, abs_tol=3e-5)


def validation_metrics(runner) -> Dict[str, float]:
    """The metrics of a runner's last validation, as ``runner.test()`` returns them."""
    return {k[len('val/') :]: v.current() for k, v in runner.message_hub.log_scalars.items() if k.startswith('val/')}
