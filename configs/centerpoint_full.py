# Full-data baseline: mmdet3d's stock CenterPoint pillar02 (CBGS, GT sampling from the whole
# train set) on nuScenes under data/nuscenes/. The random20 / mined20 configs differ from it
# only in the train set (and, for *_rare_sampler, the sampler).
_base_ = ['mmdet3d::centerpoint/centerpoint_pillar02_second_secfpn_8xb4-cyclic-20e_nus-3d.py']
custom_imports = dict(imports=['conceptminer3d'], allow_failed_imports=False)
