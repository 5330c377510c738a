"""Mined subsets: sizes, Target share, ranked and uniform Target rules, concept quotas, the
coreset baseline, scene mode, determinism, GT database filtering, how SubsetNuScenesDataset
finds a subset by mining dir and name, and the configs of the subset arms."""

import dataclasses
import hashlib
import json
import os
import pickle
import shutil
import subprocess
import sys

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from mmengine.config import Config
from scipy.spatial.distance import cdist

from conceptminer3d.mining.stages.concepts import ConceptVocabulary, assign_groups
from conceptminer3d.subsets import (
    SUBSET_DIR,
    SUBSET_MANIFEST,
    SubsetSpec,
    build_subsets,
    select_coreset,
    select_mined,
    select_random,
    subset_paths,
)
from conceptminer3d.subsets.baselines import sample_embeddings
from conceptminer3d.subsets.builder import subset_infos

from helpers import REPO, retarget_data_root

TRAIN = 'nuscenes_infos_train.pkl'
MINING_FILES = ('concepts.parquet', 'frames.parquet', 'crops.parquet', 'embeddings.npy')


def _load(path):
    with open(path, 'rb') as f:
        return pickle.load(f)


def _digest(path):
    with open(path, 'rb') as f:
        return hashlib.sha256(f.read()).hexdigest()


@pytest.fixture(scope='module')
def built(toy_world, train_mining, tmp_path_factory):
    root, _ = toy_world
    out = str(tmp_path_factory.mktemp('subsets'))
    manifest = build_subsets(
        train_mining,
        os.path.join(root, TRAIN),
        SubsetSpec(0.1, 0.1, 'sample', 0),
        os.path.join(root, 'nuscenes_dbinfos_train.pkl'),
        out,
    )
    return out, manifest


def test_sizes_are_exact_and_target_slots_hold_target_crops(toy_world, train_mining, built):
    root, _ = toy_world
    out, manifest = built
    train = _load(os.path.join(root, TRAIN))
    n = len(train['data_list'])
    mined = _load(os.path.join(out, 'nuscenes_infos_train_random10_target10.pkl'))
    baseline = _load(os.path.join(out, 'nuscenes_infos_train_random20.pkl'))
    assert len(mined['data_list']) == round(0.1 * n) + round(0.1 * n) == len(baseline['data_list'])
    assert manifest['reasons'].get('target', 0) + manifest['reasons'].get('rare_topup', 0) + manifest['reasons'].get(
        'fill_topup', 0
    ) == round(0.1 * n)
    concepts = pq.read_table(os.path.join(train_mining, 'concepts.parquet')).to_pandas()
    target_samples = set(concepts.sample_token[concepts.group == 'Target'])
    assert manifest['samples_with_group']['Target'] == len(target_samples)
    target_entries = [entry for entry in manifest['selected'] if entry['reason'] == 'target']
    assert len(target_entries) == min(len(target_samples), round(0.1 * n))
    assert {entry['sample_token'] for entry in target_entries} <= target_samples
    assert all(any(c['group'] == 'Target' for c in entry['crops']) for entry in target_entries)
    assert bool(manifest['target_shortfall_filled_from']) == (len(target_samples) < round(0.1 * n))
    # a v2 pickle of train samples, renumbered, metainfo kept
    train_tokens = [i['token'] for i in train['data_list']]
    assert [i['sample_idx'] for i in mined['data_list']] == list(range(len(mined['data_list'])))
    assert {i['token'] for i in mined['data_list']} <= set(train_tokens)
    assert mined['metainfo'] == train['metainfo']


def test_target_shortfall_is_topped_up_and_reported(toy_world, train_mining, tmp_path):
    root, _ = toy_world
    manifest = build_subsets(train_mining, os.path.join(root, TRAIN), SubsetSpec(0.6, 0.1), out_dir=str(tmp_path))
    n = manifest['num_train_samples']
    assert manifest['num_selected'] == round(0.6 * n) + round(0.1 * n)
    assert manifest['reasons']['target'] == manifest['samples_with_group']['Target'] < round(0.6 * n)
    assert sum(manifest['target_shortfall_filled_from'].values()) == round(0.6 * n) - manifest['reasons']['target']


def test_same_inputs_and_seed_give_byte_identical_pickles(toy_world, train_mining, built, tmp_path):
    root, _ = toy_world
    out, _ = built
    for seed, same in ((0, True), (1, False)):
        again = str(tmp_path / f'seed{seed}')
        build_subsets(
            train_mining,
            os.path.join(root, TRAIN),
            SubsetSpec(0.1, 0.1, 'sample', seed),
            os.path.join(root, 'nuscenes_dbinfos_train.pkl'),
            again,
        )
        for name in (
            'nuscenes_infos_train_random10_target10.pkl',
            'nuscenes_infos_train_random20.pkl',
            'nuscenes_infos_train_coreset20.pkl',
            'nuscenes_dbinfos_train_random10_target10.pkl',
        ):
            if seed and 'coreset' in name:
                continue  # another first centre can converge to the same centres (see the coreset tests)
            assert (_digest(os.path.join(out, name)) == _digest(os.path.join(again, name))) == same, (seed, name)


def test_gt_database_holds_only_subset_objects(toy_world, built):
    root, _ = toy_world
    out, _ = built
    full_db = _load(os.path.join(root, 'nuscenes_dbinfos_train.pkl'))
    subset = _load(os.path.join(out, 'nuscenes_infos_train_random10_target10.pkl'))['data_list']
    sub_db = _load(os.path.join(out, 'nuscenes_dbinfos_train_random10_target10.pkl'))
    train_index = {i['token']: k for k, i in enumerate(_load(os.path.join(root, TRAIN))['data_list'])}
    kept_train_indices = {train_index[i['token']] for i in subset}
    for name, entries in sub_db.items():
        expected = [e for e in full_db[name] if e['image_idx'] in kept_train_indices]
        assert len(entries) == len(expected), name
        for e in entries:
            info = subset[e['image_idx']]  # renumbered to the subset's sample_idx
            assert e['gt_idx'] < len(info['instances'])
    assert 0 < sum(map(len, sub_db.values())) < sum(map(len, full_db.values())) / 3


def test_scene_mode_keeps_whole_scenes(toy_world, train_mining, tmp_path):
    root, _ = toy_world
    manifest = build_subsets(
        train_mining, os.path.join(root, TRAIN), SubsetSpec(0.2, 0.2, 'scene', 0, 'ranked'), out_dir=str(tmp_path)
    )
    frames = pq.read_table(os.path.join(train_mining, 'frames.parquet')).to_pandas()
    scene_size = frames.drop_duplicates('sample_token').groupby('scene_token').size()
    chosen = {}
    for entry in manifest['selected']:
        chosen.setdefault(entry['scene_token'], 0)
        chosen[entry['scene_token']] += 1
    assert chosen and all(count == scene_size[scene] for scene, count in chosen.items())
    assert manifest['num_selected'] <= round(0.2 * manifest['num_train_samples']) * 2


def test_val_pickle_is_never_touched(toy_world, train_mining, tmp_path):
    root, _ = toy_world
    val = os.path.join(root, 'nuscenes_infos_val.pkl')
    before = (_digest(val), os.stat(val).st_mtime_ns)
    build_subsets(train_mining, os.path.join(root, TRAIN), SubsetSpec(), out_dir=str(tmp_path))
    assert (_digest(val), os.stat(val).st_mtime_ns) == before
    assert not any('val' in name for name in os.listdir(tmp_path))


def test_mining_outputs_of_another_pickle_are_refused(toy_world, train_mining, tmp_path):
    root, _ = toy_world
    with pytest.raises(ValueError, match='another info pickle'):
        build_subsets(train_mining, os.path.join(root, 'nuscenes_infos_val.pkl'), SubsetSpec(), out_dir=str(tmp_path))


@pytest.mark.parametrize(
    'kwargs', [dict(target_ratio=0.0, random_ratio=0.0), dict(target_ratio=0.8, random_ratio=0.3), dict(unit='frame')]
)
def test_bad_specs_are_refused(kwargs):
    with pytest.raises(ValueError):
        SubsetSpec(**kwargs)


@pytest.mark.parametrize(
    'kwargs, match', [(dict(selection='best'), 'selection'), (dict(selection='uniform', concept_quota=True), 'ranked')]
)
def test_bad_selections_are_refused(kwargs, match):
    with pytest.raises(ValueError, match=match):
        SubsetSpec(**kwargs)


def test_names_say_the_rule_and_the_size():
    assert (SubsetSpec().name, SubsetSpec().baseline_name, SubsetSpec().coreset_name) == (
        'random10_target10',
        'random20',
        'coreset20',
    )
    assert SubsetSpec().selection == 'coverage', 'the default rule carries no suffix'
    assert SubsetSpec(selection='uniform').name == 'random10_target10_uniform'
    assert SubsetSpec(selection='ranked').name == 'random10_target10_ranked'
    assert SubsetSpec(0.2, 0.1, selection='ranked', concept_quota=True).name == 'random10_target20_ranked_quota'
    assert SubsetSpec(0.2, 0.1, selection='ranked', concept_quota=True).coreset_name == 'coreset30'


def test_ranked_selection_needs_scores():
    with pytest.raises(ValueError, match='target_scores'):
        select_mined({0: {'Target'}}, ['s'] * 10, SubsetSpec(selection='ranked'))


def test_selection_is_a_pure_function_of_groups():
    groups = {i: {'Target'} for i in range(0, 100, 7)} | {i: {'Rare'} for i in range(3, 100, 11)}
    scenes = [f's{i // 10}' for i in range(100)]
    a = select_mined(groups, scenes, SubsetSpec(0.1, 0.1, 'sample', 5, 'uniform'))
    b = select_mined(groups, scenes, SubsetSpec(0.1, 0.1, 'sample', 5, 'uniform'))
    assert a.indices == b.indices and len(a.indices) == 20
    targets = [i for i, r in a.reasons.items() if r == 'target']
    assert len(targets) == 10 and all('Target' in groups[i] for i in targets) and not a.shortfall
    # fewer Target samples than the 30 target slots: all of them, then every Rare one, then others
    n_target, n_rare = (sum(group in g for g in groups.values()) for group in ('Target', 'Rare'))
    assert n_target + n_rare < 30
    c = select_mined(groups, scenes, SubsetSpec(0.3, 0.1, 'sample', 5, 'uniform'))
    reasons = [c.reasons[i] for i in c.indices]
    assert (reasons.count('target'), reasons.count('rare_topup'), reasons.count('fill_topup')) == (
        n_target,
        n_rare,
        30 - n_target - n_rare,
    )
    assert c.shortfall == {'rare_topup': n_rare, 'fill_topup': 30 - n_target - n_rare}


def test_builder_writes_where_subset_paths_says(toy_world, train_mining, tmp_path):
    """The naming rule the datasets read by: mining dir + subset name → the two pickles."""
    root, _ = toy_world
    mining_dir = str(tmp_path / 'mining')
    os.makedirs(mining_dir)
    for name in MINING_FILES:
        shutil.copy(os.path.join(train_mining, name), mining_dir)
    spec = SubsetSpec(0.2, 0.1)
    manifest = build_subsets(
        mining_dir, os.path.join(root, TRAIN), spec, os.path.join(root, 'nuscenes_dbinfos_train.pkl')
    )
    written = {os.path.join(mining_dir, SUBSET_DIR, f) for f in manifest['outputs'].values()}
    derived = {
        path for name in (spec.name, spec.baseline_name, spec.coreset_name) for path in subset_paths(mining_dir, name)
    }
    assert derived == written and all(os.path.isfile(path) for path in derived)
    infos, dbinfos = subset_paths(mining_dir, 'random10_target20')
    assert spec.name == 'random10_target20' and spec.baseline_name == 'random30'
    assert len(_load(infos)['data_list']) == manifest['num_selected']
    assert set(_load(dbinfos)) == set(_load(os.path.join(root, 'nuscenes_dbinfos_train.pkl')))


def test_build_subsets_tool_takes_its_defaults_from_subset_spec(toy_world, train_mining, tmp_path):
    root, _ = toy_world
    subprocess.run(
        [
            sys.executable,
            os.path.join(REPO, 'tools', 'build_subsets.py'),
            train_mining,
            '--train-pkl',
            os.path.join(root, TRAIN),
            '--out-dir',
            str(tmp_path),
            '--seed',
            '3',
            '--selection',
            'ranked',
            '--concept-quota',
        ],
        check=True,
        capture_output=True,
    )
    with open(os.path.join(tmp_path, SUBSET_MANIFEST)) as f:
        assert json.load(f)['spec'] == dataclasses.asdict(SubsetSpec(seed=3, selection='ranked', concept_quota=True))


@pytest.fixture(scope='module')
def mined_dir(train_mining, toy_world, tmp_path_factory):
    """A mining work dir with the default subsets built where tools/mine.py puts them."""
    root, _ = toy_world
    mining_dir = str(tmp_path_factory.mktemp('mined') / 'mining')
    os.makedirs(mining_dir)
    for name in MINING_FILES:
        shutil.copy(os.path.join(train_mining, name), mining_dir)
    build_subsets(mining_dir, os.path.join(root, TRAIN), SubsetSpec(), os.path.join(root, 'nuscenes_dbinfos_train.pkl'))
    return mining_dir


def _subset_dataset(toy_world, **keys):
    from mmengine.registry import init_default_scope

    from conceptminer3d.datasets import SubsetNuScenesDataset

    init_default_scope('mmdet3d')
    root, config = toy_world
    cfg = retarget_data_root(Config.fromfile(os.path.join(REPO, 'configs', 'centerpoint_pillar_toy.py')), root)
    return SubsetNuScenesDataset(
        data_root=root,
        pipeline=cfg.train_pipeline,
        metainfo=cfg.metainfo,
        data_prefix=cfg.train_dataloader.dataset.dataset.data_prefix,
        test_mode=False,
        **keys,
    )


def _object_sample_info_path(dataset):
    return next(t.db_sampler.info_path for t in dataset.pipeline.transforms if type(t).__name__ == 'ObjectSample')


@pytest.mark.parametrize('subset', [SubsetSpec().name, SubsetSpec().baseline_name, SubsetSpec().coreset_name])
def test_dataset_finds_a_subset_by_mining_dir_and_name(toy_world, mined_dir, subset, monkeypatch):
    infos, dbinfos = subset_paths(mined_dir, subset)
    monkeypatch.chdir(os.path.dirname(mined_dir))  # a relative mining_dir is taken from here, not data_root
    dataset = _subset_dataset(toy_world, mining_dir=os.path.basename(mined_dir), subset=subset)
    assert (dataset.ann_file, dataset.db_info_path) == (infos, dbinfos)
    assert _object_sample_info_path(dataset) == dbinfos
    assert [dataset.get_data_info(i)['token'] for i in range(len(dataset))] == [
        info['token'] for info in _load(infos)['data_list']
    ]


def test_dataset_still_takes_explicit_pickles(toy_world, mined_dir):
    infos, dbinfos = subset_paths(mined_dir, SubsetSpec().name)
    dataset = _subset_dataset(toy_world, ann_file=infos, db_info_path=dbinfos)
    assert (dataset.ann_file, dataset.subset, _object_sample_info_path(dataset)) == (infos, None, dbinfos)
    assert len(dataset) == len(_load(infos)['data_list'])


@pytest.mark.parametrize(
    'with_mining_dir, keys, error, match',
    [
        (False, dict(subset='random20'), ValueError, 'needs the mining_dir'),
        (True, dict(subset='random20', db_info_path='x.pkl'), ValueError, 'not both'),
        (True, dict(subset='random30'), FileNotFoundError, 'tools/mine.py'),
    ],
)
def test_dataset_refuses_a_subset_it_cannot_find(toy_world, mined_dir, with_mining_dir, keys, error, match):
    with pytest.raises(error, match=match):
        _subset_dataset(toy_world, mining_dir=mined_dir if with_mining_dir else None, **keys)


# -- Target rules: ranked, uniform, per-concept quota ---------------------------------------------


def _concepts(mining_dir):
    return pq.read_table(os.path.join(mining_dir, 'concepts.parquet')).to_pandas()


def _expected_scores(concepts):
    """sample token → max over its Target crops of top_score × -ln(share of its top concept among
    all mined crops), written out independently of the package."""
    share = concepts.top_concept.value_counts(normalize=True)
    target = concepts[concepts.group == 'Target']
    value = target.top_score.clip(lower=0).to_numpy() * -np.log(share[target.top_concept].to_numpy())
    return target.assign(value=value).groupby('sample_token').value.max()


def _target_entries(manifest):
    return [e for e in manifest['selected'] if e['reason'] == 'target']


def test_ranked_target_slots_hold_the_strongest_rare_concepts(toy_world, train_mining, tmp_path):
    root, _ = toy_world
    expected = _expected_scores(_concepts(train_mining))
    ranked = build_subsets(
        train_mining, os.path.join(root, TRAIN), SubsetSpec(selection='ranked'), out_dir=str(tmp_path / 'r')
    )
    n_target = round(0.1 * ranked['num_train_samples'])
    assert len(expected) > n_target, 'the toy mining must offer more Target samples than slots for this test'
    picked = _target_entries(ranked)
    assert len(picked) == n_target
    for entry in picked:  # the manifest says which concept and score chose each sample
        assert entry['score'] == pytest.approx(expected[entry['sample_token']], abs=1e-4)
        crops = [c for c in entry['crops'] if c['group'] == 'Target' and c['concept'] == entry['concept']]
        assert crops, entry
    left_out = expected.drop([e['sample_token'] for e in picked])
    assert min(e['score'] for e in picked) >= left_out.max() - 1e-4, 'ranked takes the top scores'

    uniform_means = []
    for seed in range(4):
        uniform = build_subsets(
            train_mining,
            os.path.join(root, TRAIN),
            SubsetSpec(seed=seed, selection='uniform'),
            out_dir=str(tmp_path / f'u{seed}'),
        )
        assert all('score' not in e for e in uniform['selected'])
        uniform_means.append(expected[[e['sample_token'] for e in _target_entries(uniform)]].mean())
    ranked_mean = np.mean([e['score'] for e in picked])
    assert ranked_mean >= max(uniform_means) - 1e-4 and ranked_mean > np.mean(uniform_means)
    # the other slots keep their rule: drawn uniformly, from samples the Target slots left
    assert ranked['reasons']['random'] == round(0.1 * ranked['num_train_samples'])


def test_ranked_scene_mode_ranks_scenes_by_their_best_sample(toy_world, train_mining, tmp_path):
    root, _ = toy_world
    expected = _expected_scores(_concepts(train_mining))
    manifest = build_subsets(
        train_mining, os.path.join(root, TRAIN), SubsetSpec(0.2, 0.2, 'scene', 0, 'ranked'), out_dir=str(tmp_path)
    )
    frames = pq.read_table(os.path.join(train_mining, 'frames.parquet')).to_pandas()
    scene_of = frames.drop_duplicates('sample_token').set_index('sample_token').scene_token
    scene_scores = expected.groupby(scene_of[expected.index].to_numpy()).max()
    picked = _target_entries(manifest)
    assert picked and {e['scene_token'] for e in picked} >= {scene_scores.idxmax()}
    for entry in picked:  # every sample of a Target scene carries the scene's score
        assert entry['score'] == pytest.approx(scene_scores[entry['scene_token']], abs=1e-4)


def _previous_rule(groups, scene_of, spec):
    """The Target rule before ranking, as it was written (uniform among samples with a Target
    crop): the reference that selection='uniform' must reproduce exactly."""
    n = len(scene_of)
    rng = np.random.default_rng(spec.seed)
    n_target, n_random = round(spec.target_ratio * n), round(spec.random_ratio * n)
    units = {i: [i] for i in range(n)} if spec.unit == 'sample' else {}
    if spec.unit == 'scene':
        for i, scene in enumerate(scene_of):
            units.setdefault(scene, []).append(i)
    tiers = [[u for u, idx in units.items() if any(g in groups.get(i, ()) for i in idx)] for g in ('Target', 'Rare')]
    chosen, taken = {}, set()

    def take(pool, quota):
        got = 0
        available = sorted(u for u in pool if u not in taken)
        for u in [available[i] for i in rng.permutation(len(available))]:
            if got >= quota:
                break
            if spec.unit == 'scene' and got + len(units[u]) > quota and got > 0:
                continue
            taken.add(u)
            chosen.update(dict.fromkeys(units[u]))
            got += len(units[u])
        return got

    filled = 0
    for pool in tiers + [list(units)]:
        filled += take(pool, n_target - filled)
        if filled >= n_target:
            break
    take(list(units), n_random)
    return sorted(chosen)


@pytest.mark.parametrize(
    'spec',
    [
        SubsetSpec(0.1, 0.1, 'sample', 0, 'uniform'),
        SubsetSpec(0.1, 0.1, 'sample', 3, 'uniform'),
        SubsetSpec(0.2, 0.2, 'scene', 1, 'uniform'),
        SubsetSpec(0.6, 0.1, 'sample', 2, 'uniform'),
    ],
)
def test_uniform_is_the_previous_rule_byte_for_byte(toy_world, train_mining, tmp_path, spec):
    root, _ = toy_world
    manifest = build_subsets(train_mining, os.path.join(root, TRAIN), spec, out_dir=str(tmp_path))
    concepts = _concepts(train_mining)
    infos = _load(os.path.join(root, TRAIN))
    position = {info['token']: i for i, info in enumerate(infos['data_list'])}
    groups = {}
    for token, group in zip(concepts.sample_token, concepts.group):
        groups.setdefault(position[token], set()).add(group)
    frames = pq.read_table(os.path.join(train_mining, 'frames.parquet')).to_pandas()
    scene_of = dict(zip(frames.sample_token, frames.scene_token))
    reference = _previous_rule(groups, [scene_of[info['token']] for info in infos['data_list']], spec)
    with open(os.path.join(tmp_path, manifest['outputs'][f'infos_{spec.name}']), 'rb') as f:
        assert f.read() == pickle.dumps(subset_infos(infos, reference), protocol=4)


def test_ranked_ties_fall_by_the_seed_not_by_dict_order():
    """All scores equal: ranked is the uniform draw itself, whatever order the scores come in."""
    scenes = [f's{i // 10}' for i in range(100)]
    groups = {i: {'Target'} for i in range(0, 100, 3)}
    scores = {i: {'truck': 0.5} for i in groups}
    backwards = {i: scores[i] for i in reversed(list(scores))}
    for seed in (0, 1):
        uniform = select_mined(groups, scenes, SubsetSpec(seed=seed, selection='uniform'))
        for given in (scores, backwards):
            ranked = select_mined(groups, scenes, SubsetSpec(seed=seed, selection='ranked'), given)
            assert (ranked.indices, ranked.reasons) == (uniform.indices, uniform.reasons)
    assert (
        select_mined(groups, scenes, SubsetSpec(seed=0, selection='ranked'), scores).indices
        != select_mined(groups, scenes, SubsetSpec(seed=1, selection='ranked'), scores).indices
    )


def test_quota_splits_target_slots_evenly_and_passes_unused_shares_on():
    """'a' is frequent and strong, 'b' has 5 candidates, 'c' one. Of 12 slots, an even share is 4
    each: 'c' can use 1, so 3 go back; 'b' takes one more and runs out; 'a' takes the rest."""
    groups, scores = {}, {}
    for i in range(20):
        groups[i], scores[i] = {'Target'}, {'a': 0.9 - 0.01 * i}
    for i in range(20, 25):
        groups[i], scores[i] = {'Target'}, {'b': 0.5 - 0.01 * i}
    groups[25], scores[25] = {'Target'}, {'c': 0.1}
    scenes = [f's{i}' for i in range(120)]
    plain = select_mined(groups, scenes, SubsetSpec(0.1, 0.1, selection='ranked'), scores)
    assert {c for c, _ in plain.chosen_by.values()} == {'a'}, 'without a quota the frequent concept fills every slot'
    quota = select_mined(groups, scenes, SubsetSpec(0.1, 0.1, selection='ranked', concept_quota=True), scores)
    held = {}
    for concept, _ in quota.chosen_by.values():
        held[concept] = held.get(concept, 0) + 1
    assert held == dict(a=6, b=5, c=1)
    assert sorted(i for i, (c, _) in quota.chosen_by.items() if c == 'a') == list(range(6)), 'best of each first'


@pytest.fixture(scope='module')
def every_concept_a_target(train_mining, tmp_path_factory):
    """The toy mining outputs regrouped, with the mining's own grouping, as if every concept the toy
    models found were a target: several target concepts of very different frequency."""
    mining_dir = str(tmp_path_factory.mktemp('regrouped') / 'mining')
    os.makedirs(mining_dir)
    for name in MINING_FILES[1:]:
        shutil.copy(os.path.join(train_mining, name), mining_dir)
    table = pq.read_table(os.path.join(train_mining, 'concepts.parquet'))
    found = sorted(set(table.column('top_concept').to_pylist()))
    groups = assign_groups(table.column('top_concept').to_pylist(), ConceptVocabulary(found, found, ()))
    table = table.set_column(table.schema.get_field_index('group'), 'group', pa.array(groups))
    pq.write_table(table, os.path.join(mining_dir, 'concepts.parquet'))
    return mining_dir


def test_quota_spreads_target_slots_across_concepts(toy_world, every_concept_a_target, tmp_path):
    root, _ = toy_world
    concepts = _concepts(every_concept_a_target)
    candidates = concepts.groupby('top_concept').sample_token.agg(set)
    spec = SubsetSpec(0.3, 0.1, selection='ranked', concept_quota=True)
    quota = build_subsets(every_concept_a_target, os.path.join(root, TRAIN), spec, out_dir=str(tmp_path / 'q'))
    plain = build_subsets(
        every_concept_a_target,
        os.path.join(root, TRAIN),
        dataclasses.replace(spec, concept_quota=False),
        out_dir=str(tmp_path / 'p'),
    )
    n_target = round(0.3 * quota['num_train_samples'])
    assert len(candidates) >= 2 and n_target >= len(candidates) and quota['reasons']['target'] == n_target
    held = quota['target_slots_per_concept']
    assert set(held) == set(candidates.index), 'every target concept gets a slot'
    taken = {e['sample_token'] for e in _target_entries(quota)}
    still_open = [c for c in held if candidates[c] - taken]
    assert all(held[c] >= max(held.values()) - 1 for c in still_open), 'none holds more than one above another'
    assert max(held.values()) <= max(plain['target_slots_per_concept'].values())
    assert len(held) >= len(plain['target_slots_per_concept'])
    for entry in _target_entries(quota):  # each slot went to that concept's strongest candidates
        assert entry['sample_token'] in candidates[entry['concept']]


# -- coreset -------------------------------------------------------------------------------------


def _sample_embeddings(train_mining, root):
    tokens = [info['token'] for info in _load(os.path.join(root, TRAIN))['data_list']]
    crops = pq.read_table(os.path.join(train_mining, 'crops.parquet')).column('sample_token').to_pylist()
    embeddings = np.load(os.path.join(train_mining, 'embeddings.npy'))
    return tokens, crops, embeddings


def test_sample_embeddings_are_normalised_crop_means_and_the_centroid_without_crops(toy_world, train_mining):
    root, _ = toy_world
    tokens, crops, embeddings = _sample_embeddings(train_mining, root)
    position = {t: i for i, t in enumerate(tokens)}
    out = sample_embeddings([position[t] for t in crops], embeddings, len(tokens))
    for i in (0, len(tokens) // 2, len(tokens) - 1):
        rows = embeddings[[k for k, t in enumerate(crops) if t == tokens[i]]]
        assert len(rows) and np.allclose(out[i], rows.mean(0) / np.linalg.norm(rows.mean(0)), atol=1e-6)
    # a sample without crops, appended: the centroid of the others
    grown = sample_embeddings([position[t] for t in crops], embeddings, len(tokens) + 1)
    assert np.allclose(grown[-1], out.mean(0), atol=1e-6) and np.allclose(grown[:-1], out)


def _kcenter_reference(x, first, size):
    """k-center greedy by brute force: all pairwise distances, then the farthest row each step."""
    distances = cdist(x, x)
    chosen = [first]
    while len(chosen) < size:
        chosen.append(int(np.argmax(distances[:, chosen].min(1))))
    return sorted(chosen), distances


def _radius(distances, chosen):
    """How far the farthest sample is from its nearest chosen sample."""
    return distances[:, chosen].min(1).max()


def test_coreset_is_k_center_greedy_seeded_and_sized(toy_world, train_mining, built):
    root, _ = toy_world
    out, manifest = built
    tokens, crops, embeddings = _sample_embeddings(train_mining, root)
    position = {t: i for i, t in enumerate(tokens)}
    x = sample_embeddings([position[t] for t in crops], embeddings, len(tokens))
    size = manifest['num_selected']
    coreset = _load(os.path.join(out, 'nuscenes_infos_train_coreset20.pkl'))
    assert len(coreset['data_list']) == size == manifest['num_coreset'] == len(select_random(len(tokens), size, 0))
    assert [i['sample_idx'] for i in coreset['data_list']] == list(range(size))
    assert set(manifest['instances_per_class']['coreset']) == set(manifest['instances_per_class']['full'])
    written = [position[i['token']] for i in coreset['data_list']]
    assert written == select_coreset(x, size, 0)
    results = set()
    for seed in range(5):
        first = int(np.random.default_rng(seed).integers(len(x)))
        reference, _ = _kcenter_reference(x.astype(np.float64), first, size)
        got = select_coreset(x, size, seed)
        assert got == reference == select_coreset(x, size, seed)
        results.add(tuple(got))
    assert len(results) > 1, 'the seed picks the first centre'


def test_coreset_covers_the_embedding_space_better_than_random(toy_world, train_mining, built):
    root, _ = toy_world
    out, manifest = built
    tokens, crops, embeddings = _sample_embeddings(train_mining, root)
    position = {t: i for i, t in enumerate(tokens)}
    x = sample_embeddings([position[t] for t in crops], embeddings, len(tokens))
    distances = cdist(x, x)
    indices = lambda name: [position[i['token']] for i in _load(os.path.join(out, name))['data_list']]  # noqa: E731
    coreset = _radius(distances, indices('nuscenes_infos_train_coreset20.pkl'))
    assert coreset < _radius(distances, indices('nuscenes_infos_train_random20.pkl'))
    draws = [_radius(distances, select_random(len(x), manifest['num_coreset'], seed)) for seed in range(20)]
    assert coreset < min(draws)


def test_coreset_copes_with_duplicates_and_sizes_up_to_n():
    x = np.repeat(np.eye(3, dtype=np.float32), 4, axis=0)  # three points, four copies each
    assert len({tuple(x[i]) for i in select_coreset(x, 3, seed=7)}) == 3
    assert select_coreset(x, 50, seed=7) == list(range(12)) and select_coreset(x, 0, seed=7) == []


def test_build_subsets_needs_the_embeddings(toy_world, train_mining, tmp_path):
    root, _ = toy_world
    for name in ('concepts.parquet', 'frames.parquet'):
        shutil.copy(os.path.join(train_mining, name), tmp_path)
    with pytest.raises(FileNotFoundError, match='coreset'):
        build_subsets(str(tmp_path), os.path.join(root, TRAIN), SubsetSpec())


# -- the subset arms' configs --------------------------------------------------------------------


def _hook_spec(cfg):
    (hook,) = (h for h in cfg.custom_hooks if h.type == 'DataMiningHook')
    settings = dict(Config.fromfile(hook.mining_config).subsets, **(hook.get('subsets') or {}))
    return hook, SubsetSpec(**{f.name: settings[f.name] for f in dataclasses.fields(SubsetSpec) if f.name in settings})


@pytest.mark.parametrize(
    'name, base',
    [
        ('centerpoint_coreset20.py', 'centerpoint_mined20.py'),
        ('centerpoint_coreset20_toy.py', 'centerpoint_mined20_toy.py'),
        ('centerpoint_mined20_uniform.py', 'centerpoint_mined20.py'),
        ('centerpoint_mined20_uniform_toy.py', 'centerpoint_mined20_toy.py'),
    ],
)
def test_new_subset_configs_train_on_what_their_hook_builds(name, base):
    cfg, base_cfg = (Config.fromfile(os.path.join(REPO, 'configs', n)) for n in (name, base))
    dataset = cfg.train_dataloader.dataset.dataset
    hook, spec = _hook_spec(cfg)
    assert dataset.type == 'SubsetNuScenesDataset' and dataset.mining_dir == hook.work_dir
    assert dataset.subset == (spec.coreset_name if 'coreset' in name else spec.name)
    # same mining dir, and one line apart from the base: the subset (and, for uniform, the rule)
    assert hook.work_dir == _hook_spec(base_cfg)[0].work_dir
    assert {k: v for k, v in dataset.items() if k != 'subset'} == {
        k: v for k, v in base_cfg.train_dataloader.dataset.dataset.items() if k != 'subset'
    }
    if 'uniform' in name:
        assert spec.selection == 'uniform' and spec.name != _hook_spec(base_cfg)[1].name


@pytest.mark.parametrize('name', ['centerpoint_full_rare_sampler.py', 'centerpoint_full_rare_sampler_toy.py'])
def test_full_rare_sampler_configs_read_the_whole_train_set(name):
    cfg = Config.fromfile(os.path.join(REPO, 'configs', name))
    full = Config.fromfile(os.path.join(REPO, 'configs', name.replace('_rare_sampler', '')))
    dataset = cfg.train_dataloader.dataset
    hook, _ = _hook_spec(cfg)
    assert cfg.train_dataloader.sampler == dict(type='RareConceptSampler')
    assert dataset.type == 'SubsetNuScenesDataset' and dataset.subset is None and dataset.mining_dir == hook.work_dir
    assert 'db_info_path' not in dataset
    assert dataset.ann_file == full.train_dataloader.dataset.dataset.ann_file
    assert dataset.pipeline == full.train_dataloader.dataset.dataset.pipeline  # the full GT database


def test_rare_sampler_reads_the_mining_dir_of_a_full_train_set(toy_world, train_mining):
    from conceptminer3d.samplers import RareConceptSampler
    from conceptminer3d.samplers.rare_concept_sampler import DEFAULT_GROUP_WEIGHTS

    root, _ = toy_world
    dataset = _subset_dataset(toy_world, ann_file=TRAIN, mining_dir=train_mining, subset=None)
    train = _load(os.path.join(root, TRAIN))['data_list']
    assert [dataset.get_data_info(i)['token'] for i in range(len(dataset))] == [info['token'] for info in train]
    assert _object_sample_info_path(dataset) == os.path.join(root, 'nuscenes_dbinfos_train.pkl')
    sampler = RareConceptSampler(dataset, seed=0)
    concepts = _concepts(train_mining)
    best = concepts.assign(w=concepts.group.map(DEFAULT_GROUP_WEIGHTS)).groupby('sample_token').w.max()
    assert sampler.weights.tolist() == [best.get(info['token'], 1.0) for info in train]
    assert sampler.num_mined == concepts.sample_token.nunique() and len(sampler) == len(train)
