"""DataMiningHook: mine the train pickle and build the subset pickles a config trains on.

mmengine's order decides where the work happens. ``Runner.__init__`` builds the hooks;
``Runner.train()`` then builds the train loop — and with it the dataset, which reads its
``ann_file`` — and only *then* calls ``before_run``. A hook that wrote the subset pickle in
``before_run``/``before_train`` would be too late on a fresh work dir. So this hook mines
and builds the subsets when it is constructed (inside ``Runner.__init__``, before any
dataset exists): rank 0 does the work, the other ranks wait at a barrier. It is cheap to
repeat: mining stages are cached and the subset pickles are rewritten byte-identically.

Optionally it re-mines every ``remine_interval`` epochs (off by default): mining is re-run
(cached stages are reused, so only new frames cost time), the subsets are rebuilt with
seed ``seed + epoch``, and the train dataset reloads its pickle for the next epoch. Sample
mode keeps the subset size constant, so the loop's length does not change.
"""
from __future__ import annotations

import os
from typing import Optional

from mmdet3d.registry import HOOKS
from mmengine.dist import barrier, get_dist_info
from mmengine.hooks import Hook
from mmengine.logging import print_log


@HOOKS.register_module()
class DataMiningHook(Hook):
    priority = 'VERY_HIGH'

    def __init__(self, mining_config: str, data_root: str, work_dir: str,
                 ann_file: str = 'nuscenes_infos_train.pkl', subsets: Optional[dict] = None,
                 cfg_options: Optional[dict] = None, remine_interval: int = 0, progress: bool = True):
        from ..mining import load_mining_config
        self.cfg = load_mining_config(mining_config, cfg_options)
        if subsets is not None:
            self.cfg.subsets = dict(self.cfg.get('subsets') or {}, **subsets)
        if not self.cfg.get('subsets'):
            raise ValueError('DataMiningHook needs subset settings (the mining config\'s `subsets` or `subsets=`)')
        if remine_interval and self.cfg.subsets.get('unit', 'sample') != 'sample':
            raise ValueError('re-mining needs unit="sample": whole-scene subsets change size between rounds')
        self.data_root, self.ann_file, self.work_dir = data_root, ann_file, work_dir
        self.remine_interval = int(remine_interval)
        self.progress = progress
        self.base_seed = int(self.cfg.subsets.get('seed', 0))
        self.summary = self.mine_and_build_subsets(self.base_seed)

    def mine_and_build_subsets(self, seed: int) -> Optional[dict]:
        from ..mining import run_mining
        self.cfg.subsets.seed = seed
        summary = None
        rank, _ = get_dist_info()
        if rank == 0:
            manifest = run_mining(self.cfg, self.data_root, self.ann_file, self.work_dir, progress=self.progress)
            summary = manifest['subsets']
            print_log(f"DataMiningHook: {summary['num_selected']} of {summary['num_train_samples']} train samples "
                      f"selected {summary['reasons']} under {os.path.join(self.work_dir, 'subsets')}", logger='current')
        barrier()
        return summary

    def after_train_epoch(self, runner) -> None:
        if not self.remine_interval or (runner.epoch + 1) % self.remine_interval:
            return
        dataset = runner.train_dataloader.dataset
        if not hasattr(dataset, 'full_init') or hasattr(dataset, 'dataset'):
            runner.logger.warning('DataMiningHook: re-mining needs an unwrapped train dataset (no CBGS); skipped')
            return
        self.summary = self.mine_and_build_subsets(self.base_seed + runner.epoch + 1)
        size = len(dataset)
        dataset._fully_initialized = False
        dataset.full_init()
        if len(dataset) != size:
            raise RuntimeError(f're-mined subset has {len(dataset)} samples, the loop was built for {size}')
