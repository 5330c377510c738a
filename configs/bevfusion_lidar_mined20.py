# BEVFusion lidar-only trained on the mined "Random 10% + Target 10%" nuScenes subset: the
# first of BEVFusion's two stages. configs/bevfusion_mined20.py (lidar + camera) starts from
# this run's checkpoint, never from the official lidar-only one (trained on the whole train
# set, it would leak the rest of the data into the subset arm). Needs the mmdetection3d v1.4.0
# source at third_party/mmdetection3d with bev_pool_ext built: docs/subsets.md, "BEVFusion".
_base_ = ['../third_party/mmdetection3d/projects/BEVFusion/configs/'
          'bevfusion_lidar_voxel0075_second_secfpn_8xb4-cyclic-20e_nus-3d.py']
custom_imports = dict(imports=['projects.BEVFusion.bevfusion', 'conceptminer3d'], allow_failed_imports=False)
mining_work_dir = '{{ fileDirname }}/../work_dirs/mining_nuscenes'  # shared with centerpoint_mined20.py
# Upstream's hooks stay (DisableObjectSampleHook ends GT sampling after epoch 15, as in the full arm).
custom_hooks = _base_.custom_hooks + [dict(type='DataMiningHook', mining_config='{{ fileDirname }}/mining/default.py', data_root={{_base_.data_root}}, work_dir=mining_work_dir)]
train_dataloader = dict(dataset=dict(type='SubsetCBGSDataset', dataset=dict(
    type='SubsetNuScenesDataset', mining_dir=mining_work_dir, subset='random10_target10')))
