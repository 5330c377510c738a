# CenterPoint pillar02 trained on the coreset 20% baseline (k-center greedy over the mined CLIP
# embeddings, the curation tools' standard): same size and seed as the mined subset, written
# by the same subset stage (so the hook runs here too).
_base_ = ['./centerpoint_mined20.py']
train_dataloader = dict(dataset=dict(dataset=dict(subset='coreset20')))
