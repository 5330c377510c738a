"""Toy mining models: fixtures for the demo and the tests, never for real mining.

They stand beside ``world/`` (the toy dataset) and outside ``mining/``: the production
package loads models by path and knows nothing of these builders.

``random_init``: random weights in the real formats, built offline in seconds
(``tools/make_toy_models.py``), the captioners in ``random_init_captioners``. ``trained``: a
small YOLO and open_clip model trained on a toy world of their own, cached
(``tools/train_toy_mining_models.py``), with ``trained_data`` (labels and crops from the info
pickles), ``trained_yolo`` and ``trained_clip`` beside it.
"""

from .random_init import TOY_MODEL_FILES, TOY_MODELS_VERSION, build_toy_clip, build_toy_models, build_toy_yolo
from .random_init_captioners import (
    QWEN2_VL_2B_ARCHITECTURE,
    build_random_qwen2_vl_2b,
    build_toy_blip,
    build_toy_qwen2_vl,
)
from .trained import (
    TRAINED_TOY_MODEL_FILES,
    TRAINED_TOY_MODELS_VERSION,
    TrainedToyModelsSpec,
    build_trained_toy_models,
    evaluate_trained_toy_models,
    link_trained_toy_models,
)

__all__ = [
    'QWEN2_VL_2B_ARCHITECTURE',
    'TOY_MODEL_FILES',
    'TOY_MODELS_VERSION',
    'TRAINED_TOY_MODEL_FILES',
    'TRAINED_TOY_MODELS_VERSION',
    'TrainedToyModelsSpec',
    'build_random_qwen2_vl_2b',
    'build_toy_blip',
    'build_toy_clip',
    'build_toy_models',
    'build_toy_qwen2_vl',
    'build_toy_yolo',
    'build_trained_toy_models',
    'evaluate_trained_toy_models',
    'link_trained_toy_models',
]
