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


# The training-side modules: the mmdet3d registry each registers in, where it lives, and the
# classes it defines. The datasets subclass mmdet3d's, whose import pulls in mmdet's models
# (seconds of start-up that ``tools/mine.py`` never needs), so they are registered the way
# mmdet3d registers its own modules: as a location the registry imports the first time it is
# searched.
TRAINING_MODULES = (
    ('DATASETS', 'conceptminer3d.datasets', ('SubsetCBGSDataset', 'SubsetNuScenesDataset')),
    ('DATA_SAMPLERS', 'conceptminer3d.samplers', ('RareConceptSampler',)),
    ('HOOKS', 'conceptminer3d.hooks', ('DataMiningHook',)),
    ('METRICS', 'conceptminer3d.metrics', ('VectorizedNuScenesMetric',)),
)


def register_training_modules() -> None:
    """Make the classes of ``TRAINING_MODULES`` findable in mmdet3d's registries, importing
    their modules on first search."""
    import importlib

    import mmdet3d.registry

    for registry_name, location, _ in TRAINING_MODULES:
        registry = getattr(mmdet3d.registry, registry_name)
        # mmengine reads a registry's locations once, at its first search (Registry._imported);
        # one searched already will not read them again.
        if registry._imported:
            importlib.import_module(location)
        elif location not in registry._locations:
            registry._locations.append(location)
