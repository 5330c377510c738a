"""Mined subsets: sizes, Target share, scene mode, determinism, GT database filtering."""
import hashlib
import os
import pickle

import pyarrow.parquet as pq
import pytest

from conceptminer3d.subsets import SubsetSpec, build_subsets, select_mined

TRAIN = 'nuscenes_infos_train.pkl'


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
    manifest = build_subsets(train_mining, os.path.join(root, TRAIN), SubsetSpec(0.1, 0.1, 'sample', 0),
                             os.path.join(root, 'nuscenes_dbinfos_train.pkl'), out)
    return out, manifest


def test_sizes_are_exact_and_target_slots_hold_target_crops(toy_world, train_mining, built):
    root, _ = toy_world
    out, manifest = built
    train = _load(os.path.join(root, TRAIN))
    n = len(train['data_list'])
    mined = _load(os.path.join(out, 'nuscenes_infos_train_random10_target10.pkl'))
    baseline = _load(os.path.join(out, 'nuscenes_infos_train_random20.pkl'))
    assert len(mined['data_list']) == round(0.1 * n) + round(0.1 * n) == len(baseline['data_list'])
    assert manifest['reasons'].get('target', 0) + manifest['reasons'].get('rare_topup', 0) \
        + manifest['reasons'].get('fill_topup', 0) == round(0.1 * n)
    concepts = pq.read_table(os.path.join(train_mining, 'concepts.parquet')).to_pandas()
    target_samples = set(concepts.sample_token[concepts.group == 'Target'])
    assert manifest['samples_with_group']['Target'] == len(target_samples)
    for entry in manifest['selected']:
        if entry['reason'] == 'target':
            assert entry['sample_token'] in target_samples
            assert any(c['group'] == 'Target' for c in entry['crops'])
    if len(target_samples) >= round(0.1 * n):
        assert manifest['reasons']['target'] == round(0.1 * n) and not manifest['target_shortfall_filled_from']
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
        build_subsets(train_mining, os.path.join(root, TRAIN), SubsetSpec(0.1, 0.1, 'sample', seed),
                      os.path.join(root, 'nuscenes_dbinfos_train.pkl'), again)
        for name in ('nuscenes_infos_train_random10_target10.pkl', 'nuscenes_infos_train_random20.pkl',
                     'nuscenes_dbinfos_train_random10_target10.pkl'):
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
    assert sum(map(len, sub_db.values())) < sum(map(len, full_db.values())) / 3


def test_scene_mode_keeps_whole_scenes(toy_world, train_mining, tmp_path):
    root, _ = toy_world
    manifest = build_subsets(train_mining, os.path.join(root, TRAIN), SubsetSpec(0.2, 0.2, 'scene', 0),
                             out_dir=str(tmp_path))
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


@pytest.mark.parametrize('kwargs', [dict(target_ratio=0.0, random_ratio=0.0), dict(target_ratio=0.8, random_ratio=0.3),
                                    dict(unit='frame')])
def test_bad_specs_are_refused(kwargs):
    with pytest.raises(ValueError):
        SubsetSpec(**kwargs)


def test_selection_is_a_pure_function_of_groups():
    groups = {i: {'Target'} for i in range(0, 100, 7)} | {i: {'Rare'} for i in range(3, 100, 11)}
    scenes = [f's{i // 10}' for i in range(100)]
    a = select_mined(groups, scenes, SubsetSpec(0.1, 0.1, 'sample', 5))
    b = select_mined(groups, scenes, SubsetSpec(0.1, 0.1, 'sample', 5))
    assert a.indices == b.indices and len(a.indices) == 20
    assert all('Target' in groups[i] for i, r in a.reasons.items() if r == 'target')
