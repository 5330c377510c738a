# Toy CenterPoint on the mined subset with RareConceptSampler instead of CBGS.
_base_ = ['./centerpoint_mined20_toy.py']
mining_work_dir = '{{ fileDirname }}/../work_dirs/mining_toy'  # as in the base
subset_dir = mining_work_dir + '/subsets'
train_dataloader = dict(
    sampler=dict(_delete_=True, type='RareConceptSampler', mining_dir=mining_work_dir,
                 group_weights=dict(Target=4.0, Rare=2.0, Common=1.0)),
    dataset=dict(
        _delete_=True,
        type='SubsetNuScenesDataset',
        data_root={{_base_.data_root}},
        ann_file=subset_dir + '/nuscenes_infos_train_random10_target10.pkl',
        db_info_path=subset_dir + '/nuscenes_dbinfos_train_random10_target10.pkl',
        pipeline={{_base_.train_pipeline}},
        metainfo={{_base_.metainfo}},
        test_mode=False,
        data_prefix={{_base_.data_prefix}},
        use_valid_flag=True,
        box_type_3d='LiDAR'))
