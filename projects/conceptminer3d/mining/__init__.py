"""The mining pipeline (``tools/mine.py``): see ``pipeline.py``; tables in ``contracts.py``."""
from __future__ import annotations

import copy
import logging
import os
from typing import Optional

from mmengine.config import Config

# Imported for registration: each module registers its components in conceptminer3d.registry.
from . import captioning, detection, embedding, frames, outliers  # noqa: F401,E402
from .contracts import MANIFEST_FILE, write_json_atomic
from .frames import resolve_ann_file
from .pipeline import MiningPipeline


def load_mining_config(config, cfg_options: Optional[dict] = None) -> Config:
    # A Config passed in is copied: merging options must not change the caller's object.
    cfg = copy.deepcopy(config) if isinstance(config, Config) else Config.fromfile(config)
    if cfg_options:
        cfg.merge_from_dict(cfg_options)
    return cfg


def run_mining(config, data_root: str, ann_file: str, work_dir: str, cfg_options: Optional[dict] = None,
               progress: bool = True) -> dict:
    """Run every mining stage; returns the manifest (also written to ``work_dir``)."""
    cfg = load_mining_config(config, cfg_options)
    manifest = MiningPipeline(cfg, data_root, ann_file, work_dir, progress=progress).run()
    if cfg.get('subsets'):
        manifest['subsets'] = build_subsets_from_config(cfg, data_root, ann_file, work_dir)
        write_json_atomic(manifest, os.path.join(work_dir, MANIFEST_FILE))
    return manifest


def build_subsets_from_config(cfg: Config, data_root: str, ann_file: str, work_dir: str) -> dict:
    """The last stage of tools/mine.py: subset pickles from the mining outputs in ``work_dir``."""
    from ..subsets import SubsetSpec, build_subsets  # subsets builds on this package: import late
    settings = dict(cfg.subsets)
    dbinfos = os.path.join(data_root, settings.pop('dbinfos_file', 'nuscenes_dbinfos_train.pkl'))
    if not os.path.isfile(dbinfos):
        logging.getLogger('conceptminer3d.mining').warning('no GT database at %s: subsets get no dbinfos', dbinfos)
        dbinfos = None
    summary = build_subsets(work_dir, resolve_ann_file(data_root, ann_file), SubsetSpec(**settings),
                            dbinfos_pkl=dbinfos)
    return {k: v for k, v in summary.items() if k != 'selected'}


__all__ = ['MiningPipeline', 'load_mining_config', 'run_mining']
