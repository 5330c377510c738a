# Toy CenterPoint on the random 20% baseline (same size and seed as the mined subset).
_base_ = ['./centerpoint_mined20_toy.py']
mining_work_dir = '{{ fileDirname }}/../work_dirs/mining_toy'  # as in the base
subset_dir = mining_work_dir + '/subsets'
subset = 'random20'
train_dataloader = dict(dataset=dict(dataset=dict(
    ann_file=subset_dir + f'/nuscenes_infos_train_{subset}.pkl',
    db_info_path=subset_dir + f'/nuscenes_dbinfos_train_{subset}.pkl')))
