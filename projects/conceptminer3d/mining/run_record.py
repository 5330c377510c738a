"""What every concept source records about a run: stage timings, package versions, its config."""

from __future__ import annotations

import importlib.metadata
import platform
from collections import defaultdict
from typing import Dict

from mmengine.config import Config, ConfigDict


class StageTimer:
    """Wall time and item counts per stage, for the manifest; model calls are timed as stages
    of their own, so the overhead around them shows."""

    def __init__(self):
        self.stages: Dict[str, Dict[str, float]] = defaultdict(lambda: dict(seconds=0.0, items=0))

    def add(self, stage: str, seconds: float, items: int) -> None:
        self.stages[stage]['seconds'] += seconds
        self.stages[stage]['items'] += items

    def report(self) -> Dict[str, Dict[str, float]]:
        return {
            name: dict(
                seconds=round(s['seconds'], 4),
                items=int(s['items']),
                items_per_s=round(s['items'] / s['seconds'], 2) if s['seconds'] > 0 else None,
            )
            for name, s in self.stages.items()
        }


def package_versions() -> Dict[str, str]:
    out = {'python': platform.python_version()}
    for name in (
        'conceptminer3d',
        'torch',
        'ultralytics',
        'open_clip_torch',
        'transformers',
        'scikit-learn',
        'numpy',
        'pyarrow',
        'mmdet3d',
    ):
        try:
            out[name] = importlib.metadata.version(name)
        except importlib.metadata.PackageNotFoundError:
            out[name] = 'not installed'
    return out


def plain_config(cfg) -> dict:
    return cfg.to_dict() if isinstance(cfg, (Config, ConfigDict)) else dict(cfg)
