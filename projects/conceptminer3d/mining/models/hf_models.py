"""Offline resolution of Hugging Face transformers models (the captioners), and where the
Hugging Face cache is (``open_clip_models`` looks there too).

How ``resolve_hf_model`` resolves (first match wins; the models dir is
``model_loading.resolve_models_dir``):

an existing directory with a ``config.json`` → that directory; a repo id
(``Qwen/Qwen2-VL-2B-Instruct``) → the repo's folder in the models dir (``Qwen2-VL-2B-Instruct/``),
then its complete snapshot in the Hugging Face cache (``HF_HUB_CACHE``); a bare folder name →
that folder in the models dir.
"""

from __future__ import annotations

import glob
import os
from typing import Optional

from .model_loading import (
    DEFAULT_MODELS_DIR,
    MODELS_DIR_ENV,
    ModelUnavailableError,
    expand_path,
    models_dir_folder,
    resolve_models_dir,
)

__all__ = ['hf_cache_dir', 'resolve_hf_model']

_HF_WEIGHT_PATTERNS = ('*.safetensors', '*.bin', '*.safetensors.index.json', '*.bin.index.json')


def _looks_like_repo_id(name: str) -> bool:
    # 'org/name', as the hub spells repository ids; './x', '/x', '~/x' or 'a/b/c' are paths.
    parts = name.split('/')
    return len(parts) == 2 and all(parts) and not name.startswith(('.', '~'))


def _has_hf_weights(directory: str) -> bool:
    return any(glob.glob(os.path.join(directory, pattern)) for pattern in _HF_WEIGHT_PATTERNS)


def hf_cache_dir(cache_dir: Optional[str]) -> str:
    """``cache_dir``, else the Hugging Face cache (``HF_HUB_CACHE``)."""
    from huggingface_hub import constants

    return cache_dir or constants.HF_HUB_CACHE


def resolve_hf_model(
    model: str,
    *,
    allow_download: bool = False,
    cache_dir: Optional[str] = None,
    config_key: str = 'model',
    example_repo: Optional[str] = None,
    models_dir: Optional[str] = None,
) -> str:
    """Local directory of a transformers model given by local directory or hub repo id.

    Args:
        model: a directory written by ``save_pretrained`` (or ``hf download --local-dir``),
            or a hub repo id such as ``'Qwen/Qwen2-VL-2B-Instruct'``.
        allow_download: fetch a repo id missing from the cache (needs internet).
        cache_dir: Hugging Face cache to look in (default: ``HF_HUB_CACHE``).
        config_key: how the config names this field, for the error message
            (e.g. ``'captioner.model'``).
        example_repo: a repo id to suggest when ``model`` is a missing local directory.
        models_dir: where default names resolve (see the module docstring).

    Raises:
        ModelUnavailableError: not a local model directory and not (completely) cached.
    """
    path = expand_path(model)
    if os.path.isdir(path):
        if not os.path.isfile(os.path.join(path, 'config.json')):
            raise ModelUnavailableError(
                model,
                f'the directory {path} has no config.json',
                'point it at a directory written by save_pretrained() or by `hf download <repo> --local-dir <dir>`',
            )
        return path
    in_models_dir = models_dir_folder(model, models_dir)
    # Only a name (a folder name or a hub repo id) is looked up there: a path that is missing
    # stays an error, never another model of the same folder name.
    is_name = '/' not in model.strip('/') or _looks_like_repo_id(model) and not os.path.isdir(model.split('/')[0])
    if is_name and not os.path.isabs(model) and os.path.isfile(os.path.join(in_models_dir, 'config.json')):
        return expand_path(in_models_dir)
    first = model.split('/')[0]
    if '/' not in model.strip('/') and not os.path.isabs(model) and not _looks_like_repo_id(model):
        # A bare folder name: it lives in the models dir, and is not there.
        raise ModelUnavailableError(
            model,
            f'no folder of that name in the models dir ({expand_path(in_models_dir)}) or here',
            f'put the model folder at {in_models_dir} (`hf download {example_repo or "<org>/<name>"} '
            f'--local-dir {in_models_dir}` on a machine with internet), or point the models dir at the folder '
            f'that holds it (models_dir=, --models-dir or ${MODELS_DIR_ENV})',
        )
    if not _looks_like_repo_id(model) or first == DEFAULT_MODELS_DIR or os.path.isdir(first):
        # Meant as a local path ('models/x', './x', '/abs/x'), and nothing is there.
        raise ModelUnavailableError(
            model,
            f'no such directory ({path})',
            f'on a machine with internet run `hf download {example_repo or "<org>/<name>"} '
            f'--local-dir {model}` and copy {model} here, or set {config_key} to an existing '
            'model directory or a hub repo id',
        )

    local_dir = in_models_dir
    remedy = (
        f'on a machine with internet run `hf download {model} --local-dir {local_dir}` '
        f'(older huggingface_hub: `huggingface-cli download ...`) and copy {local_dir} here: the models dir '
        f'({expand_path(resolve_models_dir(models_dir))}) is searched first, so {config_key} can stay {model!r}; '
        'or build the component with allow_download=True to fetch it into the Hugging Face cache'
    )
    from huggingface_hub import snapshot_download

    try:
        snapshot = snapshot_download(model, cache_dir=cache_dir, local_files_only=not allow_download)
    except Exception as error:  # noqa: BLE001 -- every hub failure means the same thing here
        reason = (
            f'it is not in the models dir ({expand_path(local_dir)}) and not in the Hugging Face cache '
            f'({hf_cache_dir(cache_dir)})'
        )
        if allow_download:
            reason = f'the download failed ({type(error).__name__}: {str(error).splitlines()[0]})'
        raise ModelUnavailableError(model, reason, remedy) from None
    if not (os.path.isfile(os.path.join(snapshot, 'config.json')) and _has_hf_weights(snapshot)):
        raise ModelUnavailableError(
            model, f'its Hugging Face cache entry {snapshot} is incomplete (config.json or weights missing)', remedy
        )
    return snapshot
