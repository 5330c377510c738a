"""tools/evaluate_selection.py and subsets.evaluation: the rare objects each subset holds, counted
from the 3D labels and set against random draws and the label oracle; the toy world's distractors;
clear errors."""

import copy
import json
import os
import pickle
import shutil
import subprocess
import sys

import numpy as np
import pandas as pd
import pyarrow.parquet as pq
import pytest

from conceptminer3d.subsets import SubsetSpec, build_subsets, subset_paths
from conceptminer3d.subsets.evaluation import NoLabelsError, evaluate_selection
from conceptminer3d.subsets.train_labels import label_counts
from conceptminer3d_toy.world import ToyWorldConfig, build_toy_dataset
from conceptminer3d_toy.world.distractors import sample_decoys

from helpers import REPO

TRAIN = 'nuscenes_infos_train.pkl'
SPECS = (
    SubsetSpec(0.2, 0.2, seed=1, selection='ranked'),
    SubsetSpec(0.2, 0.2, seed=1, selection='coverage'),
    SubsetSpec(0.2, 0.2, unit='scene', seed=2, selection='uniform'),
)


def _load(path):
    with open(path, 'rb') as f:
        return pickle.load(f)


@pytest.fixture(scope='module')
def evaluated(toy_world, train_mining, tmp_path_factory):
    """A copy of the toy mining outputs with subsets of three rules, and their evaluation."""
    root, _ = toy_world
    mining_dir = str(tmp_path_factory.mktemp('selection_eval') / 'mining')
    os.makedirs(mining_dir)
    for name in ('concepts.parquet', 'frames.parquet', 'crops.parquet', 'embeddings.npy', 'manifest.json'):
        shutil.copy(os.path.join(train_mining, name), mining_dir)
    for spec in SPECS:
        build_subsets(mining_dir, os.path.join(root, TRAIN), spec)
    return mining_dir, evaluate_selection(mining_dir, draws=400, seed=0)


def _kept_counts(path):
    """Boxes per class as NuScenesDataset(use_valid_flag=True) keeps them, written out independently."""
    infos = _load(path)
    names = {v: k for k, v in infos['metainfo']['categories'].items()}
    counts = {}
    for info in infos['data_list']:
        for inst in info['instances']:
            if inst['bbox_3d_isvalid']:
                name = names[inst['bbox_label_3d']]
                counts[name] = counts.get(name, 0) + 1
    return counts


def test_every_subset_is_counted_as_training_counts_it(toy_world, evaluated):
    root, _ = toy_world
    mining_dir, result = evaluated
    full = _kept_counts(os.path.join(root, TRAIN))
    assert result['train']['instances'] == {c: full.get(c, 0) for c in result['classes']}
    assert result['classes'] == sorted(result['classes'], key=lambda c: full.get(c, 0))  # rarest first (stable)
    assert result['rare_classes'] == [c for c in result['classes'] if full.get(c, 0)][:5]
    names = (
        {spec.name for spec in SPECS} | {spec.baseline_name for spec in SPECS} | {spec.coreset_name for spec in SPECS}
    )
    assert set(result['subsets']) == names
    for name, entry in result['subsets'].items():
        counts = _kept_counts(subset_paths(mining_dir, name)[0])
        for c in result['classes']:
            got = entry['groups'][c]
            assert got['instances']['value'] == counts.get(c, 0), (name, c)
            assert got['recall'] == (pytest.approx(counts.get(c, 0) / full[c], abs=1e-4) if full.get(c) else None)
        rare = entry['groups']['rare']['instances']['value']
        assert rare == sum(counts.get(c, 0) for c in result['rare_classes'])


def test_samples_and_scenes_holding_a_class(toy_world, evaluated):
    root, _ = toy_world
    mining_dir, result = evaluated
    name = SPECS[1].name
    infos = _load(subset_paths(mining_dir, name)[0])
    frames = pq.read_table(os.path.join(mining_dir, 'frames.parquet')).to_pandas()
    scene_of = dict(zip(frames.sample_token, frames.scene_token))
    names = {v: k for k, v in infos['metainfo']['categories'].items()}
    holding = pd.DataFrame(
        [
            (info['token'], scene_of[info['token']], names[inst['bbox_label_3d']])
            for info in infos['data_list']
            for inst in info['instances']
            if inst['bbox_3d_isvalid']
        ],
        columns=['sample', 'scene', 'cls'],
    )
    for c in result['classes']:
        of_c = holding[holding.cls == c]
        entry = result['subsets'][name]['groups'][c]
        assert entry['samples']['value'] == of_c['sample'].nunique()
        assert entry['scenes']['value'] == of_c['scene'].nunique()


def test_random_draws_match_the_hypergeometric_expectation(toy_world, evaluated):
    root, _ = toy_world
    mining_dir, result = evaluated
    n = result['train']['samples']
    for name in (SPECS[0].name, SPECS[0].baseline_name):
        entry = result['subsets'][name]
        assert entry['unit'] == 'sample'
        size = entry['samples']
        for c, total in result['train']['instances'].items():
            drawn = entry['groups'][c]['instances']['random']
            expected = size / n * total
            # the mean of 400 draws lies within four standard errors of the expectation (the draws'
            # standard deviation read off their 95% interval)
            std = (drawn['high'] - drawn['low']) / 3.92
            assert abs(drawn['mean'] - expected) <= 4 * std / np.sqrt(400) + 0.01, (name, c)
            assert drawn['low'] <= drawn['mean'] <= drawn['high']


def test_scene_subsets_are_compared_with_whole_scene_draws(evaluated):
    _, result = evaluated
    scene = result['subsets'][SPECS[2].name]
    assert scene['unit'] == 'scene'
    assert result['subsets'][SPECS[2].baseline_name]['unit'] == 'sample'  # the baseline is drawn by sample


def test_oracle_beats_random_and_the_share_is_of_its_value(evaluated):
    _, result = evaluated
    for name, entry in result['subsets'].items():
        oracle = entry['oracle']
        assert oracle['samples'] == entry['samples'] or entry['unit'] == 'scene'
        assert oracle['share_of_value'] == pytest.approx(oracle['subset_value'] / oracle['value'], abs=1e-3)
        assert oracle['rare_instances'] >= entry['groups']['rare']['instances']['random']['mean'], name
    mined = result['subsets'][SPECS[0].name]['oracle']
    assert mined['split'].startswith('random half'), 'a mined subset keeps its own random half for the oracle'


def test_the_same_seed_gives_the_same_evaluation(evaluated):
    mining_dir, result = evaluated
    again = evaluate_selection(mining_dir, draws=400, seed=0, out_file=None)
    assert json.dumps(again, sort_keys=True) == json.dumps(result, sort_keys=True)
    with open(os.path.join(mining_dir, 'selection_eval.json')) as f:
        assert json.load(f) == json.loads(json.dumps(result))


def test_false_positive_slots_are_counted_by_distractor(toy_world, evaluated):
    """A Target slot in a sample with no box of its concept is a false positive; which distractor
    the decoys name there says why."""
    root, _ = toy_world
    mining_dir, result = evaluated
    name = SPECS[1].name
    with open(os.path.join(mining_dir, 'subsets', f'subset_manifest_{name}.json')) as f:
        slots = [e for e in json.load(f)['selected'] if e['reason'] == 'target']
    infos = _load(os.path.join(root, TRAIN))
    classes, _, every = label_counts(infos)
    row = {info['token']: i for i, info in enumerate(infos['data_list'])}
    checked = [e for e in slots if e['concept'] in classes]
    fake = [e for e in checked if not every[row[e['sample_token']], classes.index(e['concept'])]]
    assert fake and len(fake) < len(checked), 'the random toy models name some slots right and some wrong'
    decoys = {e['sample_token']: {e['concept']: ['poster']} for e in fake[:1]}
    counts = evaluate_selection(mining_dir, draws=10, decoys=decoys, out_file=None)['subsets'][name]['false_positives']
    assert counts['slots'] == len(slots)
    assert counts['real'] == len(checked) - len(fake) and counts['false_positive'] == len(fake)
    assert counts['unchecked'] == len(slots) - len(checked)
    assert counts['poster'] == min(1, len(fake)) and counts['other'] == len(fake) - counts['poster']


def _tool(*args, **kwargs):
    return subprocess.run(
        [sys.executable, os.path.join(REPO, 'tools', 'evaluate_selection.py'), *args],
        capture_output=True,
        text=True,
        **kwargs,
    )


def test_tool_prints_the_table_and_writes_json_and_plot(evaluated):
    mining_dir, result = evaluated
    os.remove(os.path.join(mining_dir, 'selection_eval.json'))
    run = _tool(mining_dir, '--draws', '400', '--no-report')
    assert run.returncode == 0, run.stderr
    assert 'rare instances' in run.stdout and SPECS[1].name in run.stdout
    with open(os.path.join(mining_dir, 'selection_eval.json')) as f:
        assert json.load(f)['subsets'] == json.loads(json.dumps(result['subsets']))
    assert os.path.getsize(os.path.join(mining_dir, 'selection_eval.png')) > 1000


def test_a_pickle_without_labels_is_one_clear_line(toy_world, evaluated, tmp_path):
    root, _ = toy_world
    mining_dir, _ = evaluated
    infos = _load(os.path.join(root, TRAIN))
    unlabelled = copy.deepcopy(infos)
    for info in unlabelled['data_list']:
        info['instances'] = []
    path = str(tmp_path / 'test_like.pkl')
    with open(path, 'wb') as f:
        pickle.dump(unlabelled, f)
    with pytest.raises(NoLabelsError):
        evaluate_selection(mining_dir, path, out_file=None)
    for args in ([path], [str(tmp_path / 'missing.pkl')]):
        run = _tool(mining_dir, '--ann-file', *args, '--no-report')
        assert run.returncode == 2
        assert run.stderr.startswith('error: ') and 'Traceback' not in run.stderr, run.stderr
        assert len(run.stderr.strip().splitlines()) == 1


@pytest.fixture(scope='module')
def distractor_world(tmp_path_factory):
    root = str(tmp_path_factory.mktemp('distractors') / 'world')
    config = ToyWorldConfig(
        version='v1.0-trainval',
        train_scenes=3,
        val_scenes=1,
        samples_per_scene=3,
        image_width=320,
        image_height=180,
        points_per_frame=2000,
        class_mix='nuscenes',
        separate_objects=True,
        lookalike_rate=3.0,
        posters_per_scene=4.0,
        seed=5,
    )
    build_toy_dataset(root, config, progress=False)
    return root


def test_decoys_name_the_lookalikes_and_the_boards_in_view(distractor_world):
    root = distractor_world
    with open(os.path.join(root, 'toy_world.json')) as f:
        world = json.load(f)
    infos = _load(os.path.join(root, TRAIN))
    decoys = sample_decoys(root, infos)
    lookalikes = {
        d['instance_token']: d['look'] for ds in world['distractors'].values() for d in ds if d['kind'] == 'lookalike'
    }
    assert lookalikes and any('poster' in k for looks in decoys.values() for k in looks.values())
    with open(os.path.join(root, 'v1.0-trainval', 'sample_annotation.json')) as f:
        annotations = json.load(f)
    train_tokens = {info['token'] for info in infos['data_list']}
    for a in annotations:
        if a['instance_token'] in lookalikes and a['sample_token'] in train_tokens:
            assert 'lookalike' in decoys[a['sample_token']][lookalikes[a['instance_token']]]
    # a board is reported only where the sample's cameras can see it: near the ego, never far away
    with open(os.path.join(root, 'v1.0-trainval', 'ego_pose.json')) as f:
        poses = {p['token']: p['translation'] for p in json.load(f)}
    with open(os.path.join(root, 'v1.0-trainval', 'sample_data.json')) as f:
        ego_of = {s['sample_token']: poses[s['ego_pose_token']] for s in json.load(f) if s['is_key_frame']}
    with open(os.path.join(root, 'v1.0-trainval', 'sample.json')) as f:
        samples = json.load(f)
    with open(os.path.join(root, 'v1.0-trainval', 'scene.json')) as f:
        scene_name = {s['token']: s['name'] for s in json.load(f)}
    boards_near = 0
    for sample in samples:
        if sample['token'] not in train_tokens:
            continue
        posters = [d for d in world['distractors'].get(scene_name[sample['scene_token']], []) if d['kind'] == 'poster']
        ego = np.asarray(ego_of[sample['token']][:2])
        distance = [np.hypot(*(np.asarray(d['translation'][:2]) - ego)) for d in posters]
        near = {d['look'] for d, r in zip(posters, distance) if r < 30}
        within_reach = {d['look'] for d, r in zip(posters, distance) if r < 200}
        seen = {look for look, kinds in decoys.get(sample['token'], {}).items() if 'poster' in kinds}
        assert near <= seen <= within_reach, sample['token']
        boards_near += len(near)
    assert boards_near, 'the world must put boards near the ego for this test'
