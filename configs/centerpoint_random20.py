# CenterPoint pillar02 trained on the random 20% baseline: same size and seed as the mined
# subset, written by the same subset stage (so the hook runs here too).
_base_ = ['./centerpoint_mined20.py']
train_dataloader = dict(dataset=dict(dataset=dict(subset='random20')))
