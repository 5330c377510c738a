"""The mining pipeline (``tools/mine.py``): see ``pipeline.py``; tables in ``contracts.py``."""
from __future__ import annotations

from typing import Optional

from mmengine.config import Config

from .pipeline import MiningPipeline


def load_mining_config(config, cfg_options: Optional[dict] = None) -> Config:
    cfg = config if isinstance(config, Config) else Config.fromfile(config)
    if cfg_options:
        cfg.merge_from_dict(cfg_options)
    return cfg


def run_mining(config, data_root: str, ann_file: str, work_dir: str, cfg_options: Optional[dict] = None,
               progress: bool = True) -> dict:
    """Run every mining stage; returns the manifest (also written to ``work_dir``)."""
    # Import for registration: each module registers its components on import.
    from . import detection, embedding, captioning, frames, outliers  # noqa: F401
    cfg = load_mining_config(config, cfg_options)
    return MiningPipeline(cfg, data_root, ann_file, work_dir, progress=progress).run()


__all__ = ['MiningPipeline', 'load_mining_config', 'run_mining']
