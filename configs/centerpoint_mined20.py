# CenterPoint pillar02 trained on the mined "Random 10% + Target 10%" subset of nuScenes.
# On a fresh work dir, DataMiningHook mines data/nuscenes/nuscenes_infos_train.pkl with the
# real models (configs/mining/default.py; cached in mining_work_dir) and writes the subset
# pickles before the train dataset reads them. GT sampling uses the subset's own database.
_base_ = ['./centerpoint_full.py']
data_root = 'data/nuscenes/'
mining_work_dir = '{{ fileDirname }}/../work_dirs/mining_nuscenes'
subset = 'random10_target10'
subset_dir = mining_work_dir + '/subsets'
custom_hooks = [
    dict(type='DataMiningHook', mining_config='{{ fileDirname }}/mining/default.py', data_root=data_root,
         ann_file='nuscenes_infos_train.pkl', work_dir=mining_work_dir,
         subsets=dict(target_ratio=0.1, random_ratio=0.1, unit='sample', seed=0)),
]
# SubsetCBGSDataset: stock CBGS, except that a class absent from the subset is skipped
# instead of dividing by zero.
train_dataloader = dict(dataset=dict(type='SubsetCBGSDataset', dataset=dict(
    type='SubsetNuScenesDataset',
    ann_file=subset_dir + f'/nuscenes_infos_train_{subset}.pkl',
    db_info_path=subset_dir + f'/nuscenes_dbinfos_train_{subset}.pkl')))
