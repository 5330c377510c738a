"""A subset given as a list of sample tokens (tagged in FiftyOne, found by a search), written
beside the mined ones: ``subsets/nuscenes_infos_train_<name>.pkl`` with its filtered GT
database, and ``subset_manifest_<name>.json`` saying where it came from and why each sample is
in it, so it trains with the same configs (``SubsetNuScenesDataset(mining_dir=..., subset=name)``).
"""

from __future__ import annotations

import datetime
import os
import pickle
import re
from collections import Counter
from typing import Mapping, Optional, Sequence

from ..mining.runtime.atomic_files import write_json_atomic
from ..mining.stages.frames import load_info_pickle
from .builder import SUBSET_DIR, subset_manifest_path, subset_names, write_subset
from .evaluation import mined_dbinfos_pickle, mined_train_pickle

__all__ = ['check_subset_name', 'write_listed_subset']

_SUBSET_NAME = re.compile(r'^[A-Za-z0-9][A-Za-z0-9_.-]*$')


def check_subset_name(name: str, mining_dir: str, overwrite: bool) -> None:
    """Raise if ``name`` cannot name a subset file, or names one that exists (unless ``overwrite``)."""
    if not _SUBSET_NAME.match(name):
        raise ValueError(f'{name!r} cannot name a subset file: use letters, digits, "_", "-" and "."')
    if name in subset_names(mining_dir) and not overwrite:
        raise FileExistsError(
            f'subset {name!r} exists in {os.path.join(mining_dir, SUBSET_DIR)}: --overwrite replaces it'
        )


def write_listed_subset(
    mining_dir: str,
    name: str,
    selected: Sequence[Mapping],
    source: dict,
    train_pkl: Optional[str] = None,
    overwrite: bool = False,
    infos: Optional[dict] = None,
) -> dict:
    """Write the samples in ``selected`` as subset ``name`` of the train pickle that was mined.

    Args:
        mining_dir (str): the mining work dir.
        name (str): the subset's name.
        selected (list[dict]): one entry per sample: ``sample_token``, ``reason`` and any other
            fields to keep in the manifest (``concept``, ``score``); the subset keeps the train
            pickle's order.
        source (dict): where the list came from, recorded in the manifest.
        train_pkl (str, optional): the train pickle; default the one the run's subsets were
            built from.
        overwrite (bool): replace an existing subset of that name.
        infos (dict, optional): ``train_pkl`` already loaded, when the caller has it.

    Returns:
        dict: the subset's manifest.
    """
    check_subset_name(name, mining_dir, overwrite)
    train_pkl = train_pkl or mined_train_pickle(mining_dir)
    infos = infos if infos is not None else load_info_pickle(train_pkl)
    position = {info['token']: i for i, info in enumerate(infos['data_list'])}
    unknown = [s['sample_token'] for s in selected if s['sample_token'] not in position]
    if unknown:
        raise ValueError(f'{len(unknown)} samples (e.g. {unknown[0]}) are not in {train_pkl}: another run\'s samples?')
    by_index = {position[s['sample_token']]: dict(s) for s in selected}
    indices = sorted(by_index)
    dbinfos_pkl = mined_dbinfos_pickle(mining_dir)
    dbinfos = None
    if dbinfos_pkl:
        with open(dbinfos_pkl, 'rb') as f:
            dbinfos = pickle.load(f)
    paths = write_subset(os.path.join(mining_dir, SUBSET_DIR), name, infos, indices, dbinfos)
    manifest = dict(
        source=dict(source, written=datetime.datetime.now().isoformat(timespec='seconds')),
        inputs=dict(train_pkl=os.path.abspath(train_pkl), dbinfos_pkl=dbinfos_pkl),
        outputs={k: os.path.basename(v) for k, v in paths.items()},
        num_train_samples=len(position),
        num_selected=len(indices),
        reasons=dict(Counter(by_index[i]['reason'] for i in indices)),
        selected=[dict(by_index[i], train_index=i, subset_index=p) for p, i in enumerate(indices)],
    )
    write_json_atomic(manifest, subset_manifest_path(mining_dir, name))
    return manifest
