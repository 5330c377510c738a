"""Registries of the mining pipeline's swappable components (built from mining configs).

mmdet3d's own registries (DATA_SAMPLERS, HOOKS, ...) are used for training-side pieces;
these hold the components of ``tools/mine.py``, one registry per stage.
"""
from mmengine.registry import Registry

FRAME_SOURCES = Registry('frame source', locations=['conceptminer3d.mining'])
DETECTORS_2D = Registry('2D detector', locations=['conceptminer3d.mining'])
EMBEDDERS = Registry('image/text embedder', locations=['conceptminer3d.mining'])
OUTLIER_DETECTORS = Registry('outlier detector', locations=['conceptminer3d.mining'])
CAPTIONERS = Registry('captioner', locations=['conceptminer3d.mining'])
