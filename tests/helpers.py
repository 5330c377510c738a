"""Helpers shared by the tests (importable as ``helpers``: pytest puts this directory on
``sys.path``, as it does for ``conftest``). Fixtures live in ``conftest.py``."""

from __future__ import annotations

import os
from typing import Dict

from mmengine.config import Config

from conceptminer3d.evaluation.retarget import replace_path_prefix, retarget_data_root  # noqa: F401 (re-exported)

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
TOY_MINING_CONFIG = os.path.join(REPO, 'configs', 'mining', 'toy.py')


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
