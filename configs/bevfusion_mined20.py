# BEVFusion (lidar + camera) trained on the mined "Random 10% + Target 10%" nuScenes subset.
# Needs the mmdetection3d v1.4.0 source (BEVFusion is not in the wheel) at
# third_party/mmdetection3d with its CUDA ops built, and that checkout on PYTHONPATH:
# see README.md, "BEVFusion".
_base_ = ['../third_party/mmdetection3d/projects/BEVFusion/configs/'
          'bevfusion_lidar-cam_voxel0075_second_secfpn_8xb4-cyclic-20e_nus-3d.py']
custom_imports = dict(imports=['projects.BEVFusion.bevfusion', 'conceptminer3d'], allow_failed_imports=False)
data_root = 'data/nuscenes/'
mining_work_dir = '{{ fileDirname }}/../work_dirs/mining_nuscenes'  # shared with centerpoint_mined20.py
subset_dir = mining_work_dir + '/subsets'
custom_hooks = [
    dict(type='DataMiningHook', mining_config='{{ fileDirname }}/mining/default.py', data_root=data_root,
         ann_file='nuscenes_infos_train.pkl', work_dir=mining_work_dir,
         subsets=dict(target_ratio=0.1, random_ratio=0.1, unit='sample', seed=0)),
]
train_dataloader = dict(dataset=dict(type='SubsetCBGSDataset', dataset=dict(
    type='SubsetNuScenesDataset',
    ann_file=subset_dir + '/nuscenes_infos_train_random10_target10.pkl',
    db_info_path=subset_dir + '/nuscenes_dbinfos_train_random10_target10.pkl')))
