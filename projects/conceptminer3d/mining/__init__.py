"""The mining stages (``pipeline.py`` runs them; every table is defined in ``contracts.py``).

Importing the package registers every component in ``conceptminer3d.registry``; the
registries name this package as their ``locations``. The end-to-end entry points
(``run_mining``, ``load_mining_config``) live one level up, in ``conceptminer3d.apis``:
nothing here imports ``subsets`` or anything above it.
"""

from ..registry import CONCEPT_SOURCES
from .annotations import AnnotationConcepts
from .cache import ItemCache, StageCache
from .captioning import BlipCaptioner, Qwen2VLCaptioner
from .detection import YoloDetector
from .embedding import OpenClipEmbedder
from .frames import InfoPickleFrames
from .outliers import IsolationForestOutliers, KnnDistanceOutliers, LocalOutlierFactorOutliers
from .pipeline import MiningPipeline

# The 2D pipeline is the concept source of every config that names none (see apis.run_mining).
CONCEPT_SOURCES.register_module(module=MiningPipeline)

__all__ = [
    'AnnotationConcepts',
    'BlipCaptioner',
    'InfoPickleFrames',
    'ItemCache',
    'IsolationForestOutliers',
    'KnnDistanceOutliers',
    'LocalOutlierFactorOutliers',
    'MiningPipeline',
    'OpenClipEmbedder',
    'Qwen2VLCaptioner',
    'StageCache',
    'YoloDetector',
]
