"""SubsetNuScenesDataset: NuScenesDataset on a subset pickle with its own GT database.

The stock configs build ObjectSample's ``db_sampler`` (and its ``info_path``) into the
train pipeline list when the config is parsed, so a subset config would have to copy the
whole pipeline to point GT sampling at the subset's filtered database. This dataset takes
``db_info_path`` as a dataset key and rewrites the ObjectSample step itself, so a subset
config changes two keys: ``ann_file`` and ``db_info_path``.

A subset's database can lack a class entirely; mmdet3d 1.4.0's DataBaseSampler then fails
in ``sample_class_v2`` (``np.stack`` of nothing) as soon as it tries to paste that class.
Classes with no usable object (after the config's ``filter_by_min_points``) are therefore
sampled 0 times.
"""
from __future__ import annotations

import copy
import pickle
from typing import Dict, Optional

from mmdet3d.datasets import NuScenesDataset
from mmdet3d.registry import DATASETS


def _usable_objects(db_info_path: str, min_points: dict) -> Dict[str, int]:
    with open(db_info_path, 'rb') as f:
        database = pickle.load(f)
    return {name: sum(e['num_points_in_gt'] >= min_points.get(name, 0) for e in entries)
            for name, entries in database.items()}


def with_db_info_path(pipeline, db_info_path: str) -> list:
    """The pipeline with every ObjectSample step reading ``db_info_path``."""
    steps = []
    for step in pipeline:
        if isinstance(step, dict) and step.get('type') == 'ObjectSample':
            step = copy.deepcopy(step)
            sampler = step['db_sampler']
            sampler['info_path'] = db_info_path
            usable = _usable_objects(db_info_path, sampler.get('prepare', {}).get('filter_by_min_points', {}))
            sampler['sample_groups'] = {name: (n if usable.get(name, 0) else 0)
                                        for name, n in sampler['sample_groups'].items()}
        steps.append(step)
    return steps


@DATASETS.register_module()
class SubsetNuScenesDataset(NuScenesDataset):

    def __init__(self, *args, db_info_path: Optional[str] = None, pipeline=(), **kwargs):
        if db_info_path:
            pipeline = with_db_info_path(pipeline, db_info_path)
        self.db_info_path = db_info_path
        super().__init__(*args, pipeline=pipeline, **kwargs)
