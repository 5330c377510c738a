# BEVFusion lidar-only on the whole nuScenes train set: the full-data baseline of
# bevfusion_lidar_{mined20,random20}.py, and the stage the lidar-camera bevfusion_full.py loads.
_base_ = ['../third_party/mmdetection3d/projects/BEVFusion/configs/'
          'bevfusion_lidar_voxel0075_second_secfpn_8xb4-cyclic-20e_nus-3d.py']
custom_imports = dict(imports=['projects.BEVFusion.bevfusion', 'conceptminer3d'], allow_failed_imports=False)
