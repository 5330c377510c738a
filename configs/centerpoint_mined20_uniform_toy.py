# Toy CenterPoint on the mined subset by the original, uniform Target rule.
_base_ = ['./centerpoint_mined20_toy.py']
custom_hooks = [dict(_base_.custom_hooks[0], subsets=dict(selection='uniform'))]
train_dataloader = dict(dataset=dict(dataset=dict(subset='random10_target10_uniform')))
