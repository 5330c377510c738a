# BEVFusion (lidar + camera) on the random 20% baseline, from bevfusion_lidar_random20.py's checkpoint.
_base_ = ['./bevfusion_mined20.py']
train_dataloader = dict(dataset=dict(dataset=dict(subset='random20')))
load_from = '{{ fileDirname }}/../work_dirs/bevfusion_lidar_random20/epoch_20.pth'
