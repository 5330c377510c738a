"""DataMiningHook: make sure the mining outputs and subset pickles a config trains on exist.

mmengine's order decides where the work happens. ``Runner.__init__`` builds the hooks;
``Runner.train()`` then builds the train loop — and with it the dataset, which reads its
``ann_file`` — and only *then* calls ``before_run``. A hook that wrote the subset pickle in
``before_run``/``before_train`` would be too late on a fresh work dir. So this hook does its
work when it is constructed (inside ``Runner.__init__``, before any dataset exists):

- finished mining outputs for the same config and info pickle (``apis.completed_mining``) are
  reused without loading a model; subset pickles are only rebuilt when their settings changed;
- in a single-process job, anything missing is mined here;
- in a multi-process job, missing mining outputs stop every rank at once with the
  ``tools/dist_mine.sh`` command that mines them with all GPUs. No rank ever waits inside a
  collective (NCCL's time out after 10 minutes): ranks that wait for rank 0 to write subset
  pickles watch the manifest on the file system.

``tools/test.py`` drops this hook (``train_only``): evaluating a checkpoint mines nothing.

Optionally it re-mines every ``remine_interval`` epochs (off by default): the same steps
again (an info pickle that changed since is mined anew, reusing every cached frame; an
unchanged one is reused as it is), the subsets are rebuilt with seed ``seed + epoch``, the
train dataset reloads its pickle and ``RareConceptSampler`` its weights for the next epoch.
Sample mode keeps the subset size constant, so the loop's length does not change. It needs an
epoch-based loop and an unwrapped train dataset (no CBGS); anything else is refused before the
first iteration.
"""

from __future__ import annotations

import os
import shlex
from typing import Optional

from mmdet3d.registry import HOOKS
from mmengine.dist import get_dist_info
from mmengine.hooks import Hook
from mmengine.logging import print_log
from mmengine.runner import EpochBasedTrainLoop

from ..apis import completed_mining, current_subsets, load_mining_config, rebuild_subsets, run_mining, subset_spec
from ..mining.runtime.executors import wait_for
from ..mining.runtime.writer_lock import current_writer, describe_writer, writer_lock
from ..subsets import SUBSET_DIR


class MiningNotDoneError(RuntimeError):
    """A multi-process training job found no finished mining outputs: mine first."""


def dist_mine_command(config: str, data_root: str, ann_file: str, work_dir: str, gpus: int, cfg_options=None) -> str:
    """The ``tools/dist_mine.sh`` command line that mines what the hook would have mined."""
    words = ['bash', 'tools/dist_mine.sh', config, str(gpus), '--data-root', data_root]
    words += ['--ann-file', ann_file, '--work-dir', work_dir]
    if cfg_options:
        words.append('--cfg-options')
        for key, value in sorted(cfg_options.items()):
            if isinstance(value, (list, tuple)):
                value = '[' + ','.join(map(str, value)) + ']'
            words.append(f'{key}={value}')
    return ' '.join(map(shlex.quote, words))


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
        if_busy (str): another process (a second training, ``tools/mine.py``) writes into
            ``work_dir``: ``'wait'`` for it, then reuse what it wrote; ``'refuse'`` to stop at
            once, naming it. Defaults to ``'wait'``.
        wait_timeout_s (float, optional): the longest wait; default
            ``mining.runtime.writer_lock.WAIT_TIMEOUT_S``.
    """

    priority = 'VERY_HIGH'
    train_only = True  # tools/test.py leaves it out

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
        if_busy: str = 'wait',
        wait_timeout_s: Optional[float] = None,
    ) -> None:
        self.cfg = load_mining_config(mining_config, cfg_options)
        if subsets is not None:
            self.cfg.subsets = dict(self.cfg.get('subsets') or {}, **subsets)
        if not self.cfg.get('subsets'):
            raise ValueError('DataMiningHook needs subset settings (the mining config\'s `subsets` or `subsets=`)')
        # Built here, before hours of mining, so that a bad ratio or unit stops the run at once.
        spec = subset_spec(self.cfg)
        if remine_interval and spec.unit != 'sample':
            raise ValueError('re-mining needs unit="sample": whole-scene subsets change size between rounds')
        self.mining_config, self.cfg_options = mining_config, cfg_options
        self.data_root, self.ann_file, self.work_dir = data_root, ann_file, work_dir
        self.remine_interval = int(remine_interval)
        self.progress = progress
        self.writer = dict(if_busy=if_busy, timeout_s=wait_timeout_s)
        self.base_seed = spec.seed
        # The train dataset reads the subset pickle before `before_run`: write it now.
        self.summary = self.mine_and_build_subsets(self.base_seed)

    def mine_and_build_subsets(self, seed: int) -> dict:
        """Reuse, mine (one process) or refuse (several; see the module docstring), then make
        sure the subsets of ``seed`` are on disk. Rank 0 decides holding the writer lock, so
        that a second training on the same mining dir waits and reuses instead of mining."""
        self.cfg.subsets.seed = seed
        paths = (self.data_root, self.ann_file, self.work_dir)
        rank, world_size = get_dist_info()
        if world_size > 1 and completed_mining(self.cfg, *paths) is None:  # every rank stops
            raise MiningNotDoneError(self._mine_first_message(world_size))
        if rank > 0:  # rank 0 writes; the others watch the file system (no collective)
            action = 'reused'
            if current_subsets(self.cfg, *paths) is None:
                wait_for(lambda: current_subsets(self.cfg, *paths) is not None, 'rank 0 to write the subset pickles')
                action = 'written by rank 0'
            summary = current_subsets(self.cfg, *paths)
        else:
            summary, action = self._mine_or_reuse(paths, world_size)
        print_log(
            f"DataMiningHook ({action}): {summary['num_selected']} of {summary['num_train_samples']} train "
            f"samples selected {summary['reasons']} under {os.path.join(self.work_dir, SUBSET_DIR)}",
            logger='current',
        )
        return summary

    def _mine_or_reuse(self, paths, world_size: int) -> tuple:
        """On rank 0, holding the mining dir's writer lock: reuse, build subsets or mine."""
        os.makedirs(self.work_dir, exist_ok=True)  # a dir that is not there yet is not locked
        # A multi-process job does not wait for another writer: its other ranks would be left
        # waiting without it (and its collectives time out); it stops, naming the writer.
        writer = dict(self.writer, if_busy='refuse') if world_size > 1 else self.writer
        with writer_lock(self.work_dir, **writer) as lock:
            after = f' after waiting {lock.waited_s:.0f} s for another writer' if lock.waited else ''
            if completed_mining(self.cfg, *paths) is None:
                if world_size > 1:  # replaced since every rank checked: mine first, as below
                    raise MiningNotDoneError(self._mine_first_message(world_size))
                return run_mining(self.cfg, *paths, progress=self.progress)['subsets'], 'mined' + after
            if (summary := current_subsets(self.cfg, *paths)) is not None:
                return summary, 'reused' + after
            return rebuild_subsets(self.cfg, *paths), 'built from the finished mining outputs' + after

    def _mine_first_message(self, world_size: int) -> str:
        paths = (self.data_root, self.ann_file, self.work_dir)
        command = dist_mine_command(self.mining_config, *paths, gpus=world_size, cfg_options=self.cfg_options)
        writer = current_writer(self.work_dir)
        if writer is not None:
            return (
                f'DataMiningHook: no finished mining outputs for this config yet; '
                f'{describe_writer(self.work_dir, writer)}. Start training again when it has finished (the '
                f'hook then reuses the outputs); if it mines another config, mine this one after it with\n  {command}'
            )
        return (
            f'DataMiningHook: no finished mining outputs for this config in {self.work_dir}. '
            f'A {world_size}-process job does not mine inside training; mine first with\n  {command}\n'
            'then start training again (the hook then reuses the outputs).'
        )

    def before_train(self, runner) -> None:
        if not self.remine_interval:
            return
        # Refused now, not skipped at the first re-mining hours later.
        if not isinstance(runner.train_loop, EpochBasedTrainLoop):
            raise ValueError(
                f'DataMiningHook: remine_interval counts epochs; {type(runner.train_loop).__name__} has none'
            )
        dataset = runner.train_dataloader.dataset
        if not hasattr(dataset, 'full_init') or hasattr(dataset, 'dataset'):
            raise ValueError(
                f'DataMiningHook: re-mining reloads the train dataset, which {type(dataset).__name__} wraps '
                '(CBGS expands it once); train the mined subset without the wrapper, e.g. with RareConceptSampler '
                '(configs/centerpoint_mined20_rare_sampler.py)'
            )

    def after_train_epoch(self, runner) -> None:
        if not self.remine_interval or (runner.epoch + 1) % self.remine_interval:
            return
        self.summary = self.mine_and_build_subsets(self.base_seed + runner.epoch + 1)
        loader = runner.train_dataloader
        dataset = loader.dataset
        size = len(dataset)
        dataset._fully_initialized = False
        dataset.full_init()
        if len(dataset) != size:
            raise RuntimeError(f're-mined subset has {len(dataset)} samples, the loop was built for {size}')
        if hasattr(loader.sampler, 'reload_weights'):  # RareConceptSampler: weights of the new samples
            loader.sampler.reload_weights()
        # Persistent workers hold their own copy of the dataset: without new workers the next
        # epoch would still read the old subset (torch keeps them in the loader's `_iterator`).
        iterator = getattr(loader, '_iterator', None)
        if iterator is not None and hasattr(iterator, '_shutdown_workers'):
            iterator._shutdown_workers()
            loader._iterator = None
