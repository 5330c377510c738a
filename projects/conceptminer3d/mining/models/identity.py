"""What a mining component's outputs depend on, for the stage caches' keys: the content of its
model files and its options, never how it runs (device, dtype, batch size) or where its files lie.
"""

from __future__ import annotations

import hashlib
import inspect
import os
from typing import Dict, Tuple

from ..runtime.hashing import file_sha256
from .devices import RUNTIME_ARGS
from .model_loading import check_available
from .open_clip_models import OpenClipSource

__all__ = ['content_digest', 'result_identity']
_digests: Dict[Tuple[str, int, int], str] = {}


def _file_digest(path: str) -> str:
    stat = os.stat(path)
    memo = (os.path.realpath(path), stat.st_size, stat.st_mtime_ns)  # re-hash a file only when it changes
    if memo not in _digests:
        _digests[memo] = file_sha256(path)[:32]
    return _digests[memo]


def content_digest(path: str) -> str:
    """A hash of what a file, or every file below a directory, holds: the same model gives the
    same digest wherever it is and however its path is spelled."""
    if os.path.isfile(path):
        return _file_digest(path)
    entries = []
    for directory, subdirs, files in os.walk(path, followlinks=True):
        subdirs[:] = sorted(d for d in subdirs if not d.startswith('.'))
        for name in sorted(files):
            if not name.startswith('.'):
                full = os.path.join(directory, name)
                entries.append((os.path.relpath(full, path), _file_digest(full)))
    return hashlib.sha256(repr(entries).encode()).hexdigest()[:32]


def _model_digest(resolved) -> str:
    if isinstance(resolved, OpenClipSource):
        name = resolved.model_name
        if name.startswith('local-dir:'):
            return content_digest(name[len('local-dir:') :])
        # A built-in architecture: random weights when no checkpoint, else the checkpoint's content.
        return f'{name}:{content_digest(resolved.pretrained) if resolved.pretrained else "random"}'
    if os.path.exists(str(resolved)):
        return content_digest(str(resolved))
    return str(resolved)  # an architecture yaml shipped inside ultralytics: random weights


def result_identity(registry, cfg: dict) -> dict:
    """What a component's outputs depend on: its type, the content of its model files and its
    options, without what only changes how it runs (``devices.RUNTIME_ARGS``: device, dtype,
    batch size, ...) or how its model is named. Caches are keyed by this, so mining with
    another batch size, on another device or with the weights at another path reuses them.

    Raises:
        ModelUnavailableError: as ``check_available``.
    """
    resolved = check_available(registry, cfg)
    # Defaults filled in, so that spelling out a default value keeps the key.
    defaults = {
        name: p.default
        for name, p in inspect.signature(registry.get(cfg['type'])).parameters.items()
        if p.default is not inspect.Parameter.empty
    }
    options = {k: v for k, v in {**defaults, **cfg}.items() if k not in RUNTIME_ARGS and k not in _MODEL_ARGS}
    return dict(options, weights=_model_digest(resolved))


# The arguments that name a model (a path, a hub id, a tag): replaced by ``weights``.
_MODEL_ARGS = frozenset({'model', 'model_name', 'pretrained'})
