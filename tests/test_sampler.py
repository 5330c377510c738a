"""RareConceptSampler: weights, sharding across ranks, fixed length, epoch reseeding."""
import numpy as np
import pyarrow.parquet as pq
import pytest
from mmengine.registry import init_default_scope

import conceptminer3d.samplers.rare_concept_sampler as sampler_module
from conceptminer3d.samplers import RareConceptSampler

WEIGHTS = dict(Target=4.0, Rare=2.0, Common=1.0)


@pytest.fixture(scope='module')
def dataset(toy_world):
    from mmdet3d.datasets import NuScenesDataset
    init_default_scope('mmdet3d')
    root, config = toy_world
    return NuScenesDataset(data_root=root, ann_file='nuscenes_infos_train.pkl', pipeline=[],
                           metainfo=dict(version=config.version), test_mode=False,
                           data_prefix=dict(pts='samples/LIDAR_TOP', sweeps='sweeps/LIDAR_TOP', img=''))


def _sampler(dataset, mining_dir, monkeypatch, rank=0, world_size=1, **kwargs):
    monkeypatch.setattr(sampler_module, 'get_dist_info', lambda: (rank, world_size))
    return RareConceptSampler(dataset, mining_dir, group_weights=WEIGHTS, seed=7, **kwargs)


def test_weights_follow_the_mined_groups(dataset, train_mining, monkeypatch):
    sampler = _sampler(dataset, train_mining, monkeypatch)
    concepts = pq.read_table(f'{train_mining}/concepts.parquet').to_pandas()
    best = concepts.assign(w=concepts.group.map(WEIGHTS)).groupby('sample_token').w.max()
    for i in range(len(dataset)):
        token = dataset.get_data_info(i)['token']
        assert sampler.weights[i].item() == best.get(token, 1.0)  # absent samples: weight 1


def test_sampling_frequencies_honour_the_weights(dataset, train_mining, monkeypatch):
    sampler = _sampler(dataset, train_mining, monkeypatch, num_samples=200_000)
    counts = np.bincount(list(iter(sampler)), minlength=len(dataset))
    weights = sampler.weights.numpy()
    expected = weights / weights.sum() * len(sampler)
    assert np.abs(counts - expected).max() < 6 * np.sqrt(expected.max())
    heavy, light = weights == weights.max(), weights == weights.min()
    if heavy.any() and light.any() and weights.max() > weights.min():
        ratio = counts[heavy].mean() / counts[light].mean()
        assert abs(ratio - weights.max() / weights.min()) < 0.1 * weights.max() / weights.min()


def test_two_ranks_get_disjoint_shares_that_cover_the_epoch(dataset, train_mining, monkeypatch):
    single = _sampler(dataset, train_mining, monkeypatch, num_samples=101)
    shards = [_sampler(dataset, train_mining, monkeypatch, rank=r, world_size=2, num_samples=101) for r in (0, 1)]
    assert len(shards[0]) == len(shards[1]) == 51  # ceil(101 / 2): padded like DefaultSampler
    draws = [list(iter(s)) for s in shards]
    interleaved = [draws[p % 2][p // 2] for p in range(102)]
    full = _sampler(dataset, train_mining, monkeypatch, num_samples=102)
    assert interleaved == list(iter(full)), 'rank r takes positions r, r+2, ... of one global draw'
    assert len(list(iter(single))) == 101


def test_fixed_length_and_epoch_reseeding(dataset, train_mining, monkeypatch):
    sampler = _sampler(dataset, train_mining, monkeypatch)
    epoch0 = list(iter(sampler))
    assert epoch0 == list(iter(sampler)) and len(epoch0) == len(sampler) == len(dataset)
    sampler.set_epoch(1)
    epoch1 = list(iter(sampler))
    assert epoch1 != epoch0 and len(epoch1) == len(sampler)
    sampler.set_epoch(0)
    assert list(iter(sampler)) == epoch0


def test_missing_mining_outputs_are_a_clear_error(dataset, tmp_path, monkeypatch):
    with pytest.raises(FileNotFoundError, match='tools/mine.py'):
        _sampler(dataset, str(tmp_path), monkeypatch)
