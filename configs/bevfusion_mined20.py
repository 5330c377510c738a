# BEVFusion (lidar + camera) trained on the mined "Random 10% + Target 10%" nuScenes subset,
# starting, as upstream's recipe does, from the lidar-only stage trained on the same subset
# (configs/bevfusion_lidar_mined20.py: train it first). Needs the mmdetection3d v1.4.0 source
# at third_party/mmdetection3d with bev_pool_ext built: see docs/subsets.md, "BEVFusion".
_base_ = ['../third_party/mmdetection3d/projects/BEVFusion/configs/'
          'bevfusion_lidar-cam_voxel0075_second_secfpn_8xb4-cyclic-20e_nus-3d.py']
custom_imports = dict(imports=['projects.BEVFusion.bevfusion', 'conceptminer3d'], allow_failed_imports=False)
mining_work_dir = '{{ fileDirname }}/../work_dirs/mining_nuscenes'  # shared with centerpoint_mined20.py
custom_hooks = [dict(type='DataMiningHook', mining_config='{{ fileDirname }}/mining/default.py', data_root={{_base_.data_root}}, work_dir=mining_work_dir)]
train_dataloader = dict(dataset=dict(type='SubsetCBGSDataset', dataset=dict(
    type='SubsetNuScenesDataset', mining_dir=mining_work_dir, subset='random10_target10')))
load_from = '{{ fileDirname }}/../work_dirs/bevfusion_lidar_mined20/epoch_20.pth'
