# centerpoint_mined20_toy.py with concepts from the toy world's 3D ground truth
# (configs/mining/annotations.py) instead of the tiny 2D models; its own mining work dir.
_base_ = ['./centerpoint_mined20_toy.py']
mining_work_dir = '{{ fileDirname }}/../work_dirs/mining_toy_annotations'
custom_hooks = [dict(_base_.custom_hooks[0], mining_config='{{ fileDirname }}/mining/annotations.py',
                     work_dir=mining_work_dir)]
train_dataloader = dict(dataset=dict(dataset=dict(mining_dir=mining_work_dir)))
