# centerpoint_mined20.py with concepts from the 3D ground truth (configs/mining/annotations.py)
# instead of the 2D models: the mined subset's Target samples are those with a box of a target
# class in view of a camera. No model is needed to mine; its own mining work dir.
_base_ = ['./centerpoint_mined20.py']
mining_work_dir = '{{ fileDirname }}/../work_dirs/mining_nuscenes_annotations'
custom_hooks = [dict(_base_.custom_hooks[0], mining_config='{{ fileDirname }}/mining/annotations.py',
                     work_dir=mining_work_dir)]
train_dataloader = dict(dataset=dict(dataset=dict(mining_dir=mining_work_dir)))
