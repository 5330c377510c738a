# Toy CenterPoint on the mined subset with RareConceptSampler instead of CBGS.
_base_ = ['./centerpoint_mined20_toy.py']
train_dataloader = dict(sampler=dict(_delete_=True, type='RareConceptSampler'),
                        dataset=dict(_delete_=True, **_base_.train_dataloader.dataset.dataset))
