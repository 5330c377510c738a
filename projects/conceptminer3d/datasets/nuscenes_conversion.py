"""Runs mmdet3d's own nuScenes converter (shipped in the wheel under ``mmdet3d/.mim/tools``):
``tools/prepare_nuscenes.py`` on a real release, the toy world on its own."""

from __future__ import annotations

import contextlib
import os
import sys
import tempfile
from pathlib import Path

INFO_PREFIX = 'nuscenes'


@contextlib.contextmanager
def _dataset_at_default_root(data_root: str):
    """update_infos_to_v2.update_nuscenes_infos opens NuScenes(dataroot='./data/nuscenes')
    whatever root it is given: run it from a directory where that path is our dataset."""
    with tempfile.TemporaryDirectory() as tmp:
        os.makedirs(os.path.join(tmp, 'data'))
        os.symlink(os.path.abspath(data_root), os.path.join(tmp, 'data', 'nuscenes'))
        previous = os.getcwd()
        os.chdir(tmp)
        try:
            yield
        finally:
            os.chdir(previous)


def _mmdet3d_tools_on_path() -> None:
    import mmdet3d

    mim = str(Path(mmdet3d.__file__).parent / '.mim')
    if mim not in sys.path:
        sys.path.insert(0, mim)  # create_data.py imports `tools.dataset_converters.*`


def convert_nuscenes(data_root: str, version: str = 'v1.0-trainval', max_sweeps: int = 10) -> dict:
    """Write v2 train/val info pickles and the GT database under ``data_root`` with the same
    three converter calls, in the same order, as ``tools/create_data.py nuscenes``
    (``nuscenes_data_prep``; create_data.py itself parses sys.argv at import time, so its
    steps are called directly). Returns the paths written."""
    from mmengine.registry import init_default_scope

    import conceptminer3d  # noqa: F401  (compat shims for the GT database step)

    _mmdet3d_tools_on_path()
    from tools.dataset_converters import nuscenes_converter
    from tools.dataset_converters.create_gt_database import create_groundtruth_database
    from tools.dataset_converters.update_infos_to_v2 import update_pkl_infos

    init_default_scope('mmdet3d')
    data_root = os.path.abspath(data_root)
    with _dataset_at_default_root(data_root):
        nuscenes_converter.create_nuscenes_infos(data_root, INFO_PREFIX, version=version, max_sweeps=max_sweeps)
        for split in ('train', 'val'):
            update_pkl_infos(
                'nuscenes', out_dir=data_root, pkl_path=os.path.join(data_root, f'{INFO_PREFIX}_infos_{split}.pkl')
            )
        create_groundtruth_database('NuScenesDataset', data_root, INFO_PREFIX, f'{INFO_PREFIX}_infos_train.pkl')
    return {
        name: os.path.join(data_root, f'{INFO_PREFIX}_{name}')
        for name in ('infos_train.pkl', 'infos_val.pkl', 'dbinfos_train.pkl', 'gt_database')
    }
