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

from helpers import (
    REPO,
    TOY_MINING_CONFIG,
    TOY_TRAIN_ITERS,
    assert_nuscenes_metrics_add_up,
    mined_toy_cfg,
    validation_metrics,
)


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
    assert_nuscenes_metrics_add_up(validation_metrics(runner), cfg.class_names)
    assert _digest(val) == val_before, 'evaluated on the untouched val split'


def test_rare_sampler_config_builds_the_sampler_from_the_hooks_outputs(toy_world, toy_models, tmp_path):
    cfg = mined_toy_cfg(toy_world, toy_models, str(tmp_path), 'centerpoint_mined20_rare_sampler_toy.py')
    cfg.train_cfg.max_iters = cfg.train_cfg.val_interval = 2
    runner = Runner.from_cfg(cfg)
    runner.train()
    sampler = runner.train_dataloader.sampler
    assert type(sampler).__name__ == 'RareConceptSampler'
    assert len(sampler) == len(runner.train_dataloader.dataset) and sampler.num_mined > 0


# mmdetection3d's BEVFusion configs (v1.4.0), which the bevfusion_* configs take as their
# _base_. The tests read the real ones from an mmdetection3d source (MMDET3D_SOURCE, or the
# third_party/mmdetection3d checkout that docs/subsets.md clones). Without one (CI: they are on
# GitHub only, in no package) they read a stand-in with the structure of upstream's that our
# configs meet: the lidar stage wraps NuScenesDataset in CBGS, samples GT objects from the
# full database and stops that with DisableObjectSampleHook; the lidar-camera stage inherits
# it, replaces the pipelines (no GT sampling) and deletes the hooks.
BEVFUSION_CONFIGS = 'third_party/mmdetection3d/projects/BEVFusion/configs'
BEVFUSION_LIDAR = 'bevfusion_lidar_voxel0075_second_secfpn_8xb4-cyclic-20e_nus-3d.py'
BEVFUSION_LIDAR_CAM = 'bevfusion_lidar-cam_voxel0075_second_secfpn_8xb4-cyclic-20e_nus-3d.py'
BEVFUSION_LIDAR_STAND_IN = """
custom_imports = dict(imports=['projects.BEVFusion.bevfusion'], allow_failed_imports=False)
model = dict(type='BEVFusion', pts_voxel_encoder=dict(type='HardSimpleVFE', num_features=5))
data_root = 'data/nuscenes/'
data_prefix = dict(pts='samples/LIDAR_TOP', CAM_FRONT='samples/CAM_FRONT', CAM_FRONT_LEFT='samples/CAM_FRONT_LEFT',
                   CAM_FRONT_RIGHT='samples/CAM_FRONT_RIGHT', CAM_BACK='samples/CAM_BACK',
                   CAM_BACK_RIGHT='samples/CAM_BACK_RIGHT', CAM_BACK_LEFT='samples/CAM_BACK_LEFT',
                   sweeps='sweeps/LIDAR_TOP')
db_sampler = dict(data_root=data_root, info_path=data_root + 'nuscenes_dbinfos_train.pkl', rate=1.0)
train_pipeline = [
    dict(type='LoadPointsFromFile', coord_type='LIDAR', load_dim=5, use_dim=5),
    dict(type='LoadPointsFromMultiSweeps', sweeps_num=9, load_dim=5, use_dim=5),
    dict(type='LoadAnnotations3D', with_bbox_3d=True, with_label_3d=True),
    dict(type='ObjectSample', db_sampler=db_sampler),
    dict(type='Pack3DDetInputs', keys=['points', 'gt_bboxes_3d', 'gt_labels_3d']),
]
test_pipeline = [dict(type='LoadPointsFromFile', coord_type='LIDAR', load_dim=5, use_dim=5)]
train_dataloader = dict(batch_size=4, num_workers=4, dataset=dict(type='CBGSDataset', dataset=dict(
    type='NuScenesDataset', data_root=data_root, ann_file='nuscenes_infos_train.pkl', pipeline=train_pipeline,
    data_prefix=data_prefix, modality=dict(use_lidar=True, use_camera=False), test_mode=False)))
val_dataloader = dict(batch_size=1, dataset=dict(type='NuScenesDataset', data_root=data_root,
    ann_file='nuscenes_infos_val.pkl', pipeline=test_pipeline, data_prefix=data_prefix, test_mode=True))
test_dataloader = val_dataloader
train_cfg = dict(by_epoch=True, max_epochs=20, val_interval=5)
custom_hooks = [dict(type='DisableObjectSampleHook', disable_after_epoch=15)]
"""
BEVFUSION_LIDAR_CAM_STAND_IN = f"""
_base_ = ['./{BEVFUSION_LIDAR}']
input_modality = dict(use_lidar=True, use_camera=True)
model = dict(img_backbone=dict(type='mmdet.SwinTransformer'))
train_pipeline = [
    dict(type='BEVLoadMultiViewImageFromFiles', to_float32=True, color_type='color'),
    dict(type='LoadPointsFromFile', coord_type='LIDAR', load_dim=5, use_dim=5),
    dict(type='LoadAnnotations3D', with_bbox_3d=True, with_label_3d=True),
    dict(type='ImageAug3D', final_dim=[256, 704], is_train=True),
]
train_dataloader = dict(dataset=dict(dataset=dict(pipeline=train_pipeline, modality=input_modality)))
train_cfg = dict(by_epoch=True, max_epochs=6, val_interval=1)
del _base_.custom_hooks
"""


def _bevfusion_checkout(tmp_path):
    """A copy of configs/ with mmdetection3d's BEVFusion configs where the arms' _base_ looks:
    the real ones when a source is at hand, else the stand-in (see above)."""
    checkout = tmp_path / 'repo'
    shutil.copytree(os.path.join(REPO, 'configs'), checkout / 'configs')
    source = os.environ.get('MMDET3D_SOURCE') or os.path.join(REPO, 'third_party', 'mmdetection3d')
    configs = checkout / BEVFUSION_CONFIGS
    configs.parent.mkdir(parents=True)
    if os.path.isfile(os.path.join(source, 'projects', 'BEVFusion', 'configs', BEVFUSION_LIDAR)):
        configs.symlink_to(os.path.join(source, 'projects', 'BEVFusion', 'configs'))
        (checkout / 'third_party' / 'mmdetection3d' / 'configs').symlink_to(os.path.join(source, 'configs'))
    else:
        configs.mkdir()
        (configs / BEVFUSION_LIDAR).write_text(BEVFUSION_LIDAR_STAND_IN)
        (configs / BEVFUSION_LIDAR_CAM).write_text(BEVFUSION_LIDAR_CAM_STAND_IN)
    return checkout


def _config(checkout, name):
    return Config.fromfile(str(checkout / 'configs' / f'{name}.py'), import_custom_modules=False)


@pytest.mark.parametrize('stage', ['bevfusion_lidar', 'bevfusion'])
def test_bevfusion_subset_arms_change_only_the_training_data(tmp_path, stage):
    """A subset arm is upstream's recipe as the full arm trains it, with only the train set
    swapped: the same model, schedule, pipelines, cameras, val set and upstream hooks, plus the
    DataMiningHook that writes the subset it reads."""
    checkout = _bevfusion_checkout(tmp_path)
    full = _config(checkout, f'{stage}_full')
    full_outer = full.train_dataloader.dataset
    assert full_outer.type == 'CBGSDataset' and full_outer.dataset.type == 'NuScenesDataset'
    for arm, subset in (('mined20', 'random10_target10'), ('random20', 'random20')):
        cfg = _config(checkout, f'{stage}_{arm}')
        outer, dataset = cfg.train_dataloader.dataset, cfg.train_dataloader.dataset.dataset
        assert outer.type == 'SubsetCBGSDataset' and dataset.type == 'SubsetNuScenesDataset'
        assert dataset.subset == subset
        _assert_trains_on_what_its_hook_builds(cfg, dataset)
        unswapped = {k: v for k, v in dataset.items() if k not in ('mining_dir', 'subset')}
        assert unswapped == dict(full_outer.dataset, type='SubsetNuScenesDataset')
        wrapper = {k: v for k, v in dict(full_outer, type='SubsetCBGSDataset').items() if k != 'dataset'}
        assert {k: v for k, v in outer.items() if k != 'dataset'} == wrapper
        (mining_hook,) = [h for h in cfg.custom_hooks if h.type == 'DataMiningHook']
        assert [h for h in cfg.custom_hooks if h is not mining_hook] == full.get('custom_hooks', [])
        ours = {'train_dataloader', 'custom_hooks', 'custom_imports', 'mining_work_dir', 'load_from'}
        for key in (set(cfg) | set(full)) - ours:
            assert cfg.get(key) == full.get(key), key
    if stage == 'bevfusion_lidar':  # upstream stops GT sampling late in the lidar stage: every arm does
        assert [h.type for h in full.custom_hooks] == ['DisableObjectSampleHook']


def test_bevfusion_reads_from_a_mined_pickle_what_its_loaders_need(toy_world, tmp_path):
    dataset = _config(_bevfusion_checkout(tmp_path), 'bevfusion_mined20').train_dataloader.dataset.dataset
    assert 'BEVLoadMultiViewImageFromFiles' in [step.type for step in dataset.pipeline]
    assert dataset.modality.use_camera
    cameras = [k for k in dataset.data_prefix if k.startswith('CAM_')]
    assert cameras

    from conceptminer3d.subsets import subset_infos

    root, _ = toy_world
    with open(os.path.join(root, 'nuscenes_infos_train.pkl'), 'rb') as f:
        infos = pickle.load(f)
    mined = subset_infos(infos, [1, 5, 9])  # not a scene's first sample: those have no sweeps, as in nuScenes
    for info in mined['data_list']:
        assert {'ego2global', 'lidar_points', 'lidar_sweeps', 'images'} <= set(info)
        assert info['lidar_points']['lidar_path'] and 'lidar2ego' in info['lidar_points'] and info['lidar_sweeps']
        for cam in cameras:
            image = info['images'][cam]
            assert {'img_path', 'cam2img', 'lidar2cam'} <= set(image), cam
            assert os.path.exists(os.path.join(root, dataset.data_prefix[cam], image['img_path']))


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
    checkout = _bevfusion_checkout(tmp_path)
    cfg = _config(checkout, name[: -len('.py')])
    dataset = cfg.train_dataloader.dataset.dataset
    if subset is None:
        assert dataset.type == 'NuScenesDataset'
        assert not [h for h in cfg.get('custom_hooks', []) if h.type == 'DataMiningHook']
    else:
        assert dataset.type == 'SubsetNuScenesDataset' and dataset.subset == subset
        _assert_trains_on_what_its_hook_builds(cfg, dataset)
    if loads is None:
        assert cfg.get('load_from') is None
    else:
        assert os.path.normpath(cfg.load_from) == str(checkout / 'work_dirs' / loads / 'epoch_20.pth')
        lidar = _config(checkout, loads)
        assert lidar.train_dataloader.dataset.dataset.get('subset') == subset
