"""One trained-and-validated run, and finding runs in work dirs already trained.

A run is identified by its arm and seed: from the benchmark's layout ``<root>/<arm>/seed<k>/``
when it has it, otherwise from the config mmengine saved in the work dir (its file name names
the arm, ``randomness.seed`` the seed). Numbers are read from mmengine's metric logs, never
from text logs, so runs trained elsewhere (e.g. ``dist_train.sh`` on 8 GPUs) are collected as
they are.
"""

from __future__ import annotations

import glob
import os
import re
import sys
from dataclasses import asdict, dataclass, field
from typing import List, Optional

from mmengine.config import Config

from .arms import arm_of_config
from .metric_log import MetricsNotFoundError, read_last_val_metrics, scalar_logs
from .retarget import mining_hooks
from .schedule import schedule_of
from .train_set import class_names, count_instances, train_datasets, train_set_stats

__all__ = ['RunResult', 'find_runs', 'full_train_set', 'load_run', 'saved_config']

_SEED_DIR = re.compile(r'^seed(-?\d+)$')


@dataclass
class RunResult:
    arm: str
    seed: Optional[int]
    work_dir: str
    config: Optional[str]
    schedule: Optional[dict]
    metrics: dict  # nuscenes_metrics(): mAP, NDS, AP per class
    train_set: dict = field(default_factory=dict)  # train_set_stats()
    classes: Optional[List[str]] = None
    iterations: Optional[int] = None  # what it trained, when known (the study records it)

    def to_dict(self) -> dict:
        return asdict(self)


def saved_config(work_dir: str) -> Optional[str]:
    """The config mmengine's Runner dumped into ``work_dir`` (the newest, if several)."""
    configs = glob.glob(os.path.join(glob.escape(work_dir), '*.py'))
    return max(configs, key=os.path.getmtime) if configs else None


def _identity(work_dir: str, cfg: Optional[Config], config_file: Optional[str]):
    match = _SEED_DIR.match(os.path.basename(os.path.normpath(work_dir)))
    if match:
        return os.path.basename(os.path.dirname(os.path.normpath(work_dir))), int(match.group(1))
    arm = arm_of_config(config_file) if config_file else None
    if arm is None and config_file:
        arm = os.path.splitext(os.path.basename(config_file))[0]
    seed = (cfg.get('randomness') or {}).get('seed') if cfg is not None else None
    return arm or os.path.basename(os.path.normpath(work_dir)), None if seed is None else int(seed)


def load_run(work_dir: str) -> RunResult:
    """A finished run from its work dir; raises ``MetricsNotFoundError`` when it logged no validation."""
    work_dir = os.path.abspath(work_dir)
    metrics = read_last_val_metrics(work_dir)
    config_file = saved_config(work_dir)
    cfg = Config.fromfile(config_file, import_custom_modules=False) if config_file else None
    arm, seed = _identity(work_dir, cfg, config_file)
    schedule = schedule_of(cfg) if cfg is not None else None
    return RunResult(
        arm=arm,
        seed=seed,
        work_dir=work_dir,
        config=config_file,
        schedule=schedule.to_dict() if schedule else None,
        metrics=metrics,
        train_set=train_set_stats(cfg) if cfg is not None else {},
        classes=class_names(cfg) if cfg is not None else None,
    )


def _run_dirs_under(root: str) -> List[str]:
    found = set()
    for log in glob.glob(os.path.join(glob.escape(root), '**', 'vis_data', 'scalars.json'), recursive=True):
        found.add(os.path.dirname(os.path.dirname(os.path.dirname(log))))
    return sorted(found)


def find_runs(paths: List[str]) -> List[RunResult]:
    """Runs in ``paths``: each a run's work dir, or a directory holding work dirs (e.g. a study's
    root). A named run without metrics is an error; one found below a named root is skipped
    with a warning (a study killed mid-run)."""
    runs: List[RunResult] = []
    for path in paths:
        if not os.path.isdir(path):
            raise FileNotFoundError(f'no such work dir: {path}')
        if scalar_logs(path):
            runs.append(load_run(path))
            continue
        found = _run_dirs_under(path)
        if not found:
            raise MetricsNotFoundError(
                f'no runs with metrics under {path}: no <work_dir>/<timestamp>/vis_data/scalars.json below it'
            )
        before = len(runs)
        for work_dir in found:
            try:
                runs.append(load_run(work_dir))
            except MetricsNotFoundError as exc:
                print(f'warning: skipped {work_dir}: {exc}', file=sys.stderr)
        if len(runs) == before:
            raise MetricsNotFoundError(f'no validation metrics in any run under {path}')
    return runs


def full_train_set(results: List[RunResult], baseline: str) -> Optional[dict]:
    """Instances per class of the full train set: the baseline arm's train set, or else the pickle a
    subset arm's ``DataMiningHook`` mined from; None when neither is on this machine."""
    for result in results:
        if result.arm == baseline and result.train_set.get('instances'):
            return result.train_set
    for result in results:
        if not result.config or not os.path.isfile(result.config):
            continue
        cfg = Config.fromfile(result.config, import_custom_modules=False)
        for hook in mining_hooks(cfg):
            path = os.path.join(hook['data_root'], hook.get('ann_file', 'nuscenes_infos_train.pkl'))
            if os.path.isfile(path):
                use_valid_flag = any(d.get('use_valid_flag', False) for d in train_datasets(cfg))
                counted = count_instances(path, class_names(cfg), use_valid_flag)
                return dict(counted, ann_files=[path])
    return None
