# BEVFusion (lidar + camera) on the whole train set, from bevfusion_lidar_full.py's checkpoint
# (the official lidar-only checkpoint is the same stage and may be used here instead).
_base_ = ['../third_party/mmdetection3d/projects/BEVFusion/configs/'
          'bevfusion_lidar-cam_voxel0075_second_secfpn_8xb4-cyclic-20e_nus-3d.py']
custom_imports = dict(imports=['projects.BEVFusion.bevfusion', 'conceptminer3d'], allow_failed_imports=False)
load_from = '{{ fileDirname }}/../work_dirs/bevfusion_lidar_full/epoch_20.pth'
