"""``--quick``: every arm end to end on a tiny toy world, in seconds to a couple of minutes.

A check that a study will run (configs, mining hook, subsets, training, the devkit's
evaluation, the table), not a measurement: a few iterations on a few samples say nothing
about which training set is better.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from typing import Dict, Optional

from mmengine.config import Config

from conceptminer3d.study.retarget import mining_dir_under, mining_hooks, redirect_mining, retarget_data_root

from .models import build_toy_models
from .world import ToyWorldConfig, build_toy_dataset

__all__ = ['QuickSetup', 'prepare_quick', 'quick_world']


def quick_world():
    # 12 train samples: a 20% subset keeps 2, one batch; 3 val samples.
    return ToyWorldConfig(
        train_scenes=4,
        val_scenes=1,
        samples_per_scene=3,
        sweeps_per_sample=1,
        image_width=320,
        image_height=180,
        points_per_frame=3000,
        seed=0,
    )


@dataclass
class QuickSetup:
    data_root: str
    mining_dir: str
    models: Dict[str, str]
    mining_options: dict = field(default_factory=dict)

    def apply(self, cfg: Config) -> Config:
        """``cfg`` on the tiny world, mining with the toy models into ``mining_dir``, in one process."""
        cfg = retarget_data_root(cfg, self.data_root)
        if mining_hooks(cfg):
            cfg = redirect_mining(
                cfg,
                mining_dir_under(cfg, self.mining_dir),
                data_root=self.data_root,
                cfg_options=self.mining_options,
                progress=False,
            )
        for loader in ('train_dataloader', 'val_dataloader', 'test_dataloader'):
            if cfg.get(loader):
                cfg[loader].update(num_workers=0, persistent_workers=False)
        cfg.default_hooks.logger.interval = 1
        return cfg


def prepare_quick(work_dir: str, toy_models: Optional[str] = None) -> QuickSetup:
    """Build (or reuse) the tiny world and the toy mining models under ``work_dir/_quick``."""
    root = os.path.join(os.path.abspath(work_dir), '_quick')
    world = os.path.join(root, 'toy_nuscenes')
    if not os.path.isfile(os.path.join(world, 'nuscenes_infos_val.pkl')):
        build_toy_dataset(world, quick_world(), overwrite=True, progress=False)
    models = build_toy_models(toy_models or os.path.join(root, 'toy_models'))
    options = {
        'detector.model': models['yolo'],
        'detector.max_det': 3,
        'embedder.model_name': models['clip'],
        'captioner.model': models['qwen2_vl'],
        'captioner.max_new_tokens': 4,
        'frames.cameras': ['CAM_FRONT', 'CAM_BACK'],
        'caption_selection.yolo_classes': [],
    }
    return QuickSetup(world + '/', os.path.join(root, 'mining'), models, options)
