# Toy CenterPoint on the whole toy train set with RareConceptSampler instead of CBGS.
_base_ = ['./centerpoint_mined20_rare_sampler_toy.py']
train_dataloader = dict(dataset=dict(subset=None))
