# The mined subset without CBGS: RareConceptSampler oversamples samples whose camera crops
# were mined as Target (x4) or Rare (x2) concepts, with a fixed epoch length reseeded
# every epoch. See projects/conceptminer3d/samplers/rare_concept_sampler.py for how this
# relates to CBGS.
_base_ = ['./centerpoint_mined20.py']
mining_work_dir = '{{ fileDirname }}/../work_dirs/mining_nuscenes'  # as in the base
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
        metainfo=dict(classes={{_base_.class_names}}),
        test_mode=False,
        data_prefix={{_base_.data_prefix}},
        use_valid_flag=True,
        box_type_3d='LiDAR'))
