"""ConceptMiner3D: mine rare and safety-critical objects from driving-scene camera images and
turn them into smaller, better training sets for MMDetection3D detectors.

Importing the package applies the compatibility shims for the pinned OpenMMLab stack
(see ``compat.py``) and registers the plugin's modules in mmdet3d's registries.
"""

from .compat import apply_compat_shims

apply_compat_shims()

# Registered in mmdet3d's registries on import (configs load the plugin with custom_imports).
from .datasets import SubsetCBGSDataset, SubsetNuScenesDataset  # noqa: E402,F401
from .hooks import DataMiningHook  # noqa: E402,F401
from .samplers import RareConceptSampler  # noqa: E402,F401

__version__ = '0.1.0'
