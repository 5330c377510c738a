"""Offline-first resolution of model names and paths: what the model families the miner uses share.

Each resolver turns what a mining config says (a name or a local path) into something on local
disk, or raises :class:`ModelUnavailableError` at once, with a message that names the model and
says how to provide it. Nothing here waits on the network unless the component was built with
``allow_download=True``: hub look-ups use ``local_files_only`` and the ultralytics asset lookup
is done by hand, so a machine without internet gets the clear error in well under a second
instead of a retry loop or a hub traceback.

Every family first looks in the **models dir** (``models_dir``: the mining config's key,
``tools/mine.py --models-dir``, else ``$CONCEPTMINER3D_MODELS_DIR``, else ``./models``), where the
download commands in the error messages put the default models: ``yolov8l.pt``, the open_clip
checkpoint's folder (``CLIP-ViT-B-32-laion2B-s34B-b79K/``), ``Qwen2-VL-2B-Instruct/``,
``blip-image-captioning-large/``: a config names them as it always did, by name or hub id.

Each family's resolver lives in a module of its own, whose docstring says how it resolves:
``yolo_models`` (``resolve_yolo_model``), ``open_clip_models`` (``resolve_open_clip_model``)
and ``hf_models`` (``resolve_hf_model``, Hugging Face transformers). This module holds what
they share: the error, the models dir, a component's config, and :func:`check_available`.
"""

from __future__ import annotations

import os
from typing import Optional

__all__ = [
    'DEFAULT_MODELS_DIR',
    'MODELS_DIR_ENV',
    'ModelUnavailableError',
    'component_config',
    'expand_path',
    'models_dir_folder',
    'resolve_models_dir',
    'check_available',
]

MODELS_DIR_ENV = 'CONCEPTMINER3D_MODELS_DIR'
DEFAULT_MODELS_DIR = 'models'  # relative to the working directory, as the README's commands run
MODEL_COMPONENTS = ('detector', 'embedder', 'captioner')  # the mining config's model-backed keys


class ModelUnavailableError(RuntimeError):
    """A model named in a config cannot be loaded from this machine without downloading it.

    Attributes:
        model: the name or path as given in the config.
        reason: why it was not found.
        remedy: how to provide it.
    """

    user_error = True  # the tools print its message as one line (conceptminer3d.cli)

    def __init__(self, model: str, reason: str, remedy: str):
        self.model, self.reason, self.remedy = model, reason, remedy
        super().__init__(f'Model {model!r} is not available offline: {reason}.\nTo provide it: {remedy}')


def expand_path(path: str) -> str:
    """``path`` with ``~`` expanded, made absolute."""
    return os.path.abspath(os.path.expanduser(path))


def resolve_models_dir(explicit: Optional[str] = None) -> str:
    """Where default model names resolve: ``explicit``, else ``$CONCEPTMINER3D_MODELS_DIR``,
    else ``./models``."""
    return explicit or os.environ.get(MODELS_DIR_ENV) or DEFAULT_MODELS_DIR


def component_config(cfg, key: str) -> Optional[dict]:
    """The mining config's model component ``key`` (``MODEL_COMPONENTS``) as a plain dict,
    given the config's ``models_dir`` unless it names one itself; None when it is off."""
    component = cfg.get(key)
    if component is None:
        return None
    component = component.to_dict() if hasattr(component, 'to_dict') else dict(component)
    if cfg.get('models_dir') and 'models_dir' not in component:
        component['models_dir'] = cfg.get('models_dir')
    return component


def models_dir_folder(repo_id: str, directory: Optional[str] = None) -> str:
    """The folder of ``repo_id`` (a hub repo id or a folder name: its last part) in the models dir
    ``directory`` (see :func:`resolve_models_dir`)."""
    return os.path.join(resolve_models_dir(directory), repo_id.rstrip('/').split('/')[-1])


def check_available(registry, cfg: dict):
    """Check, without building anything, that a component config's models load offline.

    Meant to run for every model-backed component before a mining run starts, so a missing
    captioner is reported before hours of detection, not after. ``registry`` is the
    component's registry (``DETECTORS_2D``, ``EMBEDDERS`` or ``CAPTIONERS``); the registered
    class must provide a ``check_available(**cfg)`` classmethod.

    Returns:
        What the component resolved its model to (a local path, or an ``OpenClipSource``).

    Raises:
        KeyError: ``cfg`` has no ``type``, or ``registry`` has no component of that name.
        ModelUnavailableError: as the component's constructor would.
    """
    cfg = dict(cfg)
    if 'type' not in cfg:
        raise KeyError(f'a {registry.name} config needs a type, got {cfg!r}')
    name = cfg.pop('type')
    component = registry.get(name)
    if component is None:
        raise KeyError(
            f'{registry.name} has no component named {name!r}; registered: {", ".join(sorted(registry.module_dict))}'
        )
    return component.check_available(**cfg)
