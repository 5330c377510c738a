# Toy CenterPoint on the random 20% baseline (same size and seed as the mined subset).
_base_ = ['./centerpoint_mined20_toy.py']
train_dataloader = dict(dataset=dict(dataset=dict(subset='random20')))
