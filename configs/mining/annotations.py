# Concepts from the 3D ground truth instead of the 2D models: every annotated box is projected
# into each camera and named by its class (AnnotationConcepts, mining/annotations.py). No
# model is built. It writes the same tables as the 2D pipeline, so the subsets, the subset
# configs and RareConceptSampler read it unchanged: an upper bound for what the 2D pipeline
# could find, and mining for data that already has 3D labels. Cameras, crops.min_size, the
# vocabulary (its Target / Common lists) and the subsets come from default.py.
_base_ = ['./default.py']
# class_to_concept: {3D class: concept} for classes whose concept has another name in the
# vocabulary; a class whose concept is not in the vocabulary gives no crop (counted in the
# manifest). valid_only=True keeps only boxes with lidar or radar points, the boxes a lidar
# detector trains on (use_valid_flag): a box without points is no evidence for it, and counting
# such boxes sent the coverage selection after occluded trailers (tools/evaluate_selection.py on
# the benchmark world, seed 0: 1.24x random in rare training boxes with them, 1.46x without). Set False
# to mine for a camera model, which sees what the lidar missed.
concept_source = dict(type='AnnotationConcepts', class_to_concept={}, valid_only=True)
# Read by the 2D pipeline only; set to None so that a run's manifest shows no model was used.
detector = None
embedder = None
captioner = None
outliers = None
caption_selection = None
