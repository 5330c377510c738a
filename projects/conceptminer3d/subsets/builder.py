"""Writes mined subsets: info pickles, filtered GT databases and the subset manifest.

Under ``<work_dir>/subsets/``:
    nuscenes_infos_train_<random·>_<target·>.pkl     the mined subset (e.g. random10_target10)
    nuscenes_infos_train_<random·+target·>.pkl       the random baseline of the same size
    nuscenes_dbinfos_train_<name>.pkl                GT database (ObjectSample) of each subset
    subset_manifest.json                             why each sample was chosen, counts vs full
The val pickle is never read or written. Same inputs + seed → byte-identical pickles.
"""
from __future__ import annotations

import copy
import os
import pickle
from collections import Counter, defaultdict
from typing import Dict, List, Optional

import pyarrow.parquet as pq

from ..mining.contracts import CONCEPTS_FILE, FRAMES_FILE, write_json_atomic
from ..mining.frames import load_info_pickle
from .selection import Selection, SubsetSpec, select_mined, select_random

SUBSET_DIR = 'subsets'
SUBSET_MANIFEST = 'subset_manifest.json'
_PICKLE_PROTOCOL = 4  # fixed, so bytes do not depend on the Python default


def _dump_pickle_atomic(obj, path: str) -> None:
    tmp = f'{path}.tmp-{os.getpid()}'
    with open(tmp, 'wb') as f:
        pickle.dump(obj, f, protocol=_PICKLE_PROTOCOL)
    os.replace(tmp, path)


def subset_infos(infos: dict, indices: List[int]) -> dict:
    """The train pickle restricted to ``indices``, with sample_idx renumbered to positions."""
    data_list = []
    for position, index in enumerate(indices):
        info = copy.copy(infos['data_list'][index])
        info['sample_idx'] = position
        data_list.append(info)
    return dict(metainfo=infos['metainfo'], data_list=data_list)


def subset_dbinfos(dbinfos: Dict[str, list], indices: List[int]) -> Dict[str, list]:
    """Keep the GT objects of the subset's samples only (the stock database holds the whole
    train set: sampling from it would leak the full data into subset training), with
    image_idx renumbered like the subset's sample_idx."""
    position = {index: p for p, index in enumerate(indices)}
    out = {}
    for name, entries in dbinfos.items():
        kept = []
        for entry in entries:
            if entry['image_idx'] in position:
                entry = dict(entry, image_idx=position[entry['image_idx']])
                kept.append(entry)
        out[name] = kept
    return out


def _class_counts(infos: dict, indices) -> Dict[str, int]:
    names = {v: k for k, v in infos['metainfo']['categories'].items()}
    counts = Counter(names.get(int(inst['bbox_label_3d']), 'unknown')
                     for i in indices for inst in infos['data_list'][i]['instances'])
    return {name: counts.get(name, 0) for name in sorted(infos['metainfo']['categories'])}


def build_subsets(mining_dir: str, train_pkl: str, spec: SubsetSpec, dbinfos_pkl: Optional[str] = None,
                  out_dir: Optional[str] = None) -> dict:
    """Build the mined subset and its random baseline; returns what the manifest says."""
    infos = load_info_pickle(train_pkl)
    tokens = [info['token'] for info in infos['data_list']]
    position = {t: i for i, t in enumerate(tokens)}
    concepts = pq.read_table(os.path.join(mining_dir, CONCEPTS_FILE)).to_pylist()
    frames = pq.read_table(os.path.join(mining_dir, FRAMES_FILE), columns=['sample_token', 'scene_token'])
    unknown = {c['sample_token'] for c in concepts} - set(position)
    if unknown:
        raise ValueError(f'{len(unknown)} mined samples are not in {train_pkl}: mining outputs in {mining_dir} '
                         'were made from another info pickle')
    scene_of_token = dict(zip(frames.column('sample_token').to_pylist(), frames.column('scene_token').to_pylist()))
    scene_of = [scene_of_token.get(t, '') for t in tokens]
    groups: Dict[int, set] = defaultdict(set)
    crops_of: Dict[int, list] = defaultdict(list)
    for c in concepts:
        i = position[c['sample_token']]
        groups[i].add(c['group'])
        crops_of[i].append(dict(crop_id=c['crop_id'], group=c['group'], concept=c['top_concept'],
                                score=round(float(c['top_score']), 4)))

    selection: Selection = select_mined(groups, scene_of, spec)
    assert set(selection.indices) <= set(range(len(tokens))), 'subset must be drawn from the train set'
    baseline = select_random(len(tokens), len(selection.indices), spec.seed)

    out_dir = out_dir or os.path.join(mining_dir, SUBSET_DIR)
    os.makedirs(out_dir, exist_ok=True)
    paths = {}
    dbinfos = None
    if dbinfos_pkl:
        with open(dbinfos_pkl, 'rb') as f:
            dbinfos = pickle.load(f)
    for name, indices in ((spec.name, selection.indices), (spec.baseline_name, baseline)):
        paths[f'infos_{name}'] = os.path.join(out_dir, f'nuscenes_infos_train_{name}.pkl')
        _dump_pickle_atomic(subset_infos(infos, indices), paths[f'infos_{name}'])
        if dbinfos is not None:
            paths[f'dbinfos_{name}'] = os.path.join(out_dir, f'nuscenes_dbinfos_train_{name}.pkl')
            _dump_pickle_atomic(subset_dbinfos(dbinfos, indices), paths[f'dbinfos_{name}'])

    manifest = dict(
        spec=dict(target_ratio=spec.target_ratio, random_ratio=spec.random_ratio, unit=spec.unit, seed=spec.seed),
        inputs=dict(mining_dir=os.path.abspath(mining_dir), train_pkl=os.path.abspath(train_pkl),
                    dbinfos_pkl=os.path.abspath(dbinfos_pkl) if dbinfos_pkl else None),
        outputs={k: os.path.basename(v) for k, v in paths.items()},
        num_train_samples=len(tokens),
        num_selected=len(selection.indices),
        reasons=dict(Counter(selection.reasons.values())),
        target_shortfall_filled_from=selection.shortfall,
        samples_with_group={g: sum(g in s for s in groups.values()) for g in ('Target', 'Rare', 'Common')},
        instances_per_class=dict(full=_class_counts(infos, range(len(tokens))),
                                 mined=_class_counts(infos, selection.indices),
                                 random_baseline=_class_counts(infos, baseline)),
        selected=[dict(sample_token=tokens[i], train_index=i, subset_index=p, scene_token=scene_of[i],
                       reason=selection.reasons[i], crops=crops_of.get(i, []))
                  for p, i in enumerate(selection.indices)],
    )
    write_json_atomic(manifest, os.path.join(out_dir, SUBSET_MANIFEST))
    return manifest
