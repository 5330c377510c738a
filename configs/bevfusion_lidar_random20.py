# BEVFusion lidar-only on the random 20% baseline (same size and seed as the mined subset).
_base_ = ['./bevfusion_lidar_mined20.py']
train_dataloader = dict(dataset=dict(dataset=dict(subset='random20')))
