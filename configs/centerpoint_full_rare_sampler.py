# The whole train set with RareConceptSampler instead of CBGS. The sampler weighs samples by
# the mining outputs, so the base's DataMiningHook stays; subset=None makes the dataset read
# the full train pickle (ann_file) and the full GT database, and its mining_dir still tells
# the sampler where the mining outputs are.
_base_ = ['./centerpoint_mined20_rare_sampler.py']
train_dataloader = dict(dataset=dict(subset=None))
