"""Training on mined subsets: the data-mining hook path end to end, and BEVFusion's config."""

import dataclasses
import hashlib
import json
import math
import os
import pickle
import shutil

import pytest
from mmengine.config import Config
from mmengine.runner import Runner

from conceptminer3d.subsets import SubsetSpec, subset_paths

from helpers import REPO, TOY_MINING_CONFIG, TOY_TRAIN_ITERS, mined_toy_cfg


def _digest(path):
    with open(path, 'rb') as f:
        return hashlib.sha256(f.read()).hexdigest()


def _assert_trains_on_what_its_hook_builds(cfg, dataset):
    """The dataset reads a subset that the config's DataMiningHook writes, where it writes it."""
    (hook,) = (h for h in cfg.custom_hooks if h.type == 'DataMiningHook')
    settings = Config.fromfile(hook.mining_config).subsets
    spec = SubsetSpec(**{k: v for k, v in settings.items() if k in {f.name for f in dataclasses.fields(SubsetSpec)}})
    assert dataset.mining_dir == hook.work_dir
    assert dataset.subset in (spec.name, spec.baseline_name)


@pytest.mark.parametrize(
    'name, subset',
    [
        ('centerpoint_mined20.py', 'random10_target10'),
        ('centerpoint_random20.py', 'random20'),
        ('centerpoint_mined20_rare_sampler.py', 'random10_target10'),
        ('centerpoint_mined20_toy.py', 'random10_target10'),
        ('centerpoint_random20_toy.py', 'random20'),
        ('centerpoint_mined20_rare_sampler_toy.py', 'random10_target10'),
    ],
)
def test_subset_configs_train_on_what_their_hook_builds(name, subset):
    cfg = Config.fromfile(os.path.join(REPO, 'configs', name))
    outer = cfg.train_dataloader.dataset
    dataset = outer.dataset if outer.type == 'SubsetCBGSDataset' else outer
    assert dataset.type == 'SubsetNuScenesDataset' and dataset.subset == subset
    _assert_trains_on_what_its_hook_builds(cfg, dataset)
    if 'rare_sampler' in name:
        # CBGS's place is taken by the sampler: the dataset is the unwrapped one of the base config
        base = Config.fromfile(os.path.join(REPO, 'configs', name.replace('_rare_sampler', '')))
        assert cfg.train_dataloader.sampler == dict(type='RareConceptSampler')
        assert dataset == base.train_dataloader.dataset.dataset
        assert {k: v for k, v in cfg.train_dataloader.items() if k not in ('sampler', 'dataset')} == {
            k: v for k, v in base.train_dataloader.items() if k not in ('sampler', 'dataset')
        }


@pytest.mark.parametrize(
    'keys, match',
    [
        (dict(subsets=dict(unit='frame')), 'unit'),
        (dict(subsets=dict(target_ratio=0.9, random_ratio=0.2)), 'ratios'),
        (dict(subsets=dict(unit='scene'), remine_interval=1), 're-mining'),
    ],
)
def test_hook_refuses_bad_subset_settings_before_mining(tmp_path, keys, match):
    from conceptminer3d.hooks import DataMiningHook

    with pytest.raises(ValueError, match=match):
        DataMiningHook(
            mining_config=TOY_MINING_CONFIG, data_root=str(tmp_path), work_dir=str(tmp_path / 'work'), **keys
        )
    assert not os.path.exists(tmp_path / 'work')


def test_mined20_config_mines_builds_subset_and_trains_from_an_empty_work_dir(toy_world, toy_models, tmp_path):
    root, _ = toy_world
    val = os.path.join(root, 'nuscenes_infos_val.pkl')
    val_before = _digest(val)
    cfg = mined_toy_cfg(toy_world, toy_models, str(tmp_path))
    subset_pkl, _ = subset_paths(cfg.custom_hooks[0].work_dir, cfg.train_dataloader.dataset.dataset.subset)
    assert subset_pkl.startswith(str(tmp_path)) and not os.path.exists(subset_pkl)

    runner = Runner.from_cfg(cfg)  # the hook mines here, before any dataset is built
    assert os.path.exists(subset_pkl)
    runner.train()

    with open(subset_pkl, 'rb') as f:
        subset = pickle.load(f)['data_list']
    with open(os.path.join(root, 'nuscenes_infos_train.pkl'), 'rb') as f:
        n_train = len(pickle.load(f)['data_list'])
    assert len(subset) == 2 * round(0.1 * n_train)
    with open(os.path.join(tmp_path, 'mining', 'manifest.json')) as f:
        assert json.load(f)['subsets']['num_selected'] == len(subset)
    inner = runner.train_dataloader.dataset.dataset
    assert type(inner).__name__ == 'SubsetNuScenesDataset' and inner.ann_file == subset_pkl
    assert len(inner) == len(subset)
    losses = runner.message_hub.get_scalar('train/loss').data[0]
    assert len(losses) == TOY_TRAIN_ITERS and all(math.isfinite(x) for x in losses)
    nds = runner.message_hub.get_scalar('val/NuScenes metric/pred_instances_3d_NuScenes/NDS').current()
    mean_ap = runner.message_hub.get_scalar('val/NuScenes metric/pred_instances_3d_NuScenes/mAP').current()
    assert 0.0 <= nds <= 1.0 and 0.0 <= mean_ap <= 1.0
    assert _digest(val) == val_before, 'evaluated on the untouched val split'


def test_rare_sampler_config_builds_the_sampler_from_the_hooks_outputs(toy_world, toy_models, tmp_path):
    cfg = mined_toy_cfg(toy_world, toy_models, str(tmp_path), 'centerpoint_mined20_rare_sampler_toy.py')
    cfg.train_cfg.max_iters = cfg.train_cfg.val_interval = 2
    runner = Runner.from_cfg(cfg)
    runner.train()
    sampler = runner.train_dataloader.sampler
    assert type(sampler).__name__ == 'RareConceptSampler'
    assert len(sampler) == len(runner.train_dataloader.dataset) and sampler.num_mined > 0


BEVFUSION_STAND_IN = '''
# Stand-in for mmdetection3d's projects/BEVFusion config: same keys the mined config
# overrides and the same dataset/pipeline structure; no BEVFusion code is imported.
custom_imports = dict(imports=['projects.BEVFusion.bevfusion'], allow_failed_imports=False)
class_names = ['car']
data_root = 'data/nuscenes/'
data_prefix = dict(pts='samples/LIDAR_TOP', CAM_FRONT='samples/CAM_FRONT', CAM_FRONT_LEFT='samples/CAM_FRONT_LEFT',
                   CAM_FRONT_RIGHT='samples/CAM_FRONT_RIGHT', CAM_BACK='samples/CAM_BACK',
                   CAM_BACK_RIGHT='samples/CAM_BACK_RIGHT', CAM_BACK_LEFT='samples/CAM_BACK_LEFT',
                   sweeps='sweeps/LIDAR_TOP')
db_sampler = dict(data_root=data_root, info_path=data_root + 'nuscenes_dbinfos_train.pkl')
train_pipeline = [
    dict(type='BEVLoadMultiViewImageFromFiles', to_float32=True, color_type='color'),
    dict(type='LoadPointsFromFile', coord_type='LIDAR', load_dim=5, use_dim=5),
    dict(type='LoadPointsFromMultiSweeps', sweeps_num=9, load_dim=5, use_dim=5),
    dict(type='LoadAnnotations3D', with_bbox_3d=True, with_label_3d=True),
    dict(type='ObjectSample', db_sampler=db_sampler),
]
train_dataloader = dict(
    batch_size=4,
    dataset=dict(type='CBGSDataset', dataset=dict(
        type='NuScenesDataset', data_root=data_root, ann_file='nuscenes_infos_train.pkl',
        pipeline=train_pipeline, data_prefix=data_prefix, modality=dict(use_lidar=True, use_camera=True))))
'''
BEVFUSION_BASE = (
    'third_party/mmdetection3d/projects/BEVFusion/configs/'
    'bevfusion_lidar-cam_voxel0075_second_secfpn_8xb4-cyclic-20e_nus-3d.py'
)


def test_bevfusion_mined20_config_and_pickle_keys(toy_world, tmp_path):
    checkout = tmp_path / 'repo'
    shutil.copytree(os.path.join(REPO, 'configs'), checkout / 'configs')
    stand_in = checkout / BEVFUSION_BASE
    stand_in.parent.mkdir(parents=True)
    stand_in.write_text(BEVFUSION_STAND_IN)
    cfg = Config.fromfile(str(checkout / 'configs' / 'bevfusion_mined20.py'), import_custom_modules=False)
    dataset = cfg.train_dataloader.dataset.dataset
    assert dataset.type == 'SubsetNuScenesDataset'
    assert cfg.train_dataloader.dataset.type == 'SubsetCBGSDataset'
    _assert_trains_on_what_its_hook_builds(cfg, dataset)
    cameras = [k for k in dataset.data_prefix if k.startswith('CAM_')]
    assert len(cameras) == 6

    # the subset pickle a mined run writes carries what BEVFusion's loaders read
    from conceptminer3d.subsets import subset_infos

    root, _ = toy_world
    with open(os.path.join(root, 'nuscenes_infos_train.pkl'), 'rb') as f:
        infos = pickle.load(f)
    mined = subset_infos(infos, [1, 5, 9])  # not a scene's first sample: those have no sweeps, as in nuScenes
    for info in mined['data_list']:
        assert {'ego2global', 'lidar_points', 'lidar_sweeps', 'images'} <= set(info)
        assert info['lidar_points']['lidar_path'] and 'lidar2ego' in info['lidar_points']
        for cam in cameras:
            image = info['images'][cam]
            assert {'img_path', 'cam2img', 'lidar2cam'} <= set(image), cam
            assert os.path.exists(os.path.join(root, 'samples', cam, image['img_path']))


BEVFUSION_LIDAR_BASE = BEVFUSION_BASE.replace('bevfusion_lidar-cam_', 'bevfusion_lidar_')


@pytest.mark.parametrize(
    'name, subset, loads',
    [
        ('bevfusion_lidar_mined20.py', 'random10_target10', None),
        ('bevfusion_lidar_random20.py', 'random20', None),
        ('bevfusion_lidar_full.py', None, None),
        ('bevfusion_mined20.py', 'random10_target10', 'bevfusion_lidar_mined20'),
        ('bevfusion_random20.py', 'random20', 'bevfusion_lidar_random20'),
        ('bevfusion_full.py', None, 'bevfusion_lidar_full'),
    ],
)
def test_bevfusion_arms_train_their_subset_from_their_own_lidar_stage(tmp_path, name, subset, loads):
    """Each lidar-camera arm starts from the lidar-only checkpoint trained on its own train set
    (never the official one, trained on everything), where tools/train.py writes it."""
    checkout = tmp_path / 'repo'
    shutil.copytree(os.path.join(REPO, 'configs'), checkout / 'configs')
    for base in (BEVFUSION_BASE, BEVFUSION_LIDAR_BASE):
        (checkout / base).parent.mkdir(parents=True, exist_ok=True)
        (checkout / base).write_text(BEVFUSION_STAND_IN)
    cfg = Config.fromfile(str(checkout / 'configs' / name), import_custom_modules=False)
    dataset = cfg.train_dataloader.dataset.dataset
    if subset is None:
        assert dataset.type == 'NuScenesDataset' and 'custom_hooks' not in cfg
    else:
        assert dataset.type == 'SubsetNuScenesDataset' and dataset.subset == subset
        _assert_trains_on_what_its_hook_builds(cfg, dataset)
    if loads is None:
        assert cfg.get('load_from') is None
    else:
        assert os.path.normpath(cfg.load_from) == str(checkout / 'work_dirs' / loads / 'epoch_20.pth')
        lidar = Config.fromfile(str(checkout / 'configs' / f'{loads}.py'), import_custom_modules=False)
        assert lidar.train_dataloader.dataset.dataset.get('subset') == subset
