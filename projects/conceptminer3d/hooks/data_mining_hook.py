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

import dataclasses
import os
from typing import Optional

from mmdet3d.registry import HOOKS
from mmengine.dist import barrier, get_dist_info
from mmengine.hooks import Hook
from mmengine.logging import print_log

from ..apis import load_mining_config, run_mining
from ..subsets import SUBSET_DIR, SubsetSpec


@HOOKS.register_module()
class DataMiningHook(Hook):
    """Mines ``data_root/ann_file`` and writes the subset pickles a config trains on.

    The work is done once when the hook is built (see the module docstring for why not in
    ``before_run``) and, with ``remine_interval``, again after every that many epochs.

    Args:
        mining_config (str): mining config file, e.g. ``configs/mining/default.py``. Its
            ``subsets`` settings (``SubsetSpec`` fields) say which subsets to build.
        data_root (str): dataset root, as the train dataset's ``data_root``.
        work_dir (str): mining work dir: tables, cache, manifest, and ``subsets/``. Give the
            train dataset the same directory as its ``mining_dir``.
        ann_file (str): train info pickle to mine, relative to ``data_root``. Defaults to
            ``'nuscenes_infos_train.pkl'``.
        subsets (dict, optional): ``SubsetSpec`` fields that override the mining config's.
            Defaults to None.
        cfg_options (dict, optional): ``{'dotted.key': value}`` overrides of the mining
            config. Defaults to None.
        remine_interval (int): re-mine every this many epochs; 0 never does. Defaults to 0.
        progress (bool): show progress bars while mining. Defaults to True.
    """

    priority = 'VERY_HIGH'

    def __init__(
        self,
        mining_config: str,
        data_root: str,
        work_dir: str,
        ann_file: str = 'nuscenes_infos_train.pkl',
        subsets: Optional[dict] = None,
        cfg_options: Optional[dict] = None,
        remine_interval: int = 0,
        progress: bool = True,
    ) -> None:
        self.cfg = load_mining_config(mining_config, cfg_options)
        if subsets is not None:
            self.cfg.subsets = dict(self.cfg.get('subsets') or {}, **subsets)
        if not self.cfg.get('subsets'):
            raise ValueError('DataMiningHook needs subset settings (the mining config\'s `subsets` or `subsets=`)')
        # Built here, before hours of mining, so that a bad ratio or unit stops the run at once.
        spec = SubsetSpec(
            **{f.name: self.cfg.subsets[f.name] for f in dataclasses.fields(SubsetSpec) if f.name in self.cfg.subsets}
        )
        if remine_interval and spec.unit != 'sample':
            raise ValueError('re-mining needs unit="sample": whole-scene subsets change size between rounds')
        self.data_root, self.ann_file, self.work_dir = data_root, ann_file, work_dir
        self.remine_interval = int(remine_interval)
        self.progress = progress
        self.base_seed = spec.seed
        # The train dataset reads the subset pickle before `before_run`: write it now.
        self.summary = self.mine_and_build_subsets(self.base_seed)

    def mine_and_build_subsets(self, seed: int) -> Optional[dict]:
        self.cfg.subsets.seed = seed
        summary = None
        rank, _ = get_dist_info()
        if rank == 0:
            manifest = run_mining(self.cfg, self.data_root, self.ann_file, self.work_dir, progress=self.progress)
            summary = manifest['subsets']
            print_log(
                f"DataMiningHook: {summary['num_selected']} of {summary['num_train_samples']} train samples "
                f"selected {summary['reasons']} under {os.path.join(self.work_dir, SUBSET_DIR)}",
                logger='current',
            )
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
