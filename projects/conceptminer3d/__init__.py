"""ConceptMiner3D: mine rare and safety-critical objects from driving-scene camera images and
turn them into smaller, better training sets for MMDetection3D detectors.

Importing the package applies the compatibility shims for the pinned OpenMMLab stack
(see ``compat.py``) and registers the plugin's training modules in mmdet3d's registries
(configs load the plugin with ``custom_imports``). They are imported when a registry first
looks for a module, so mining does not pay for importing mmdet3d's datasets and models.
"""

import importlib

from .compat import apply_compat_shims
from .registry import TRAINING_MODULES, register_training_modules

apply_compat_shims()
register_training_modules()

__version__ = '0.1.0'

_MODULE_OF_CLASS = {name: location for _, location, names in TRAINING_MODULES for name in names}


def __getattr__(name):
    if name in _MODULE_OF_CLASS:
        return getattr(importlib.import_module(_MODULE_OF_CLASS[name]), name)
    raise AttributeError(f'module {__name__!r} has no attribute {name!r}')
