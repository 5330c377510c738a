"""From runs to the comparison: mean ± std over seeds per arm, ratios to the full-data arm, and
the classes ordered rarest first (by their 3D instances in the full train set), since the
question is whether a mined subset keeps the rare classes that a random one loses.
"""

from __future__ import annotations

import math
from typing import Dict, Iterable, List, Optional, Sequence

from .arms import ARMS, BASELINE_ARM
from .runs import RunResult
from .sensitivity import sensitivity

__all__ = ['SCHEMA_VERSION', 'aggregate', 'order_classes', 'summarize']

SCHEMA_VERSION = 1


def aggregate(values: Sequence[float], baseline_mean: Optional[float] = None) -> dict:
    """``mean``, sample ``std`` (None for one value), ``n``, ``values`` and ``ratio_to_full``."""
    values = [float(v) for v in values]
    n = len(values)
    mean = sum(values) / n if n else None
    std = math.sqrt(sum((v - mean) ** 2 for v in values) / (n - 1)) if n > 1 else None
    ratio = mean / baseline_mean if mean is not None and baseline_mean else None
    return dict(mean=mean, std=std, n=n, values=values, ratio_to_full=ratio)


def order_classes(classes: Sequence[str], instances: Optional[Dict[str, int]]) -> List[str]:
    """Rarest first by ``instances``; ties, and classes it does not count, keep the given order."""
    if not instances:
        return list(classes)
    position = {c: i for i, c in enumerate(classes)}
    return sorted(classes, key=lambda c: (c not in instances, instances.get(c, 0), position[c]))


def _arm_order(arms: Iterable[str], requested: Optional[Sequence[str]]) -> List[str]:
    arms = set(arms)
    if requested:
        return [a for a in requested if a in arms] + sorted(arms - set(requested))
    known = [a for a in ARMS if a in arms]
    return known + sorted(arms - set(known))


def _one(values: Iterable) -> Optional[object]:
    values = [v for v in values if v is not None]
    return values[0] if values else None


def summarize(
    results: Sequence[RunResult],
    full_train: Optional[dict] = None,
    arms: Optional[Sequence[str]] = None,
    baseline: str = BASELINE_ARM,
    meta: Optional[dict] = None,
) -> dict:
    """The content of ``benchmark.json``.

    Args:
        results: the runs, any number per arm.
        full_train: ``train_set_stats()`` of the full train set, for the class order.
        arms: arm order for the tables (others follow); default: ``ARMS`` order.
        baseline: the arm ratios are taken to.
        meta: recorded as is (world, schedule, command).
    """
    if not results:
        raise ValueError('no runs to summarize')
    by_arm: Dict[str, List[RunResult]] = {}
    for result in results:
        by_arm.setdefault(result.arm, []).append(result)
    config_classes = _one(r.classes for r in results) or []
    logged = []
    for result in results:
        logged += [c for c in result.metrics['AP'] if c not in logged]
    classes = [c for c in config_classes if c in logged] + [c for c in logged if c not in config_classes]
    full_instances = (full_train or {}).get('instances')
    classes = order_classes(classes, full_instances)

    def stats(runs, get, base):
        return aggregate([get(r) for r in runs if get(r) is not None], base)

    base_runs = by_arm.get(baseline, [])
    base = dict(
        mAP=stats(base_runs, lambda r: r.metrics['mAP'], None)['mean'],
        NDS=stats(base_runs, lambda r: r.metrics['NDS'], None)['mean'],
        AP={c: stats(base_runs, lambda r, c=c: r.metrics['AP'].get(c), None)['mean'] for c in classes},
    )
    table = {}
    for arm in _arm_order(by_arm, arms):
        runs = sorted(by_arm[arm], key=lambda r: (r.seed is None, r.seed if r.seed is not None else 0))
        train = _one(r.train_set if r.train_set.get('num_samples') is not None else None for r in runs) or {}
        table[arm] = dict(
            config=_one(r.config for r in runs),
            seeds=[r.seed for r in runs],
            num_train_samples=train.get('num_samples'),
            instances=train.get('instances'),
            train_ann_files=_one(r.train_set.get('ann_files') for r in runs),
            mAP=stats(runs, lambda r: r.metrics['mAP'], base['mAP']),
            NDS=stats(runs, lambda r: r.metrics['NDS'], base['NDS']),
            AP={c: stats(runs, lambda r, c=c: r.metrics['AP'].get(c), base['AP'][c]) for c in classes},
            runs=[
                dict(
                    seed=r.seed,
                    work_dir=r.work_dir,
                    schedule=r.schedule,
                    mAP=r.metrics['mAP'],
                    NDS=r.metrics['NDS'],
                    AP={c: r.metrics['AP'].get(c) for c in classes},
                )
                for r in runs
            ],
        )
    schedules = {str(r.schedule) for r in results}
    schedule = results[0].schedule if len(schedules) == 1 else 'mixed'
    out = dict(schema_version=SCHEMA_VERSION)
    out.update(meta or {})
    out.update(
        baseline=baseline if base_runs else None,
        schedule=schedule,
        matched=(
            {'iters': 'iteration', 'epochs': 'epoch'}[next(iter(schedule))]
            if isinstance(schedule, dict) and schedule
            else None
        ),
        classes=classes,
        full_train_instances=full_instances,
        full_train_ann_files=(full_train or {}).get('ann_files'),
        arms=table,
    )
    out['sensitivity'] = sensitivity(out)
    return out
