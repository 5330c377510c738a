"""Writes mined subsets: info pickles, filtered GT databases and the subset manifest.

Under ``<work_dir>/subsets/``:
    nuscenes_infos_train_<random·>_<target·>.pkl     the mined subset (e.g. random10_target10)
    nuscenes_infos_train_random<·>.pkl               the random baseline of the same size
    nuscenes_infos_train_coreset<·>.pkl              the k-center coreset of the same size
    nuscenes_dbinfos_train_<name>.pkl                GT database (ObjectSample) of each subset
    subset_manifest.json                             why each sample was chosen, counts vs full
                                                     (of the last build: its ``spec`` says which)
    subset_manifest_<name>.json                      the same, kept per mined subset
``subset_paths`` is the one place that naming rule is written: the datasets and samplers
that read a subset by name call it too. The val pickle is never read or written. Same
inputs + seed → byte-identical pickles.
"""

from __future__ import annotations

import copy
import dataclasses
import json
import os
import pickle
import re
from collections import Counter, defaultdict
from typing import Dict, List, Optional, Tuple

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from ..mining.contracts import (
    CONCEPTS_FILE,
    CROPS_FILE,
    EMBEDDINGS_FILE,
    FRAMES_FILE,
    GROUP_TARGET,
)
from ..mining.runtime.atomic_files import write_json_atomic, write_pickle_atomic
from ..mining.stages.frames import load_info_pickle
from .baselines import sample_embeddings, select_coreset, select_random
from .evidence import embedding_clusters, rarity_weights_of_counts, target_evidence, target_scores
from .selection import REASON_CORESET, REASON_RANDOM, Selection, SubsetSpec, select_mined

SUBSET_DIR = 'subsets'
SUBSET_MANIFEST = 'subset_manifest.json'
_SUBSET_PICKLE = re.compile(r'^nuscenes_infos_train_(.+)\.pkl$')  # the name rule of _subset_files
_REASON_LISTED = 'listed'  # in a subset whose manifest does not say why
_PICKLE_PROTOCOL = 4  # fixed, so bytes do not depend on the Python default


def _subset_files(out_dir: str, name: str) -> Tuple[str, str]:
    return (
        os.path.join(out_dir, f'nuscenes_infos_train_{name}.pkl'),
        os.path.join(out_dir, f'nuscenes_dbinfos_train_{name}.pkl'),
    )


def _subset_manifest_file(name: str) -> str:
    return f'subset_manifest_{name}.json'


def subset_manifest_path(mining_dir: str, name: str) -> str:
    """The manifest of mined subset ``name`` (``SubsetSpec.name``) in ``mining_dir``: why each
    sample was chosen. ``subset_manifest.json`` is the last build's."""
    return os.path.join(mining_dir, SUBSET_DIR, _subset_manifest_file(name))


def subset_names(mining_dir: str) -> List[str]:
    """The subsets whose info pickle lies in ``mining_dir/subsets/``, sorted."""
    folder = os.path.join(mining_dir, SUBSET_DIR)
    if not os.path.isdir(folder):
        return []
    return [m.group(1) for f in sorted(os.listdir(folder)) if (m := _SUBSET_PICKLE.match(f))]


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


def write_subset(out_dir: str, name: str, infos: dict, indices: List[int], dbinfos: Optional[dict] = None) -> dict:
    """Write subset ``name`` (train positions ``indices``) of ``infos`` into ``out_dir``: its info
    pickle and, given the full GT database, its filtered one. Returns ``{infos_<name>: path,
    [dbinfos_<name>: path]}``."""
    infos_path, dbinfos_path = _subset_files(out_dir, name)
    write_pickle_atomic(subset_infos(infos, indices), infos_path, _PICKLE_PROTOCOL)
    paths = {f'infos_{name}': infos_path}
    if dbinfos is not None:
        write_pickle_atomic(subset_dbinfos(dbinfos, indices), dbinfos_path, _PICKLE_PROTOCOL)
        paths[f'dbinfos_{name}'] = dbinfos_path
    return paths


def subset_membership(mining_dir: str, name: str) -> Dict[str, dict]:
    """Why each sample of subset ``name`` in ``mining_dir`` is in it: ``{sample token: {reason,
    [concept, score]}}``. The reason comes from the subset's manifest (``target``, ``random``, ...);
    a baseline (random, coreset) is named by the manifest of the subset it was built beside."""
    infos_path = subset_paths(mining_dir, name)[0]
    tokens = [info['token'] for info in load_info_pickle(infos_path)['data_list']]
    own = subset_manifest_path(mining_dir, name)
    if os.path.isfile(own):
        with open(own) as f:
            selected = json.load(f).get('selected', [])
        known = {s['sample_token']: {k: s[k] for k in ('reason', 'concept', 'score') if k in s} for s in selected}
        return {t: known.get(t, {'reason': _REASON_LISTED}) for t in tokens}
    reason = _REASON_LISTED
    for manifest_name in sorted(os.listdir(os.path.join(mining_dir, SUBSET_DIR))):
        if manifest_name.startswith('subset_manifest') and manifest_name.endswith('.json'):
            with open(os.path.join(mining_dir, SUBSET_DIR, manifest_name)) as f:
                spec = json.load(f).get('spec') or {}
            if spec and name == SubsetSpec(**spec).baseline_name:
                reason = REASON_RANDOM
            elif spec and name == SubsetSpec(**spec).coreset_name:
                reason = REASON_CORESET
    return {t: {'reason': reason} for t in tokens}


def _class_counts(infos: dict, indices) -> Dict[str, int]:
    names = {v: k for k, v in infos['metainfo']['categories'].items()}
    counts = Counter(
        names.get(int(inst['bbox_label_3d']), 'unknown') for i in indices for inst in infos['data_list'][i]['instances']
    )
    return {name: counts.get(name, 0) for name in sorted(infos['metainfo']['categories'])}


def _positions(tokens: pa.ChunkedArray, position: Dict[str, int], what: str, mining_dir: str, train_pkl: str):
    """Train positions of a dictionary-encoded column of sample tokens, refusing tokens of another
    pickle. Each distinct token is looked up once: a run has millions of crops but a few
    ten thousand samples."""
    if not tokens.num_chunks:
        return np.zeros(0, np.int64)
    tokens = tokens.unify_dictionaries().combine_chunks()
    known = pd.Index(list(position)).get_indexer(tokens.dictionary.to_pylist())
    if (known < 0).any():
        raise ValueError(
            f'{int((known < 0).sum())} {what} samples are not in {train_pkl}: '
            f'mining outputs in {mining_dir} were made from another info pickle'
        )
    return known[tokens.indices.to_numpy(zero_copy_only=False)].astype(np.int64)


def _crop_embeddings(mining_dir: str, position: Dict[str, int], train_pkl: str):
    """(train position of each crop, embeddings memmap), row-aligned with crops.parquet."""
    paths = [os.path.join(mining_dir, name) for name in (CROPS_FILE, EMBEDDINGS_FILE)]
    missing = [p for p in paths if not os.path.isfile(p)]
    if missing:
        raise FileNotFoundError(
            f'no {", ".join(missing)}: the coreset needs the crops and embeddings that '
            'tools/mine.py writes beside concepts.parquet'
        )
    tokens = pq.read_table(paths[0], columns=['sample_token'], read_dictionary=['sample_token']).column(0)
    embeddings = np.load(paths[1], mmap_mode='r')
    if len(embeddings) != len(tokens):
        raise ValueError(f'{paths[1]} has {len(embeddings)} rows for {len(tokens)} crops: not from the same run')
    return _positions(tokens, position, 'cropped', mining_dir, train_pkl), embeddings


def _coverage_evidence(target: pd.DataFrame, spec: SubsetSpec, weights, mining_dir: str, crop_embeddings, n: int):
    """``target_evidence`` of the Target crops (``target``: in crop-id order), with embedding
    clusters when ``spec.diversity`` asks for them and the source has embeddings."""
    clusters = None
    if spec.diversity and crop_embeddings.ndim == 2 and crop_embeddings.shape[1] and len(target):
        crop_ids = pq.read_table(os.path.join(mining_dir, CROPS_FILE), columns=['crop_id']).column(0)
        rows = pc.index_in(pa.array(target.crop_id.to_numpy(), pa.string()), value_set=crop_ids).to_numpy()
        order = np.argsort(rows, kind='stable')  # a memmap is read fastest in file order
        picked = np.empty((len(rows), crop_embeddings.shape[1]), np.float32)
        picked[order] = crop_embeddings[rows[order]]
        clusters = embedding_clusters(picked, target.top_concept.to_numpy(), spec.seed)
    return target_evidence(
        target.position.to_numpy(),
        target.top_concept.to_numpy(),
        target.top_score.to_numpy(),
        n,
        weights,
        clusters,
        spec.diversity,
    )


def _read_concepts(mining_dir: str, position: Dict[str, int], train_pkl: str) -> Tuple[pd.DataFrame, pa.ChunkedArray]:
    """The concept table without its crop ids (strings as categories, a few bytes a row), with
    each row's train position; and the crop ids as Arrow strings, taken only where needed."""
    table = pq.read_table(
        os.path.join(mining_dir, CONCEPTS_FILE),
        columns=['crop_id', 'sample_token', 'top_concept', 'top_score', 'group'],
        read_dictionary=['sample_token', 'top_concept', 'group'],
    )
    concepts = table.drop_columns(['crop_id', 'sample_token']).to_pandas()
    concepts['position'] = _positions(table.column('sample_token'), position, 'mined', mining_dir, train_pkl)
    return concepts, table.column('crop_id')


def _with_crop_ids(concepts: pd.DataFrame, crop_ids: pa.ChunkedArray, mask) -> pd.DataFrame:
    rows = np.flatnonzero(np.asarray(mask))
    return concepts.iloc[rows].assign(crop_id=crop_ids.take(pa.array(rows)).to_numpy(zero_copy_only=False))


def build_subsets(
    mining_dir: str, train_pkl: str, spec: SubsetSpec, dbinfos_pkl: Optional[str] = None, out_dir: Optional[str] = None
) -> dict:
    """Build the mined subset, its random baseline and its coreset; returns what the manifest says."""
    infos = load_info_pickle(train_pkl)
    tokens = [info['token'] for info in infos['data_list']]
    position = {t: i for i, t in enumerate(tokens)}
    # Columns, not rows, and strings as categories: a nuScenes run has millions of crops.
    concepts, crop_ids = _read_concepts(mining_dir, position, train_pkl)
    frames = pq.read_table(os.path.join(mining_dir, FRAMES_FILE), columns=['sample_token', 'scene_token'])
    crop_positions, crop_embeddings = _crop_embeddings(mining_dir, position, train_pkl)
    scene_of_token = dict(zip(frames.column('sample_token').to_pylist(), frames.column('scene_token').to_pylist()))
    scene_of = [scene_of_token.get(t, '') for t in tokens]
    groups: Dict[int, set] = defaultdict(set)
    for i, group in concepts[['position', 'group']].drop_duplicates().itertuples(index=False):
        groups[int(i)].add(group)
    weights = rarity_weights_of_counts(concepts.top_concept.value_counts(sort=False))
    # Target crops in crop-id order: the evidence and the ranking then do not depend on the file's row order.
    target = _with_crop_ids(concepts, crop_ids, concepts.group == GROUP_TARGET).sort_values('crop_id', kind='stable')
    scores = target_scores(
        zip(target.position.tolist(), target.group, target.top_concept, target.top_score.tolist()), weights
    )
    evidence = (
        _coverage_evidence(target, spec, weights, mining_dir, crop_embeddings, len(tokens))
        if spec.selection == 'coverage'
        else None
    )

    selection: Selection = select_mined(groups, scene_of, spec, scores, evidence)
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
        paths.update(write_subset(out_dir, name, infos, indices, dbinfos))

    crops_of: Dict[int, list] = defaultdict(list)
    for c in _with_crop_ids(concepts, crop_ids, concepts.position.isin(selection.indices)).itertuples(index=False):
        crops_of[c.position].append(
            dict(crop_id=c.crop_id, group=c.group, concept=c.top_concept, score=round(float(c.top_score), 4))
        )

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
        samples_without_crops=len(tokens) - len(np.unique(crop_positions)),
        reasons=dict(Counter(selection.reasons.values())),
        target_shortfall_filled_from=selection.shortfall,
        target_slots_per_concept=dict(sorted(Counter(c for c, _ in selection.chosen_by.values()).items())),
        rarity_weights={c: round(w, 4) for c, w in weights.items()},
        coverage=selection.coverage or None,
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
    # The last build's manifest is the one above; each mined subset also keeps its own, so the
    # subsets of several rules in one mining dir can each say why they hold what they hold.
    write_json_atomic(manifest, os.path.join(out_dir, _subset_manifest_file(spec.name)))
    return manifest
