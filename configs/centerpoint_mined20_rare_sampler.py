# The mined subset without CBGS: RareConceptSampler oversamples samples whose camera crops
# were mined as Target (x4) or Rare (x2) concepts, with a fixed epoch length reseeded
# every epoch. See projects/conceptminer3d/samplers/rare_concept_sampler.py for how this
# relates to CBGS.
_base_ = ['./centerpoint_mined20.py']
# The train set is the base's CBGS-wrapped dataset, unwrapped; the sampler reads the mining
# outputs from that dataset's mining_dir.
train_dataloader = dict(sampler=dict(_delete_=True, type='RareConceptSampler'),
                        dataset=dict(_delete_=True, **_base_.train_dataloader.dataset.dataset))
