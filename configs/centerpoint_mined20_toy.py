# Toy CenterPoint on the mined "Random 10% + Target 10%" subset of the toy world. On a fresh
# work dir DataMiningHook mines the toy train pickle with the tiny models of
# configs/mining/toy.py (build them with tools/make_toy_models.py) and writes the subset.
_base_ = ['./centerpoint_pillar_toy.py']
mining_work_dir = '{{ fileDirname }}/../work_dirs/mining_toy'
custom_hooks = [dict(type='DataMiningHook', mining_config='{{ fileDirname }}/mining/toy.py', data_root={{_base_.data_root}}, work_dir=mining_work_dir)]
train_dataloader = dict(dataset=dict(type='SubsetCBGSDataset', dataset=dict(
    type='SubsetNuScenesDataset', mining_dir=mining_work_dir, subset='random10_target10')))
