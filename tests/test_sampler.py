"""RareConceptSampler: weights, sharding across ranks, fixed length, epoch reseeding.

The mining outputs are written here by hand (the two columns the sampler reads), so every
weight group is present in known numbers whatever the toy models happen to detect.
"""

import os

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

import conceptminer3d.samplers.rare_concept_sampler as sampler_module
from conceptminer3d.mining.contracts import CONCEPTS_FILE
from conceptminer3d.samplers import RareConceptSampler
from conceptminer3d.samplers.rare_concept_sampler import DEFAULT_GROUP_WEIGHTS

from helpers import toy_train_dataset

WEIGHTS = dict(Target=8.0, Rare=3.0)  # Common keeps its default


@pytest.fixture(scope='module')
def dataset(toy_world):
    return toy_train_dataset(toy_world)


@pytest.fixture(scope='module')
def mining_dir(dataset, tmp_path_factory):
    """Samples 0, 4, 8, ... hold a Target crop (and a Common one), 1, 5, ... a Rare crop,
    2, 6, ... Common crops only; 3, 7, ... were not mined."""
    rows = []
    for i in range(len(dataset)):
        token = dataset.get_data_info(i)['token']
        rows += [(token, group) for group in (['Target', 'Common'], ['Rare'], ['Common', 'Common'], [])[i % 4]]
    path = tmp_path_factory.mktemp('mining')
    pq.write_table(
        pa.table(dict(sample_token=[r[0] for r in rows], group=[r[1] for r in rows])), os.path.join(path, CONCEPTS_FILE)
    )
    return str(path)


def _expected_weight(i):
    return (WEIGHTS['Target'], WEIGHTS['Rare'], DEFAULT_GROUP_WEIGHTS['Common'], 1.0)[i % 4]


def _sampler(dataset, mining_dir, monkeypatch, rank=0, world_size=1, **kwargs):
    monkeypatch.setattr(sampler_module, 'get_dist_info', lambda: (rank, world_size))
    return RareConceptSampler(dataset, mining_dir, group_weights=WEIGHTS, seed=7, **kwargs)


def test_weights_follow_the_mined_groups(dataset, mining_dir, monkeypatch):
    sampler = _sampler(dataset, mining_dir, monkeypatch)
    assert sampler.weights.tolist() == [_expected_weight(i) for i in range(len(dataset))]
    assert sampler.num_mined == len([i for i in range(len(dataset)) if i % 4 != 3])


def test_sampling_frequencies_honour_the_weights(dataset, mining_dir, monkeypatch):
    sampler = _sampler(dataset, mining_dir, monkeypatch, num_samples=200_000)
    counts = np.bincount(list(iter(sampler)), minlength=len(dataset))
    weights = sampler.weights.numpy()
    expected = weights / weights.sum() * len(sampler)
    assert np.abs(counts - expected).max() < 6 * np.sqrt(expected.max())
    target, unmined = counts[0::4].mean(), counts[3::4].mean()
    assert abs(target / unmined - WEIGHTS['Target']) < 0.1 * WEIGHTS['Target']


def test_two_ranks_get_disjoint_shares_that_cover_the_epoch(dataset, mining_dir, monkeypatch):
    single = _sampler(dataset, mining_dir, monkeypatch, num_samples=101)
    shards = [_sampler(dataset, mining_dir, monkeypatch, rank=r, world_size=2, num_samples=101) for r in (0, 1)]
    assert len(shards[0]) == len(shards[1]) == 51  # ceil(101 / 2): padded like DefaultSampler
    draws = [list(iter(s)) for s in shards]
    interleaved = [draws[p % 2][p // 2] for p in range(102)]
    full = _sampler(dataset, mining_dir, monkeypatch, num_samples=102)
    assert interleaved == list(iter(full)), 'rank r takes positions r, r+2, ... of one global draw'
    assert len(list(iter(single))) == 101


def test_fixed_length_and_epoch_reseeding(dataset, mining_dir, monkeypatch):
    sampler = _sampler(dataset, mining_dir, monkeypatch)
    epoch0 = list(iter(sampler))
    assert epoch0 == list(iter(sampler)) and len(epoch0) == len(sampler) == len(dataset)
    sampler.set_epoch(1)
    epoch1 = list(iter(sampler))
    assert epoch1 != epoch0 and len(epoch1) == len(sampler)
    sampler.set_epoch(0)
    assert list(iter(sampler)) == epoch0


def test_mining_dir_defaults_to_the_datasets(dataset, mining_dir, monkeypatch):
    monkeypatch.setattr(dataset, 'mining_dir', mining_dir, raising=False)
    sampler = RareConceptSampler(dataset, group_weights=WEIGHTS, seed=7)
    assert sampler.weights.tolist() == [_expected_weight(i) for i in range(len(dataset))]
    monkeypatch.delattr(dataset, 'mining_dir')
    with pytest.raises(ValueError, match='mining_dir'):
        RareConceptSampler(dataset, seed=7)


def test_missing_mining_outputs_are_a_clear_error(dataset, tmp_path, monkeypatch):
    with pytest.raises(FileNotFoundError, match='tools/mine.py'):
        _sampler(dataset, str(tmp_path), monkeypatch)
