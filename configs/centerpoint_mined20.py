# CenterPoint pillar02 trained on the mined "Random 10% + Target 10%" subset of nuScenes.
# On a fresh work dir, DataMiningHook mines data/nuscenes/nuscenes_infos_train.pkl with the
# real models (configs/mining/default.py; cached in mining_work_dir) and writes the subset
# pickles before the train dataset reads them. GT sampling uses the subset's own database.
_base_ = ['./centerpoint_full.py']
mining_work_dir = '{{ fileDirname }}/../work_dirs/mining_nuscenes'
custom_hooks = [dict(type='DataMiningHook', mining_config='{{ fileDirname }}/mining/default.py', data_root={{_base_.data_root}}, work_dir=mining_work_dir)]
# SubsetCBGSDataset: stock CBGS, except that a class absent from the subset is skipped
# instead of dividing by zero. The subset's pickles are found by its name in mining_work_dir.
train_dataloader = dict(dataset=dict(type='SubsetCBGSDataset', dataset=dict(
    type='SubsetNuScenesDataset', mining_dir=mining_work_dir, subset='random10_target10')))
