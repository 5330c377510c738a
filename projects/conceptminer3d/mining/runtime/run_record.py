"""What every concept source records about a run: stage timings, package versions, its config
and its counts (the fingerprint that says whether a finished run can be reused is
``mining/fingerprint.py``: it needs the models' identities, a layer above)."""

from __future__ import annotations

import importlib.metadata
import platform
from collections import Counter, defaultdict
from typing import Dict, Sequence

import pyarrow.compute as pc
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


MINING_PACKAGES = (
    'conceptminer3d',
    'torch',
    'ultralytics',
    'open_clip_torch',
    'transformers',
    'scikit-learn',
    'numpy',
    'pyarrow',
    'mmdet3d',
)


def package_versions(names: Sequence[str] = MINING_PACKAGES, python: bool = True) -> Dict[str, str]:
    """The installed version of each package in ``names`` ('not installed' if absent), after
    Python's own with ``python``: what a run's results may depend on."""
    out = {'python': platform.python_version()} if python else {}
    for name in names:
        try:
            out[name] = importlib.metadata.version(name)
        except importlib.metadata.PackageNotFoundError:
            out[name] = 'not installed'
    return out


def plain_config(cfg) -> dict:
    return cfg.to_dict() if isinstance(cfg, (Config, ConfigDict)) else dict(cfg)


def table_counts(frames, crops, embeddings, captions, concepts, outlier_methods) -> dict:
    """The manifest's ``counts`` of a run's tables (pyarrow tables, the embeddings array)."""

    def total(column) -> int:
        return int(pc.sum(column).as_py() or 0)

    return dict(
        frames=frames.num_rows,
        samples=len(pc.unique(frames.column('sample_token'))),
        detections=total(frames.column('num_detections')),
        crops=crops.num_rows,
        embedding_dim=int(embeddings.shape[1]) if embeddings.ndim == 2 else 0,
        outliers=total(crops.column('is_outlier')) if crops.num_rows else 0,
        outliers_per_method={name: total(crops.column(f'is_outlier_{name}')) for name in outlier_methods},
        caption_selected=captions.num_rows,
        captions=captions.num_rows,
        concepts=concepts.num_rows,
        groups=dict(Counter(concepts.column('group').to_pylist())),
    )
