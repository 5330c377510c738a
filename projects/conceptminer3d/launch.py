"""Config loading shared by tools/train.py and tools/test.py (OpenMMLab conventions)."""
from __future__ import annotations

import os.path as osp
from typing import Optional

from mmengine.config import Config, DictAction  # noqa: F401  (DictAction re-exported for the tools)


def load_run_config(config: str, work_dir: Optional[str] = None, cfg_options: Optional[dict] = None,
                    launcher: str = 'none') -> Config:
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


def replace_path_prefix(cfg: Config, old: str, new: str) -> Config:
    """A copy of ``cfg`` with every string that is ``old`` or starts with ``old/`` moved
    under ``new`` (paths derived at parse time, e.g. ``data_root + 'x.pkl'``, included)."""
    old, new = old.rstrip('/'), new.rstrip('/')

    def walk(node):
        if isinstance(node, dict):
            return type(node)({k: walk(v) for k, v in node.items()})
        if isinstance(node, (list, tuple)):
            return type(node)(walk(v) for v in node)
        if isinstance(node, str) and (node == old or node.startswith(old + '/')):
            return new + node[len(old):]
        return node

    return Config(walk(cfg.to_dict()), filename=cfg.filename)


def retarget_data_root(cfg: Config, data_root: str) -> Config:
    """Point every path under the config's ``data_root`` at ``data_root`` instead.

    mmengine resolves ``data_root + 'x.pkl'`` when the file is parsed, so overriding
    ``data_root`` alone (e.g. with --cfg-options) would leave the derived paths behind.
    """
    return replace_path_prefix(cfg, cfg.data_root, data_root)
