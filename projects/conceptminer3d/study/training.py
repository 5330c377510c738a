"""Training and validating every arm × seed, as ``tools/train.py`` does, one work dir per run.

Each run lives in ``<work_dir>/<arm>/seed<k>/`` with a ``benchmark_run.json`` that records what
was asked (arm, seed, config, schedule) and, once validation is done, the metrics. A finished
run is never trained again, and an unfinished one resumes from its latest checkpoint, so a
killed study is resumed by running the same command.
"""

from __future__ import annotations

import dataclasses
import itertools
import json
import os
import pickle
from dataclasses import dataclass
from typing import Callable, List, Optional, Tuple

from mmengine.config import Config

from ..mining.runtime.atomic_files import write_json_atomic
from .arms import BASELINE_ARM, GROUND_TRUTH_ARMS, arm_config
from .metric_log import nuscenes_metrics
from .retarget import mining_dir_under, mining_hooks, redirect_mining, retarget_data_root, set_dataset_version
from .runs import RunResult
from .runs import full_train_set as collected_full_train_set
from .schedule import Schedule, apply_schedule, schedule_of
from .train_set import class_names, train_set_stats

__all__ = [
    'RUN_RECORD',
    'RunFailedError',
    'StudySpec',
    'check_data',
    'full_train_set',
    'iteration_matched',
    'run_dir',
    'run_study',
    'study_config',
]

RUN_RECORD = 'benchmark_run.json'
ITERATION_MATCHED_DIR = 'iteration_matched'
_RUNS_IN_PROCESS = itertools.count()
_DATA_HINTS = dict(
    toy='build it with `make demo` or `tools/make_toy_nuscenes.py --out DIR` (then --data-root DIR)',
    nuscenes='put nuScenes and its info pickles there (mmdet3d\'s create_data.py) or pass --data-root',
)


class RunFailedError(RuntimeError):
    pass


@dataclass
class StudySpec:
    arms: List[str]
    seeds: List[int]
    world: str
    work_dir: str
    schedule: Optional[Schedule] = None  # None: the configs' own (which must agree across arms)
    config_dir: Optional[str] = None
    data_root: Optional[str] = None
    mining_dir: Optional[str] = None  # each arm mines into mining_dir/<its config's mining dir name>
    mining_config: Optional[str] = None  # replaces the arms' DataMiningHook mining config
    vary_subsets: bool = True  # seed k also draws subset seed k (the random draw's luck is part of the spread)
    cfg_options: Optional[dict] = None
    quick: Optional[object] = None  # --quick: a conceptminer3d_toy.quick.QuickSetup

    def base_config(self, arm: str) -> Config:
        """The arm's config on this study's data, before the per-run settings."""
        cfg = Config.fromfile(arm_config(arm, self.world, self.config_dir))
        if self.data_root:
            cfg = retarget_data_root(cfg, self.data_root)
            version = world_version(self.data_root)
            if version:
                cfg = set_dataset_version(cfg, version)
        if self.mining_dir and mining_hooks(cfg):
            cfg = redirect_mining(
                cfg, mining_dir_under(cfg, self.mining_dir), data_root=self.data_root if self.data_root else None
            )
        if self.mining_config and arm not in GROUND_TRUTH_ARMS:
            for hook in mining_hooks(cfg):
                hook['mining_config'] = os.path.abspath(self.mining_config)
        if self.quick is not None:
            cfg = self.quick.apply(cfg)
        if self.cfg_options:
            cfg.merge_from_dict(self.cfg_options)
        return cfg

    def resolve_schedule(self) -> Schedule:
        """``schedule``, or the one every arm's config already has (iteration- or epoch-matched)."""
        if self.schedule is not None:
            return self.schedule
        found = {arm: schedule_of(self.base_config(arm)) for arm in self.arms}
        if len(set(found.values())) != 1 or None in found.values():
            shown = ', '.join(f'{arm}: {s}' for arm, s in found.items())
            raise ValueError(f'the arms\' configs train for different lengths ({shown}); pass --iters or --epochs')
        return next(iter(found.values()))


def world_version(data_root: str) -> Optional[str]:
    """The nuScenes table version a converted world was made with (its val pickle's metainfo)."""
    path = os.path.join(data_root, 'nuscenes_infos_val.pkl')
    if not os.path.isfile(path):
        return None
    with open(path, 'rb') as f:
        return pickle.load(f).get('metainfo', {}).get('version')


def run_dir(work_dir: str, arm: str, seed: int) -> str:
    return os.path.join(os.path.abspath(work_dir), arm, f'seed{seed}')


def study_config(spec: StudySpec, arm: str, seed: int, schedule: Schedule) -> Config:
    """The config one run trains with: the arm's, with the seed, the schedule and its work dir."""
    cfg = spec.base_config(arm)
    cfg.work_dir = run_dir(spec.work_dir, arm, seed)
    cfg.randomness = dict(cfg.get('randomness') or {}, seed=int(seed))
    apply_schedule(cfg, schedule, checkpoints=spec.quick is None)
    if spec.vary_subsets:
        for hook in mining_hooks(cfg):
            hook['subsets'] = dict(hook.get('subsets') or {}, seed=int(seed))
    # mmengine keeps loggers, message hubs and visualizers as process-wide instances looked up by
    # name. The logger and hub take the experiment's name (plus a timestamp); mmdet3d's configs
    # name the visualizer 'visualizer', so without a name of its own every later run in this
    # process would write its metric log into the first run's work dir.
    cfg.experiment_name = f'{arm}_seed{seed}'
    if isinstance(cfg.get('visualizer'), dict):
        cfg.visualizer.name = f'benchmark_{arm}_seed{seed}_{next(_RUNS_IN_PROCESS)}'
    cfg.launcher = 'none'
    cfg.resume, cfg.load_from = True, None  # from the latest checkpoint in the work dir, if any
    return cfg


def _read_record(path: str) -> Optional[dict]:
    if not os.path.isfile(path):
        return None
    with open(path) as f:
        return json.load(f)


def train_and_validate(cfg: Config) -> Tuple[dict, int]:
    """``Runner.from_cfg(cfg).train()`` with its closing validation; the metrics it logged and
    the iterations it trained."""
    from mmengine.runner import Runner

    runner = Runner.from_cfg(cfg)
    runner.train()
    logged = {
        key: scalars.current() for key, scalars in runner.message_hub.log_scalars.items() if key.startswith('val/')
    }
    metrics = nuscenes_metrics(logged)
    if metrics is None:
        raise RuntimeError(
            f'the run in {cfg.work_dir} validated without NuScenesMetric results (logged: {sorted(logged)})'
        )
    return metrics, int(runner.iter)


def run_one(spec: StudySpec, arm: str, seed: int, schedule: Schedule) -> RunResult:
    cfg = study_config(spec, arm, seed, schedule)
    record_path = os.path.join(cfg.work_dir, RUN_RECORD)
    record = _read_record(record_path)
    asked = dict(arm=arm, seed=int(seed), world=spec.world, config=cfg.filename, schedule=schedule.to_dict())
    if record is None and os.path.isdir(cfg.work_dir) and os.listdir(cfg.work_dir):
        raise FileExistsError(
            f'{cfg.work_dir} is not empty and has no {RUN_RECORD}: it was not made by this '
            'tool; choose another --work-dir'
        )
    if record is not None and record.get('schedule') != asked['schedule']:
        raise ValueError(
            f'{cfg.work_dir} was trained for {record.get("schedule")}, not {asked["schedule"]}: '
            'choose another --work-dir to compare another schedule'
        )
    if record is None or record.get('status') != 'done':
        os.makedirs(cfg.work_dir, exist_ok=True)
        write_json_atomic(dict(asked, status='running'), record_path)
        try:
            metrics, iterations = train_and_validate(cfg)
        except Exception as exc:
            raise RunFailedError(f'arm {arm} seed {seed} failed; its work dir is {cfg.work_dir}') from exc
        record = dict(
            asked,
            status='done',
            iterations=iterations,
            metrics=metrics,
            train_set=train_set_stats(cfg),
            classes=class_names(cfg),
        )
        write_json_atomic(record, record_path)
    return RunResult(
        arm=arm,
        seed=int(seed),
        work_dir=cfg.work_dir,
        config=record['config'],
        schedule=record['schedule'],
        metrics=record['metrics'],
        train_set=record['train_set'],
        classes=record.get('classes'),
        iterations=record.get('iterations'),
    )


def check_data(spec: StudySpec, cfg: Config) -> None:
    """The dataset a config validates on must exist before any run starts."""
    evaluator = cfg.get('val_evaluator') or {}
    ann_file = evaluator.get('ann_file') if isinstance(evaluator, dict) else None
    if ann_file and not os.path.isfile(ann_file):
        raise FileNotFoundError(
            f'no {spec.world} dataset for {os.path.basename(cfg.filename)}: {ann_file} is missing; '
            + _DATA_HINTS[spec.world]
        )


def run_study(spec: StudySpec, on_run: Optional[Callable[[str, int, str], None]] = None) -> List[RunResult]:
    """Train and validate each arm × seed (finished runs are read back, not retrained)."""
    for arm in spec.arms:  # every arm's config and data must exist before the first hour of training
        check_data(spec, spec.base_config(arm))
    schedule = spec.resolve_schedule()
    results = []
    # Seed by seed: a study stopped early has every arm of its first seeds, which pair.
    for seed in spec.seeds:
        for arm in spec.arms:
            if on_run is not None:
                on_run(arm, seed, str(schedule))
            results.append(run_one(spec, arm, seed, schedule))
    return results


def iteration_matched(spec: StudySpec, epoch_results: List[RunResult], arms: List[str]) -> StudySpec:
    """The study that trains ``arms`` for as many iterations as the ``full`` arm trained in the
    epoch-matched study ``epoch_results`` (its runs stand for full in both tables: the same
    length, the same schedule's shape), in ``<work_dir>/iteration_matched``."""
    lengths = {r.iterations for r in epoch_results if r.arm == BASELINE_ARM}
    if not lengths or None in lengths:
        raise ValueError(f'an iteration-matched study needs the {BASELINE_ARM} arm in the epoch-matched one')
    if len(lengths) > 1:
        raise ValueError(f'the {BASELINE_ARM} runs trained different lengths ({sorted(lengths)})')
    return dataclasses.replace(
        spec,
        arms=[a for a in arms if a != BASELINE_ARM],
        work_dir=os.path.join(spec.work_dir, ITERATION_MATCHED_DIR),
        schedule=Schedule('iters', lengths.pop()),  # an interval in epochs means nothing here
    )


def full_train_set(spec: StudySpec, results: List[RunResult], baseline: str) -> Optional[dict]:
    """Instances per class of the full train set (for ordering classes by rarity)."""
    found = collected_full_train_set(results, baseline)
    if found is not None:
        return found
    try:
        return train_set_stats(spec.base_config(baseline))
    except (ValueError, FileNotFoundError, KeyError):
        return None
