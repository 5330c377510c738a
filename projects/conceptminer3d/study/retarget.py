"""Moving an arm's config onto other data or another mining directory without editing it.

mmengine resolves ``data_root + 'x.pkl'`` (and ``mining_work_dir + '/subsets'``) when the file
is parsed, so overriding the root key alone would leave every derived path behind: the whole
config is rewritten by path prefix instead.
"""

from __future__ import annotations

import os
from typing import Optional

from mmengine.config import Config

__all__ = [
    'mining_dir_under',
    'mining_hooks',
    'redirect_mining',
    'replace_path_prefix',
    'retarget_data_root',
    'set_dataset_version',
]


def replace_path_prefix(cfg: Config, old: str, new: str) -> Config:
    """A copy of ``cfg`` with every string that is ``old`` or starts with ``old/`` moved under ``new``."""
    old, new = old.rstrip('/'), new.rstrip('/')

    def walk(node):
        if isinstance(node, dict):
            return type(node)({k: walk(v) for k, v in node.items()})
        if isinstance(node, (list, tuple)):
            return type(node)(walk(v) for v in node)
        if isinstance(node, str) and (node == old or node.startswith(old + '/')):
            return new + node[len(old) :]
        return node

    return Config(walk(cfg.to_dict()), filename=cfg.filename)


def retarget_data_root(cfg: Config, data_root: str) -> Config:
    if not cfg.get('data_root'):
        raise ValueError(f'{cfg.filename} has no data_root to retarget')
    return replace_path_prefix(cfg, cfg.data_root, data_root)


def set_dataset_version(cfg: Config, version: str) -> Config:
    """Every dataset ``metainfo`` of ``cfg`` set to the table ``version`` (e.g. ``'v1.0-trainval'``).

    ``NuScenesDataset``'s own ``METAINFO['version']`` wins over the pickle's, and
    ``NuScenesMetric`` evaluates the split that version names, so a config moved onto a world of
    another version must say so wherever it gives a ``metainfo``.
    """

    def walk(node):
        if isinstance(node, dict):
            out = type(node)({k: walk(v) for k, v in node.items()})
            if isinstance(out.get('metainfo'), dict) and 'version' in out['metainfo']:
                out['metainfo'] = dict(out['metainfo'], version=version)
            return out
        if isinstance(node, (list, tuple)):
            return type(node)(walk(v) for v in node)
        return node

    cfg = Config(walk(cfg.to_dict()), filename=cfg.filename)
    if 'version' in cfg:
        cfg.version = version
    return cfg


def mining_hooks(cfg: Config) -> list:
    return [h for h in cfg.get('custom_hooks') or [] if h.get('type') == 'DataMiningHook']


def mining_dir_under(cfg: Config, root: str) -> str:
    """``root/<name of cfg's mining work dir>``: one directory per mining source, so that arms
    which mine differently (models, ground truth) never share outputs."""
    hooks = mining_hooks(cfg)
    if not hooks:
        raise ValueError(f'{cfg.filename} has no DataMiningHook')
    return os.path.join(os.path.abspath(root), os.path.basename(os.path.normpath(hooks[0]['work_dir'])))


def redirect_mining(
    cfg: Config,
    work_dir: str,
    data_root: Optional[str] = None,
    cfg_options: Optional[dict] = None,
    progress: Optional[bool] = None,
) -> Config:
    """A copy of ``cfg`` whose ``DataMiningHook`` mines into ``work_dir`` (and every path derived
    from its old work dir — the subset pickles, a sampler's mining dir — follows), with mining
    ``cfg_options`` merged into the hook's."""
    for hook in mining_hooks(cfg):
        old = hook['work_dir']
        for variant in {old, os.path.normpath(old)}:
            cfg = replace_path_prefix(cfg, variant, work_dir)
    for hook in mining_hooks(cfg):
        if data_root is not None:
            hook['data_root'] = data_root
        if cfg_options:
            hook['cfg_options'] = dict(hook.get('cfg_options') or {}, **cfg_options)
        if progress is not None:
            hook['progress'] = progress
    return cfg
