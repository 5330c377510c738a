"""ConceptMiner3D: mine rare and safety-critical objects from driving-scene camera images and
turn them into smaller, better training sets for MMDetection3D detectors.

Importing the package applies the compatibility shims for the pinned OpenMMLab stack
(see ``compat.py``) and registers the plugin's training modules in mmdet3d's registries
(configs load the plugin with ``custom_imports``). They are imported when a registry first
looks for a module, so mining does not pay for importing mmdet3d's datasets and models.
"""

import importlib

from .compat import apply_compat_shims
from .registry import register_training_modules

apply_compat_shims()
register_training_modules()

__version__ = '0.1.0'

_TRAINING_MODULES = dict(
    SubsetCBGSDataset='datasets',
    SubsetNuScenesDataset='datasets',
    DataMiningHook='hooks',
    RareConceptSampler='samplers',
)


def __getattr__(name):
    if name in _TRAINING_MODULES:
        return getattr(importlib.import_module(f'.{_TRAINING_MODULES[name]}', __name__), name)
    raise AttributeError(f'module {__name__!r} has no attribute {name!r}')
