"""Registries of the mining pipeline's swappable components (built from mining configs).

mmdet3d's own registries (DATA_SAMPLERS, HOOKS, ...) are used for training-side pieces;
these hold the components of ``tools/mine.py``, one registry per stage.
"""

from mmengine.registry import DefaultScope, Registry

SCOPE = 'conceptminer3d'
FRAME_SOURCES = Registry('frame source', scope=SCOPE, locations=['conceptminer3d.mining'])
DETECTORS_2D = Registry('2D detector', scope=SCOPE, locations=['conceptminer3d.mining'])
EMBEDDERS = Registry('image/text embedder', scope=SCOPE, locations=['conceptminer3d.mining'])
OUTLIER_DETECTORS = Registry('outlier detector', scope=SCOPE, locations=['conceptminer3d.mining'])
CAPTIONERS = Registry('captioner', scope=SCOPE, locations=['conceptminer3d.mining'])
# What turns frames into crops and concepts: the 2D models (MiningPipeline, the default) or
# the 3D ground truth (AnnotationConcepts). Built with the whole mining config.
CONCEPT_SOURCES = Registry('concept source', scope=SCOPE, locations=['conceptminer3d.mining'])


def build_component(registry: Registry, cfg, default_args=None):
    """Build from one of these registries, also while mmdet3d is the default scope (inside
    a training run, e.g. from DataMiningHook), without mmengine's cross-scope fallback."""
    with DefaultScope.overwrite_default_scope(SCOPE):
        return registry.build(cfg, default_args=default_args)
