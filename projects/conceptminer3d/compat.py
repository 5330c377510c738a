"""Compatibility shims for the pinned OpenMMLab stack on current numpy / torch, and for
ultralytics on a machine that must never install packages at run time.

Applied once when the plugin is imported. Each shim names the upstream bug it works
around; delete it when the pinned version carries the fix.
"""

from __future__ import annotations

import collections
import importlib.abc
import importlib.util
import os
import sys
import types

import numpy as np
import torch

_applied = False


def _restore_np_long() -> None:
    # mmdet3d 1.4.0, datasets/transforms/dbsampler.py (DataBaseSampler.sample_all) builds
    # an index array with dtype=np.long, an alias numpy removed in 1.24; ObjectSample (GT
    # sampling) then fails with AttributeError. Fixed upstream on mmdet3d's dev-1.x branch.
    if 'long' not in np.__dict__:
        np.long = np.int64


class _TorchWithTrustedCheckpoints(types.ModuleType):
    """torch, except that ``load`` defaults to ``weights_only=False``."""

    def __init__(self):
        super().__init__('torch')

    def __getattr__(self, name):
        return getattr(torch, name)

    @staticmethod
    def load(*args, **kwargs):
        kwargs.setdefault('weights_only', False)
        return torch.load(*args, **kwargs)


def _trust_mmengine_checkpoints() -> None:
    # mmengine 0.10.7, runner/checkpoint.py calls torch.load(...) without weights_only;
    # torch >= 2.6 defaults to weights_only=True, and mmengine checkpoints hold pickled
    # objects (message hub, config, numpy scalars), so load_from / --resume fail with
    # UnpicklingError. Scoped to mmengine's checkpoint module:
    # torch.load elsewhere keeps its safe default.
    _after_import('mmengine.runner.checkpoint', _trust_checkpoints_of)


def _trust_checkpoints_of(checkpoint: types.ModuleType) -> None:
    if not isinstance(checkpoint.torch, _TorchWithTrustedCheckpoints):
        checkpoint.torch = _TorchWithTrustedCheckpoints()


class _PatchAfterImport(importlib.abc.MetaPathFinder):
    """Calls ``patch(module)`` once ``module_name`` has been executed, whoever imports it."""

    def __init__(self, module_name: str, patch):
        self.module_name, self.patch = module_name, patch

    def find_spec(self, fullname, path, target=None):
        if fullname != self.module_name:
            return None
        sys.meta_path.remove(self)
        spec = importlib.util.find_spec(fullname)
        if spec is None or spec.loader is None:
            return spec
        exec_module = spec.loader.exec_module

        def exec_then_patch(module):
            exec_module(module)
            self.patch(module)

        spec.loader.exec_module = exec_then_patch
        return spec


def _after_import(module_name: str, patch) -> None:
    # Importing mmengine.runner costs seconds (it pulls in mmengine's optimizers and, through
    # them, transformers); a process that never loads a checkpoint (tools/mine.py) never pays it.
    if module_name in sys.modules:
        patch(sys.modules[module_name])
    else:
        sys.meta_path.insert(0, _PatchAfterImport(module_name, patch))


_PRETTY_TEXTS_KEPT = 8


def _cache_config_text() -> None:
    # mmengine 0.10.7, config/config.py (Config.pretty_text) formats the whole config with yapf
    # on every access: 2.4 s for a toy CenterPoint config on 2 cores, and the Runner reads it
    # when it starts, when it dumps the config and in the meta of every checkpoint, so a short
    # training run spent more time in yapf than in some of its epochs. The text is a function
    # of the config's content: the last few are kept, keyed by that content.
    _after_import('mmengine.config.config', _cache_pretty_text_of)


def _cache_pretty_text_of(module: types.ModuleType) -> None:
    prop = module.Config.pretty_text
    if getattr(prop.fget, 'cached', False):
        return
    format_text, kept = prop.fget, collections.OrderedDict()

    def pretty_text(self) -> str:
        key = (self.filename, repr(self._cfg_dict))
        if key not in kept:
            kept[key] = format_text(self)
            while len(kept) > _PRETTY_TEXTS_KEPT:
                kept.popitem(last=False)
        kept.move_to_end(key)
        return kept[key]

    pretty_text.cached = True
    module.Config.pretty_text = property(pretty_text, doc=prop.__doc__)


def disable_ultralytics_autoinstall() -> None:
    # ultralytics 8.3 pip-installs missing optional packages at run time (YOLO_AUTOINSTALL,
    # default on): its patched PIL.Image.open answers an unidentifiable image with
    # check_requirements('pi-heif'). A mining run must not change its environment, and
    # without a network the install fails anyway. The flag is read when ultralytics is
    # imported, so it is also set on the modules of an ultralytics imported before us.
    os.environ['YOLO_AUTOINSTALL'] = 'False'
    for name in ('ultralytics.utils', 'ultralytics.utils.checks'):
        module = sys.modules.get(name)
        if module is not None and hasattr(module, 'AUTOINSTALL'):
            module.AUTOINSTALL = False


def apply_compat_shims() -> None:
    global _applied
    if not _applied:
        _restore_np_long()
        _trust_mmengine_checkpoints()
        _cache_config_text()
        disable_ultralytics_autoinstall()
        _applied = True
