"""SubsetNuScenesDataset: NuScenesDataset on a subset pickle with its own GT database.

The stock configs build ObjectSample's ``db_sampler`` (and its ``info_path``) into the
train pipeline list when the config is parsed, so a subset config would have to copy the
whole pipeline to point GT sampling at the subset's filtered database. This dataset takes
the database as a dataset key and rewrites the ObjectSample step itself, so a subset config
names the subset (``mining_dir`` + ``subset``) or its two pickles (``ann_file`` +
``db_info_path``) and nothing else.

A subset's database can lack a class entirely; mmdet3d 1.4.0's DataBaseSampler then fails
in ``sample_class_v2`` (``np.stack`` of nothing) as soon as it tries to paste that class.
Classes with no usable object (after the config's ``filter_by_min_points``) are therefore
sampled 0 times.
"""

from __future__ import annotations

import copy
import os
import pickle
from typing import Dict, Optional

from mmdet3d.datasets import NuScenesDataset
from mmdet3d.registry import DATASETS

from ..subsets import subset_paths


def _usable_objects(db_info_path: str, min_points: dict) -> Dict[str, int]:
    with open(db_info_path, 'rb') as f:
        database = pickle.load(f)
    return {
        name: sum(e['num_points_in_gt'] >= min_points.get(name, 0) for e in entries)
        for name, entries in database.items()
    }


def with_db_info_path(pipeline, db_info_path: str) -> list:
    """The pipeline with every ObjectSample step reading ``db_info_path``."""
    steps = []
    for step in pipeline:
        if isinstance(step, dict) and step.get('type') == 'ObjectSample':
            step = copy.deepcopy(step)
            sampler = step['db_sampler']
            sampler['info_path'] = db_info_path
            usable = _usable_objects(db_info_path, sampler.get('prepare', {}).get('filter_by_min_points', {}))
            sampler['sample_groups'] = {
                name: (n if usable.get(name, 0) else 0) for name, n in sampler['sample_groups'].items()
            }
        steps.append(step)
    return steps


@DATASETS.register_module()
class SubsetNuScenesDataset(NuScenesDataset):
    """NuScenesDataset on a mined subset, GT sampling from that subset's own database.

    Name the subset by where it was mined: ``mining_dir`` and ``subset`` give the info
    pickle and the GT database that ``tools/mine.py`` / ``DataMiningHook`` wrote there
    (``subsets.builder.subset_paths``), and replace ``ann_file`` and ``db_info_path``.
    For pickles of your own, leave ``subset`` out (``subset=None`` where a base config sets
    it) and give ``ann_file`` and ``db_info_path``.

    Args:
        mining_dir (str, optional): the mining work dir. Relative paths are taken from the
            working directory, as ``DataMiningHook``'s ``work_dir`` is. Also read by
            ``RareConceptSampler``, which then needs no ``mining_dir`` of its own.
        subset (str, optional): ``SubsetSpec.name`` (e.g. ``'random10_target10'``) or
            ``SubsetSpec.baseline_name`` (e.g. ``'random20'``); needs ``mining_dir``.
        db_info_path (str, optional): GT database for every ObjectSample step of
            ``pipeline``. None keeps the pipeline's own (the full train set's).
        pipeline (list[dict]): as for ``NuScenesDataset``.
        **kwargs: the other ``NuScenesDataset`` arguments (``ann_file``, ``data_root``, ...).
    """

    def __init__(
        self,
        *args,
        mining_dir: Optional[str] = None,
        subset: Optional[str] = None,
        db_info_path: Optional[str] = None,
        pipeline=(),
        **kwargs,
    ):
        if subset is not None:
            if not mining_dir:
                raise ValueError(f'SubsetNuScenesDataset: subset={subset!r} needs the mining_dir it was built in')
            if db_info_path:
                raise ValueError(
                    'SubsetNuScenesDataset: give subset or db_info_path, not both (subset=None to use your own pickles)'
                )
            kwargs['ann_file'], db_info_path = map(os.path.abspath, subset_paths(mining_dir, subset))
            if not os.path.isfile(kwargs['ann_file']):
                raise FileNotFoundError(
                    f"SubsetNuScenesDataset: no subset {subset!r} in {mining_dir} ({kwargs['ann_file']} is missing): "
                    'build it with tools/mine.py or tools/build_subsets.py, or train with DataMiningHook'
                )
        if db_info_path:
            pipeline = with_db_info_path(pipeline, db_info_path)
        self.mining_dir, self.subset, self.db_info_path = mining_dir, subset, db_info_path
        super().__init__(*args, pipeline=pipeline, **kwargs)
