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
