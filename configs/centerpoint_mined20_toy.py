# Toy CenterPoint on the mined "Random 10% + Target 10%" subset of the toy world. On a fresh
# work dir DataMiningHook mines the toy train pickle with the tiny models of
# configs/mining/toy.py (build them with tools/make_toy_models.py) and writes the subset.
_base_ = ['./centerpoint_pillar_toy.py']
mining_work_dir = '{{ fileDirname }}/../work_dirs/mining_toy'
subset_dir = mining_work_dir + '/subsets'
subset = 'random10_target10'
custom_hooks = [
    dict(type='DataMiningHook', mining_config='{{ fileDirname }}/mining/toy.py', data_root='data/toy_nuscenes/',
         ann_file='nuscenes_infos_train.pkl', work_dir=mining_work_dir,
         subsets=dict(target_ratio=0.1, random_ratio=0.1, unit='sample', seed=0)),
]
train_dataloader = dict(dataset=dict(type='SubsetCBGSDataset', dataset=dict(
    type='SubsetNuScenesDataset',
    ann_file=subset_dir + f'/nuscenes_infos_train_{subset}.pkl',
    db_info_path=subset_dir + f'/nuscenes_dbinfos_train_{subset}.pkl')))
