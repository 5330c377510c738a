"""selection='coverage': the greedy against brute force and a plain (non-lazy) greedy, invariance
to the order of the crops, determinism, shortfalls, scene mode, and what the manifest records."""

import itertools
import json
import os
import shutil

import numpy as np
import pandas as pd
import pyarrow.parquet as pq
import pytest

from conceptminer3d.subsets import SubsetSpec, build_subsets, select_mined
from conceptminer3d.subsets.builder import subset_manifest_path
from conceptminer3d.subsets.coverage import SqrtCoverage, sqrt_coverage_value
from conceptminer3d.subsets.evidence import embedding_clusters, rarity_weights, target_evidence

TRAIN = 'nuscenes_infos_train.pkl'


def _value(X, weights, rows):
    return sqrt_coverage_value(np.asarray(X)[list(rows)].sum(axis=0), weights) if len(rows) else 0.0


def _plain_greedy(X, weights, budget, costs, overshoot_first=False):
    """The textbook cost-benefit greedy: every gain recomputed at every step; ties to the lowest row."""
    chosen, spent = [], 0.0
    while spent < budget:
        best, best_ratio = None, 0.0
        for u in range(len(X)):
            if u in chosen or (spent + costs[u] > budget and not (overshoot_first and not chosen)):
                continue
            ratio = (_value(X, weights, chosen + [u]) - _value(X, weights, chosen)) / costs[u]
            if ratio > best_ratio + 1e-12:
                best, best_ratio = u, ratio
        if best is None:
            break
        chosen.append(best)
        spent += costs[best]
    return chosen


@pytest.mark.parametrize('seed', range(12))
def test_greedy_is_the_plain_greedy_and_within_its_guarantee_of_brute_force(seed):
    rng = np.random.default_rng(seed)
    n, features, budget = 9, 4, 3
    X = rng.random((n, features)) * (rng.random((n, features)) < 0.5)  # sparse, as Target evidence is
    weights = rng.random(features) * 3
    fit = SqrtCoverage(budget, weights).fit(X)
    assert list(fit.ranking_) == _plain_greedy(X, weights, budget, np.ones(n))
    best = max(_value(X, weights, rows) for rows in itertools.combinations(range(n), budget))
    assert fit.value_ == pytest.approx(_value(X, weights, fit.ranking_))
    assert fit.value_ >= (1 - 1 / np.e) * best - 1e-12
    assert np.all(np.diff(fit.gains_) <= 1e-12), 'submodular: a greedy pick never gains more than the one before'
    assert fit.gains_.sum() == pytest.approx(fit.value_)


@pytest.mark.parametrize('seed', range(6))
def test_scene_costs_are_greedy_by_gain_per_sample_within_the_budget(seed):
    rng = np.random.default_rng(100 + seed)
    n = 10
    X = rng.random((n, 3)) * (rng.random((n, 3)) < 0.6)
    costs = rng.integers(1, 5, n).astype(float)
    weights = np.array([1.0, 2.0, 0.5])
    for overshoot in (False, True):
        fit = SqrtCoverage(7, weights, overshoot_first=overshoot).fit(X, costs)
        assert list(fit.ranking_) == _plain_greedy(X, weights, 7, costs, overshoot)
        assert fit.costs_.sum() <= 7 or (overshoot and len(fit.ranking_) == 1)


def test_initial_totals_count_as_already_chosen():
    X = np.array([[4.0, 0.0], [0.0, 1.0], [1.0, 0.0]])
    weights = np.ones(2)
    assert list(SqrtCoverage(1, weights).fit(X).ranking_) == [0]
    # with 100 of feature 0 already in the set, feature 1 is worth more
    fit = SqrtCoverage(1, weights).fit(X, initial_totals=[100.0, 0.0])
    assert list(fit.ranking_) == [1] and fit.value_ == pytest.approx(10 + 1)


def test_units_without_evidence_are_never_picked():
    fit = SqrtCoverage(5, [1.0]).fit(np.array([[0.0], [2.0], [0.0]]))
    assert list(fit.ranking_) == [1]


def test_bad_inputs_are_refused():
    with pytest.raises(ValueError, match='non-negative'):
        SqrtCoverage(1, [1.0]).fit(np.array([[-1.0]]))
    with pytest.raises(ValueError, match='weights'):
        SqrtCoverage(1, [1.0, 2.0]).fit(np.ones((2, 1)))


def _crops_world():
    """60 samples in 12 scenes; target concepts of very different frequency and strength."""
    rng = np.random.default_rng(0)
    rows = []
    for i in range(60):
        for concept, p in (('truck', 0.6), ('bicycle', 0.15), ('trailer', 0.08)):
            for _ in range(rng.binomial(3, p)):
                rows.append((i, concept, float(rng.uniform(0.2, 0.9))))
    crops = pd.DataFrame(rows, columns=['position', 'concept', 'score'])
    scenes = [f's{i // 5}' for i in range(60)]
    return crops, scenes


def _coverage(crops, scenes, spec):
    weights = rarity_weights(crops.concept)
    evidence = target_evidence(crops.position, crops.concept, crops.score, len(scenes), weights)
    groups = {int(i): {'Target'} for i in crops.position}
    return select_mined(groups, scenes, spec, evidence=evidence)


def test_coverage_takes_frames_with_several_rare_objects_where_ranking_takes_the_single_best_crop():
    """Ten frames with one strong bicycle; five with a bicycle, a trailer and a construction vehicle,
    each a little weaker. Five slots: ranked takes the strongest single crops, coverage the five
    frames that hold three rare objects each."""
    weights = {'bicycle': 1.0, 'trailer': 1.0, 'construction_vehicle': 1.0}
    crops = [(i, 'bicycle', 0.9) for i in range(10)]
    crops += [(i, c, 0.8) for i in range(10, 15) for c in weights]
    crops = pd.DataFrame(crops, columns=['position', 'concept', 'score'])
    scenes = [f's{i}' for i in range(50)]
    groups = {i: {'Target'} for i in range(15)}
    spec = dict(target_ratio=0.1, random_ratio=0.0)
    evidence = target_evidence(crops.position, crops.concept, crops.score, 50, weights)
    scores = {i: {c: s for _, c, s in g.itertuples(index=False)} for i, g in crops.groupby('position')}
    ranked = select_mined(groups, scenes, SubsetSpec(**spec, selection='ranked'), scores)
    covered = select_mined(groups, scenes, SubsetSpec(**spec, selection='coverage'), evidence=evidence)
    assert all(i < 10 for i in ranked.indices)
    assert covered.indices == [10, 11, 12, 13, 14]
    record = covered.coverage
    assert record['value'] == pytest.approx(3 * np.sqrt(5 * 0.8), abs=1e-5)
    assert {c: e['evidence'] for c, e in record['concepts'].items()} == pytest.approx(dict.fromkeys(weights, 4.0))
    assert sum(e['slots'] for e in record['concepts'].values()) == 5
    assert record['value'] == pytest.approx(sum(record['gains']), abs=1e-4)
    assert all(reason == 'target' for reason in covered.reasons.values())


def test_coverage_holds_more_of_the_rarest_concept_than_ranking_by_the_best_crop():
    crops, scenes = _crops_world()
    chosen = _coverage(crops, scenes, SubsetSpec(0.2, 0.0, selection='coverage'))
    assert chosen.coverage['picks'] == len(chosen.indices) == round(0.2 * 60)
    held = {c: e['evidence'] for c, e in chosen.coverage['concepts'].items()}
    assert all(held.values()), held
    weights = rarity_weights(crops.concept)
    scores = {}
    for i, c, score in crops.itertuples(index=False):
        scores.setdefault(i, {})[c] = max(scores.get(i, {}).get(c, 0.0), score * weights[c])
    ranked = select_mined({i: {'Target'} for i in scores}, scenes, SubsetSpec(0.2, 0.0, selection='ranked'), scores)
    count = lambda rows, c: int(((crops.concept == c) & crops.position.isin(rows)).sum())  # noqa: E731
    assert count(chosen.indices, 'trailer') >= count(ranked.indices, 'trailer')
    assert sum(count(chosen.indices, c) for c in ('trailer', 'bicycle')) > sum(
        count(ranked.indices, c) for c in ('trailer', 'bicycle')
    )


def test_coverage_does_not_depend_on_the_order_of_the_crops_and_is_seeded():
    crops, scenes = _crops_world()
    for unit in ('sample', 'scene'):
        spec = SubsetSpec(0.2, 0.1, unit=unit, selection='coverage', seed=3)
        first = _coverage(crops, scenes, spec)
        shuffled = _coverage(crops.sample(frac=1.0, random_state=1), scenes, spec)
        assert (first.indices, first.reasons, first.chosen_by) == (
            shuffled.indices,
            shuffled.reasons,
            shuffled.chosen_by,
        )
    # equal evidence everywhere: the seed decides the ties, and with it the subset
    flat = pd.DataFrame(dict(position=range(0, 60, 2), concept='truck', score=0.5))
    picks = {
        tuple(_coverage(flat, scenes, SubsetSpec(0.1, 0.0, selection='coverage', seed=s)).indices) for s in range(4)
    }
    assert len(picks) > 1


def test_coverage_shortfall_is_topped_up_from_rare_then_the_rest():
    scenes = [f's{i}' for i in range(50)]
    crops = pd.DataFrame(dict(position=[1, 2], concept=['bicycle', 'trailer'], score=[0.5, 0.7]))
    evidence = target_evidence(crops.position, crops.concept, crops.score, 50, {'bicycle': 3.0, 'trailer': 4.0})
    groups = {1: {'Target'}, 2: {'Target'}, 3: {'Rare'}, 4: {'Rare'}}
    chosen = select_mined(groups, scenes, SubsetSpec(0.2, 0.0, selection='coverage'), evidence=evidence)
    assert len(chosen.indices) == 10
    assert {i for i, r in chosen.reasons.items() if r == 'target'} == {1, 2}
    assert {i for i, r in chosen.reasons.items() if r == 'rare_topup'} == {3, 4}
    assert chosen.shortfall == dict(rare_topup=2, fill_topup=6)


def test_scene_mode_takes_whole_scenes_up_to_the_quota():
    crops, scenes = _crops_world()
    chosen = _coverage(crops, scenes, SubsetSpec(0.25, 0.0, unit='scene', selection='coverage'))
    taken = {scenes[i] for i in chosen.indices}
    assert sorted(chosen.indices) == [i for i, s in enumerate(scenes) if s in taken]
    assert sum(r == 'target' for r in chosen.reasons.values()) == 15  # three scenes of five: the quota exactly


def test_diversity_clusters_are_seeded_and_spread_the_picks():
    rng = np.random.default_rng(0)
    # one concept, two tight clusters of crop embeddings; cluster A holds the stronger crops
    a = rng.normal([1, 0, 0], 0.01, (20, 3))
    b = rng.normal([0, 1, 0], 0.01, (20, 3))
    embeddings = np.vstack([a, b]).astype(np.float32)
    concepts = np.array(['bicycle'] * 40, dtype=object)
    clusters = embedding_clusters(embeddings, concepts, seed=0, k=2)
    assert len(set(clusters[:20])) == 1 and len(set(clusters[20:])) == 1 and clusters[0] != clusters[20]
    assert (embedding_clusters(embeddings, concepts, seed=0, k=2) == clusters).all()
    scores = np.r_[np.full(20, 0.9), np.full(20, 0.5)]
    positions = np.arange(40)
    scenes = [f's{i}' for i in range(200)]
    groups = {i: {'Target'} for i in range(40)}
    plain = target_evidence(positions, concepts, scores, 200, {'bicycle': 1.0})
    diverse = target_evidence(positions, concepts, scores, 200, {'bicycle': 1.0}, clusters, diversity=1.0)
    spec = dict(target_ratio=0.05, random_ratio=0.0, selection='coverage')
    without = select_mined(groups, scenes, SubsetSpec(**spec), evidence=plain)
    with_clusters = select_mined(groups, scenes, SubsetSpec(**spec, diversity=1.0), evidence=diverse)
    assert all(i < 20 for i in without.indices), 'without the term the stronger cluster takes every slot'
    assert any(i >= 20 for i in with_clusters.indices)


def test_specs_name_and_check_the_coverage_rule():
    assert SubsetSpec(selection='coverage').name == 'random10_target10'  # the default rule
    assert SubsetSpec(diversity=0.5).name == 'random10_target10_diversity50'
    with pytest.raises(ValueError, match='diversity'):
        SubsetSpec(selection='ranked', diversity=0.5)
    with pytest.raises(ValueError, match='concept_quota'):
        SubsetSpec(selection='coverage', concept_quota=True)
    with pytest.raises(ValueError, match='evidence'):
        select_mined({}, ['s'], SubsetSpec(selection='coverage'))


def _expected_evidence(mining_dir):
    """sample token → concept → summed clipped scores of its Target crops, written out independently."""
    concepts = pq.read_table(os.path.join(mining_dir, 'concepts.parquet')).to_pandas()
    target = concepts[concepts.group == 'Target'].assign(score=lambda t: t.top_score.clip(lower=0))
    return target.groupby(['sample_token', 'top_concept']).score.sum()


def test_builder_records_the_coverage_per_concept(toy_world, train_mining, tmp_path):
    root, _ = toy_world
    mining_dir = str(tmp_path / 'mining')
    os.makedirs(mining_dir)
    for name in ('concepts.parquet', 'frames.parquet', 'crops.parquet', 'embeddings.npy'):
        shutil.copy(os.path.join(train_mining, name), mining_dir)
    spec = SubsetSpec(0.1, 0.1, selection='coverage')
    manifest = build_subsets(mining_dir, os.path.join(root, TRAIN), spec)
    expected = _expected_evidence(mining_dir)
    record = manifest['coverage']
    picked = [e for e in manifest['selected'] if e['reason'] == 'target']
    assert len(picked) == record['picks'] == min(round(0.1 * manifest['num_train_samples']), expected.index.levshape[0])
    chosen = {e['sample_token'] for e in picked}
    for concept, entry in record['concepts'].items():
        in_subset = expected[expected.index.get_level_values(0).isin(chosen)]
        assert entry['evidence'] == pytest.approx(
            in_subset.xs(concept, level=1).sum() if concept in in_subset.index.get_level_values(1) else 0.0, abs=1e-3
        )
        assert entry['evidence_available'] == pytest.approx(expected.xs(concept, level=1).sum(), abs=1e-3)
        assert entry['weight'] == pytest.approx(manifest['rarity_weights'][concept], abs=1e-4)
    assert manifest['target_slots_per_concept'] == {c: e['slots'] for c, e in record['concepts'].items() if e['slots']}
    # each mined subset keeps its own manifest beside the last build's
    with open(subset_manifest_path(mining_dir, spec.name)) as f:
        assert json.load(f)['spec'] == manifest['spec']
