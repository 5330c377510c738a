"""How long each arm trains: the same number of iterations (what the comparison is about is
which data, not how much compute) or the same number of epochs (as the configs would run).

The configs' parameter schedules are stretched onto the new length, so warm-up and decay keep
their shape: an epoch-based nuScenes schedule trained for N iterations becomes the same curve
over N iterations, an iteration-based toy schedule trained for N epochs the same curve over N
epochs (mmengine converts it to iterations once it knows the epoch length).
"""

from __future__ import annotations

import copy
from dataclasses import dataclass
from typing import Optional

__all__ = ['Schedule', 'apply_schedule', 'schedule_of']

_TIME_KEYS = ('begin', 'end', 'T_max', 'step_size')


@dataclass(frozen=True)
class Schedule:
    unit: str  # 'iters' or 'epochs'
    length: int
    val_interval: Optional[int] = None  # also validate every this many iters / epochs (a learning curve)

    def __post_init__(self):
        if self.unit not in ('iters', 'epochs'):
            raise ValueError(f"schedule unit must be 'iters' or 'epochs', got {self.unit!r}")
        if int(self.length) < 1:
            raise ValueError(f'a run needs at least 1 {self.unit[:-1]}, got {self.length}')
        if self.val_interval is not None and int(self.val_interval) < 1:
            raise ValueError(f'a validation interval must be at least 1 {self.unit[:-1]}, got {self.val_interval}')

    def to_dict(self) -> dict:
        return {self.unit: int(self.length)}

    def __str__(self) -> str:
        return f'{self.length} {self.unit[:-1] if self.length == 1 else self.unit}'


def schedule_of(cfg) -> Optional[Schedule]:
    """The schedule a config trains for (mmengine's loop rules: a ``train_cfg`` without ``type``
    is epoch-based when ``by_epoch``), or None if it cannot tell."""
    loop = cfg.get('train_cfg') or {}
    loop_type = loop.get('type')
    iter_based = 'IterBased' in str(loop_type) if loop_type else not loop.get('by_epoch', True)
    key = 'max_iters' if iter_based else 'max_epochs'
    return Schedule('iters' if iter_based else 'epochs', int(loop[key])) if key in loop else None


def _scaled(value, factor: float, integral: bool):
    if isinstance(value, (list, tuple)):
        return type(value)(_scaled(v, factor, integral) for v in value)
    if not isinstance(value, (int, float)) or value >= 1e9:  # mmengine's INF end stays infinite
        return value
    if not integral:
        return value * factor
    return max(1, round(value * factor)) if value > 0 else 0


def _rescale_scheduler(scheduler: dict, factor: float, unit: str, was_by_epoch: bool) -> dict:
    scheduler = copy.deepcopy(dict(scheduler))
    by_epoch = unit == 'epochs'
    if by_epoch and not was_by_epoch:
        # fractions of an epoch are fine once mmengine converts the schedule to iterations
        scheduler['convert_to_iter_based'] = True
    elif not by_epoch:
        scheduler.pop('convert_to_iter_based', None)
    integral = not (by_epoch and scheduler.get('convert_to_iter_based'))
    for key in _TIME_KEYS:
        if key in scheduler:
            scheduler[key] = _scaled(scheduler[key], factor, integral)
    if 'milestones' in scheduler:
        scheduler['milestones'] = _scaled(list(scheduler['milestones']), factor, integral)
    if 'begin' in scheduler and 'end' in scheduler and scheduler['end'] <= scheduler['begin']:
        scheduler['end'] = scheduler['begin'] + 1  # a warm-up shorter than one step still has one
    scheduler['by_epoch'] = by_epoch
    return scheduler


def apply_schedule(cfg, schedule: Schedule, checkpoints: bool = True) -> None:
    """Make ``cfg`` train for ``schedule`` and validate at the end, and every
    ``schedule.val_interval`` if it has one (in place).

    Checkpoints are kept for resuming a killed run (every epoch, or every tenth of the
    iterations, only the latest) unless ``checkpoints`` is False.
    """
    old = schedule_of(cfg)
    n = int(schedule.length)
    # mmengine validates every val_interval and always after the last iteration or epoch
    every = min(int(schedule.val_interval or n), n)
    if schedule.unit == 'iters':
        cfg.train_cfg = dict(type='IterBasedTrainLoop', max_iters=n, val_interval=every)
    else:
        cfg.train_cfg = dict(type='EpochBasedTrainLoop', max_epochs=n, val_interval=every)
    schedulers = cfg.get('param_scheduler')
    if old is not None and schedulers:
        factor = n / old.length
        single = isinstance(schedulers, dict)
        cfg.param_scheduler = [
            _rescale_scheduler(s, factor, schedule.unit, bool(s.get('by_epoch', True)))
            for s in ([schedulers] if single else schedulers)
        ]
    if cfg.get('log_processor') is not None:
        cfg.log_processor.by_epoch = schedule.unit == 'epochs'
    if cfg.get('default_hooks') is None:
        cfg.default_hooks = dict()
    hooks = cfg.default_hooks
    # LoggerHook stamps validation metrics with the epoch unless told otherwise, so every
    # validation of an iteration-based run would be logged at step 0 and its curve lost
    hooks['logger'] = dict(
        hooks.get('logger') or dict(type='LoggerHook'), log_metric_by_epoch=schedule.unit == 'epochs'
    )
    checkpoint = dict(hooks.get('checkpoint') or dict(type='CheckpointHook'))
    if not checkpoints:
        checkpoint.update(interval=-1, save_last=False)
    elif schedule.unit == 'epochs':
        checkpoint.update(interval=1, by_epoch=True, max_keep_ckpts=1, save_last=True)
    else:
        checkpoint.update(interval=max(1, -(-n // 10)), by_epoch=False, max_keep_ckpts=1, save_last=True)
    hooks['checkpoint'] = checkpoint
