"""SubsetNuScenesDataset: NuScenesDataset on a subset pickle with its own GT database.

The stock configs build ObjectSample's ``db_sampler`` (and its ``info_path``) into the
train pipeline list when the config is parsed, so a subset config would have to copy the
whole pipeline to point GT sampling at the subset's filtered database. This dataset takes
``db_info_path`` as a dataset key and rewrites the ObjectSample step itself, so a subset
config changes two keys: ``ann_file`` and ``db_info_path``.
"""
from __future__ import annotations

import copy
from typing import Optional

from mmdet3d.datasets import NuScenesDataset
from mmdet3d.registry import DATASETS


def with_db_info_path(pipeline, db_info_path: str) -> list:
    steps = []
    for step in pipeline:
        if isinstance(step, dict) and step.get('type') == 'ObjectSample':
            step = copy.deepcopy(step)
            step['db_sampler']['info_path'] = db_info_path
        steps.append(step)
    return steps


@DATASETS.register_module()
class SubsetNuScenesDataset(NuScenesDataset):

    def __init__(self, *args, db_info_path: Optional[str] = None, pipeline=(), **kwargs):
        if db_info_path:
            pipeline = with_db_info_path(pipeline, db_info_path)
        self.db_info_path = db_info_path
        super().__init__(*args, pipeline=pipeline, **kwargs)
