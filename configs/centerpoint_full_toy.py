# Toy full-data baseline: the toy CenterPoint on the whole toy train set.
_base_ = ['./centerpoint_pillar_toy.py']
