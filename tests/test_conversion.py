import os
import pickle

import numpy as np
from nuscenes.utils import splits

from conceptminer3d.mining.stages.concepts import NUSCENES_CLASSES
from conceptminer3d_toy.world.catalog import CAMERA_CHANNELS

from helpers import toy_train_dataset


def _load(root, name):
    with open(os.path.join(root, name), 'rb') as f:
        return pickle.load(f)


def test_info_pickles_follow_the_official_splits(toy_world, nusc):
    root, config = toy_world
    train, val = _load(root, 'nuscenes_infos_train.pkl'), _load(root, 'nuscenes_infos_val.pkl')
    scene_name = {s['token']: s['name'] for s in nusc.scene}
    split_of = {
        s['token']: 'train' if scene_name[s['scene_token']] in splits.mini_train else 'val' for s in nusc.sample
    }
    assert len(train['data_list']) + len(val['data_list']) == len(nusc.sample)
    assert {i['token'] for i in train['data_list']} == {t for t, s in split_of.items() if s == 'train'}
    assert {i['token'] for i in val['data_list']} == {t for t, s in split_of.items() if s == 'val'}
    assert [i['sample_idx'] for i in train['data_list']] == list(range(len(train['data_list'])))
    info = train['data_list'][3]
    assert set(info['images']) >= set(CAMERA_CHANNELS)
    for cam in CAMERA_CHANNELS:
        img = info['images'][cam]
        assert os.path.exists(os.path.join(root, 'samples', cam, img['img_path']))
        assert np.asarray(img['cam2img']).shape == (3, 3)
    assert len(info['lidar_sweeps']) > 0
    assert train['metainfo']['version'] == config.version


def test_nuscenes_dataset_reads_the_pickles(toy_world, nusc):
    dataset = toy_train_dataset(toy_world)
    n_train = sum(s['nbr_samples'] for s in nusc.scene if s['name'] in splits.mini_train)
    assert len(dataset) == n_train
    item = dataset.get_data_info(0)
    assert os.path.exists(item['lidar_points']['lidar_path'])
    labels = np.concatenate([dataset.get_data_info(i)['ann_info']['gt_labels_3d'] for i in range(len(dataset))])
    assert set(labels.tolist()) == set(range(10)), 'every class appears in the train split'


def test_gt_database_holds_train_objects_only(toy_world):
    root, _ = toy_world
    db = _load(root, 'nuscenes_dbinfos_train.pkl')
    train = _load(root, 'nuscenes_infos_train.pkl')
    entries = [e for group in db.values() for e in group]
    assert set(db) == set(NUSCENES_CLASSES) and len(entries) > 100
    # image_idx is the sample's position in the train pickle: subset GT databases are cut by it
    assert {e['image_idx'] for e in entries} <= set(range(len(train['data_list'])))
    for e in entries[:20]:
        points = np.fromfile(os.path.join(root, e['path']), dtype=np.float32).reshape(-1, 5)
        assert len(points) == e['num_points_in_gt']
