"""Writes mined subsets: info pickles, filtered GT databases and the subset manifest.

Under ``<work_dir>/subsets/``:
    nuscenes_infos_train_<random·>_<target·>.pkl     the mined subset (e.g. random10_target10)
    nuscenes_infos_train_random<·>.pkl               the random baseline of the same size
    nuscenes_infos_train_coreset<·>.pkl              the k-center coreset of the same size
    nuscenes_dbinfos_train_<name>.pkl                GT database (ObjectSample) of each subset
    subset_manifest.json                             why each sample was chosen, counts vs full
                                                     (of the last build: its ``spec`` says which)
``subset_paths`` is the one place that naming rule is written: the datasets and samplers
that read a subset by name call it too. The val pickle is never read or written. Same
inputs + seed → byte-identical pickles.
"""

from __future__ import annotations

import copy
import dataclasses
import os
import pickle
from collections import Counter, defaultdict
from typing import Dict, List, Optional, Tuple

import numpy as np
import pyarrow.parquet as pq

from ..mining.contracts import CONCEPTS_FILE, CROPS_FILE, EMBEDDINGS_FILE, FRAMES_FILE, write_json_atomic
from ..mining.frames import load_info_pickle
from .selection import (
    Selection,
    SubsetSpec,
    rarity_weights,
    sample_embeddings,
    select_coreset,
    select_mined,
    select_random,
    target_scores,
)

SUBSET_DIR = 'subsets'
SUBSET_MANIFEST = 'subset_manifest.json'
_PICKLE_PROTOCOL = 4  # fixed, so bytes do not depend on the Python default


def _subset_files(out_dir: str, name: str) -> Tuple[str, str]:
    return (
        os.path.join(out_dir, f'nuscenes_infos_train_{name}.pkl'),
        os.path.join(out_dir, f'nuscenes_dbinfos_train_{name}.pkl'),
    )


def subset_paths(mining_dir: str, name: str) -> Tuple[str, str]:
    """Where ``build_subsets`` writes subset ``name`` of the mining outputs in ``mining_dir``.

    Args:
        mining_dir (str): the mining work dir (``tools/mine.py --work-dir``).
        name (str): ``SubsetSpec.name`` (e.g. ``'random10_target10'``),
            ``SubsetSpec.baseline_name`` (e.g. ``'random20'``) or ``SubsetSpec.coreset_name``
            (e.g. ``'coreset20'``).

    Returns:
        tuple[str, str]: the info pickle and the filtered GT database.
    """
    return _subset_files(os.path.join(mining_dir, SUBSET_DIR), name)


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
    counts = Counter(
        names.get(int(inst['bbox_label_3d']), 'unknown') for i in indices for inst in infos['data_list'][i]['instances']
    )
    return {name: counts.get(name, 0) for name in sorted(infos['metainfo']['categories'])}


def _crop_embeddings(mining_dir: str, position: Dict[str, int], train_pkl: str) -> Tuple[List[int], np.ndarray]:
    paths = [os.path.join(mining_dir, name) for name in (CROPS_FILE, EMBEDDINGS_FILE)]
    missing = [p for p in paths if not os.path.isfile(p)]
    if missing:
        raise FileNotFoundError(
            f'no {", ".join(missing)}: the coreset needs the crops and embeddings that '
            'tools/mine.py writes beside concepts.parquet'
        )
    tokens = pq.read_table(paths[0], columns=['sample_token']).column('sample_token').to_pylist()
    embeddings = np.load(paths[1], mmap_mode='r')
    if len(embeddings) != len(tokens):
        raise ValueError(f'{paths[1]} has {len(embeddings)} rows for {len(tokens)} crops: not from the same run')
    unknown = set(tokens) - set(position)
    if unknown:
        raise ValueError(
            f'{len(unknown)} cropped samples are not in {train_pkl}: mining outputs in {mining_dir} '
            'were made from another info pickle'
        )
    return [position[t] for t in tokens], embeddings


def build_subsets(
    mining_dir: str, train_pkl: str, spec: SubsetSpec, dbinfos_pkl: Optional[str] = None, out_dir: Optional[str] = None
) -> dict:
    """Build the mined subset, its random baseline and its coreset; returns what the manifest says."""
    infos = load_info_pickle(train_pkl)
    tokens = [info['token'] for info in infos['data_list']]
    position = {t: i for i, t in enumerate(tokens)}
    concepts = pq.read_table(os.path.join(mining_dir, CONCEPTS_FILE)).to_pylist()
    frames = pq.read_table(os.path.join(mining_dir, FRAMES_FILE), columns=['sample_token', 'scene_token'])
    unknown = {c['sample_token'] for c in concepts} - set(position)
    if unknown:
        raise ValueError(
            f'{len(unknown)} mined samples are not in {train_pkl}: mining outputs in {mining_dir} '
            'were made from another info pickle'
        )
    crop_positions, crop_embeddings = _crop_embeddings(mining_dir, position, train_pkl)
    scene_of_token = dict(zip(frames.column('sample_token').to_pylist(), frames.column('scene_token').to_pylist()))
    scene_of = [scene_of_token.get(t, '') for t in tokens]
    groups: Dict[int, set] = defaultdict(set)
    crops_of: Dict[int, list] = defaultdict(list)
    for c in concepts:
        i = position[c['sample_token']]
        groups[i].add(c['group'])
        crops_of[i].append(
            dict(
                crop_id=c['crop_id'], group=c['group'], concept=c['top_concept'], score=round(float(c['top_score']), 4)
            )
        )
    weights = rarity_weights(c['top_concept'] for c in concepts)
    scores = target_scores(
        ((position[c['sample_token']], c['group'], c['top_concept'], c['top_score']) for c in concepts), weights
    )

    selection: Selection = select_mined(groups, scene_of, spec, scores)
    assert set(selection.indices) <= set(range(len(tokens))), 'subset must be drawn from the train set'
    baseline = select_random(len(tokens), len(selection.indices), spec.seed)
    # The mined subset's size (round(t·N) + round(r·N) in sample mode), as the random baseline's.
    # A source without image embeddings (the annotation source writes zero-width ones) has no
    # space to cover: no coreset rather than one picked from nothing.
    coreset = (
        select_coreset(
            sample_embeddings(crop_positions, crop_embeddings, len(tokens)), len(selection.indices), spec.seed
        )
        if crop_embeddings.ndim == 2 and crop_embeddings.shape[1]
        else None
    )

    out_dir = out_dir or os.path.join(mining_dir, SUBSET_DIR)
    os.makedirs(out_dir, exist_ok=True)
    paths = {}
    dbinfos = None
    if dbinfos_pkl:
        with open(dbinfos_pkl, 'rb') as f:
            dbinfos = pickle.load(f)
    subsets = [(spec.name, selection.indices), (spec.baseline_name, baseline)]
    if coreset is not None:
        subsets.append((spec.coreset_name, coreset))
    for name, indices in subsets:
        infos_path, dbinfos_path = _subset_files(out_dir, name)
        paths[f'infos_{name}'] = infos_path
        _dump_pickle_atomic(subset_infos(infos, indices), infos_path)
        if dbinfos is not None:
            paths[f'dbinfos_{name}'] = dbinfos_path
            _dump_pickle_atomic(subset_dbinfos(dbinfos, indices), dbinfos_path)

    def why(i):
        if i not in selection.chosen_by:
            return {}
        concept, score = selection.chosen_by[i]
        return dict(concept=concept, score=round(score, 4))

    manifest = dict(
        spec=dataclasses.asdict(spec),
        inputs=dict(
            mining_dir=os.path.abspath(mining_dir),
            train_pkl=os.path.abspath(train_pkl),
            dbinfos_pkl=os.path.abspath(dbinfos_pkl) if dbinfos_pkl else None,
        ),
        outputs={k: os.path.basename(v) for k, v in paths.items()},
        num_train_samples=len(tokens),
        num_selected=len(selection.indices),
        num_coreset=len(coreset) if coreset is not None else None,
        samples_without_crops=len(tokens) - len(set(crop_positions)),
        reasons=dict(Counter(selection.reasons.values())),
        target_shortfall_filled_from=selection.shortfall,
        target_slots_per_concept=dict(sorted(Counter(c for c, _ in selection.chosen_by.values()).items())),
        rarity_weights={c: round(w, 4) for c, w in weights.items()},
        samples_with_group={g: sum(g in s for s in groups.values()) for g in ('Target', 'Rare', 'Common')},
        instances_per_class=dict(
            full=_class_counts(infos, range(len(tokens))),
            mined=_class_counts(infos, selection.indices),
            random_baseline=_class_counts(infos, baseline),
            coreset=_class_counts(infos, coreset) if coreset is not None else None,
        ),
        selected=[
            dict(
                sample_token=tokens[i],
                train_index=i,
                subset_index=p,
                scene_token=scene_of[i],
                reason=selection.reasons[i],
                **why(i),
                crops=crops_of.get(i, []),
            )
            for p, i in enumerate(selection.indices)
        ],
    )
    write_json_atomic(manifest, os.path.join(out_dir, SUBSET_MANIFEST))
    return manifest
