# The mined subset by the original rule: Target slots drawn uniformly among the samples with a
# Target crop, not ranked by their rare concepts. Same mining dir as centerpoint_mined20.py
# (mining is the costly part, and its cache lives there); the rule is in the subset's name
# (SubsetSpec.name), so the two subsets never overwrite each other.
_base_ = ['./centerpoint_mined20.py']
custom_hooks = [dict(_base_.custom_hooks[0], subsets=dict(selection='uniform'))]
train_dataloader = dict(dataset=dict(dataset=dict(subset='random10_target10_uniform')))
