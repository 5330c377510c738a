"""Mining: from an info pickle to the tables of ``contracts.py``, in layers.

Each layer imports only from the layers below it (``tests/test_mining_pipeline.py`` checks
every module, subfolders included):

0. ``contracts.py`` — every table, the frame record and the file names: the data contract.
1. ``runtime/`` — how stages run, whatever they compute: files written whole, one writer per
   mining dir, the stage caches and hashes, one process or many, image decoding, the outputs
   assembled from the caches, the state a run hands from stage to stage, what a run records.
2. ``models/`` — where models come from (names, paths, the models dir), devices, and a model's
   identity.
3. ``stages/`` (frames, detection, crops, embedding, captioning, concepts; ``batches``: what one
   batch of the per-image stages yields) and ``outliers/``
   (the detectors, their shared neighbour search, scoring) — what is computed.
4. ``pipeline.py`` and ``annotations.py`` (the two concept sources) and ``fingerprint.py``
   (whether a finished run can be reused) — which join the stages into a run.

Importing the package registers every component in ``conceptminer3d.registry``; the
registries name this package as their ``locations``. The end-to-end entry points
(``run_mining``, ``load_mining_config``) live one level up, in ``conceptminer3d.apis``:
nothing here imports ``subsets`` or anything above it.
"""

from ..registry import CONCEPT_SOURCES
from .annotations import AnnotationConcepts
from .outliers import IsolationForestOutliers, KnnDistanceOutliers, LocalOutlierFactorOutliers
from .pipeline import MiningPipeline
from .runtime.cache import ItemCache, StageCache
from .stages.captioning import BlipCaptioner, Qwen2VLCaptioner
from .stages.detection import YoloDetector
from .stages.embedding import OpenClipEmbedder
from .stages.frames import InfoPickleFrames

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
