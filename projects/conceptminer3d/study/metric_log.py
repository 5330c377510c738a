"""Validation metrics of a finished run, as mmengine wrote them, and the nuScenes numbers in them.

mmengine's ``LoggerHook`` hands the metrics of each validation to the visualizer, whose
``LocalVisBackend`` appends them as one JSON line to ``<work_dir>/<timestamp>/vis_data/
scalars.json`` (next to the training-loss lines). A resumed run starts a new timestamp
directory, so the last validation is the last metrics line of the newest directory.
``NuScenesMetric`` names its values ``NuScenes metric/<result>_NuScenes/{mAP, NDS,
<class>_AP_dist_<threshold>, ...}``; the key carries a ``val/`` prefix in the runner's message
hub and in logs written with ``log_with_hierarchy``.
"""

from __future__ import annotations

import glob
import json
import os
import re
from typing import Dict, List, Mapping, Optional

__all__ = ['MetricsNotFoundError', 'nuscenes_metrics', 'read_last_val_metrics', 'scalar_logs', 'validation_curve']

_AP_DIST = re.compile(r'^(?P<cls>.+)_AP_dist_(?P<threshold>[0-9.]+)$')
_RESULT_SUFFIX = '_NuScenes'


class MetricsNotFoundError(FileNotFoundError):
    pass


def scalar_logs(work_dir: str) -> List[str]:
    """``scalars.json`` files of a work dir, oldest run first (timestamp directories sort by time)."""
    return sorted(glob.glob(os.path.join(glob.escape(work_dir), '*', 'vis_data', 'scalars.json')))


def _strip_mode(key: str) -> str:
    return key[len('val/') :] if key.startswith('val/') else key


def _groups(record: Mapping) -> Dict[str, Dict[str, float]]:
    """nuScenes metric groups (``<prefix>/<result>_NuScenes``) -> {name: value}."""
    groups: Dict[str, Dict[str, float]] = {}
    for key, value in record.items():
        group, _, name = _strip_mode(key).rpartition('/')
        if group.endswith(_RESULT_SUFFIX) and isinstance(value, (int, float)):
            groups.setdefault(group, {})[name] = float(value)
    return {g: v for g, v in groups.items() if 'mAP' in v and 'NDS' in v}


def nuscenes_metrics(record: Mapping, result_name: Optional[str] = None) -> Optional[dict]:
    """mAP, NDS and per-class AP from one record of validation metrics, or None if it has none.

    Per-class AP is the mean of the class's AP over the distance thresholds, as the devkit's
    ``DetectionMetrics.mean_dist_aps`` (whose mean over classes is mAP). NuScenesMetric logs
    each threshold's AP rounded to 4 decimals, so it is good to 5e-5; mAP and NDS are exact.

    Args:
        record: ``{metric key: value}``, keys with or without the ``val/`` prefix.
        result_name: which result to read when the metric evaluated several
            (e.g. ``'pred_instances_3d'``); by default the only one, or
            ``pred_instances_3d`` among several.

    Returns:
        ``dict(mAP=float, NDS=float, AP={class: float}, AP_dist={class: {threshold: float}},
        result=<metric group>)``.
    """
    groups = _groups(record)
    if not groups:
        return None
    if result_name is not None:
        chosen = [g for g in groups if g.rsplit('/', 1)[-1] == result_name + _RESULT_SUFFIX]
        if not chosen:
            raise KeyError(f'no nuScenes metrics for result {result_name!r}; found {sorted(groups)}')
        group = chosen[0]
    else:
        preferred = [g for g in groups if g.endswith('/pred_instances_3d' + _RESULT_SUFFIX)]
        group = preferred[0] if preferred else sorted(groups)[0]
    values = groups[group]
    ap_dist: Dict[str, Dict[str, float]] = {}
    for name, value in values.items():
        match = _AP_DIST.match(name)
        if match:
            ap_dist.setdefault(match['cls'], {})[match['threshold']] = value
    return dict(
        mAP=values['mAP'],
        NDS=values['NDS'],
        result=group,
        AP={cls: sum(by_th.values()) / len(by_th) for cls, by_th in ap_dist.items()},
        AP_dist=ap_dist,
    )


def read_last_val_metrics(work_dir: str) -> dict:
    """The nuScenes metrics of the last validation logged in ``work_dir`` (see ``nuscenes_metrics``),
    plus ``step`` and ``log`` (the file read)."""
    if not os.path.isdir(work_dir):
        raise FileNotFoundError(f'no such work dir: {work_dir}')
    logs = scalar_logs(work_dir)
    if not logs:
        raise MetricsNotFoundError(
            f'no metrics in {work_dir}: no <timestamp>/vis_data/scalars.json. Was it trained by mmengine\'s Runner '
            'with LocalVisBackend among visualizer.vis_backends (the mmdet3d default)?'
        )
    for path in reversed(logs):
        last = None
        with open(path) as f:
            for line in f:
                line = line.strip()
                if not line:
                    continue
                try:
                    record = json.loads(line)
                except json.JSONDecodeError:
                    continue  # a line cut short by a killed process
                metrics = nuscenes_metrics(record)
                if metrics is not None:
                    last = dict(metrics, step=record.get('step'), log=path)
        if last is not None:
            return last
    raise MetricsNotFoundError(
        f'no validation metrics in {work_dir}: {len(logs)} scalars.json file(s) hold no '
        'NuScenesMetric record (did the run end before its validation?)'
    )


def validation_curve(work_dir: str) -> List[dict]:
    """Every validation logged in ``work_dir``, in order: ``step`` (the iteration, or the epoch of
    an epoch-based run), ``mAP``, ``NDS`` and per-class ``AP``: the learning curve of a run
    trained with a validation interval."""
    points = []
    for path in scalar_logs(work_dir):
        with open(path) as f:
            for line in f:
                try:
                    record = json.loads(line)
                except json.JSONDecodeError:
                    continue  # blank, or cut short by a killed process
                metrics = nuscenes_metrics(record)
                if metrics is not None:
                    points.append(
                        dict(step=record.get('step'), mAP=metrics['mAP'], NDS=metrics['NDS'], AP=metrics['AP'])
                    )
    return points
