"""Offline resolution of open_clip models (the embedder).

How ``resolve_open_clip_model`` resolves (first match wins; the models dir is
``model_loading.resolve_models_dir``):

``model_name`` an existing directory (or ``local-dir:<dir>``, or a folder of that name in the
models dir) holding ``open_clip_config.json`` + weights → that directory; ``hf-hub:<org>/<repo>``
→ its snapshot in the Hugging Face cache; a built-in architecture name with ``pretrained`` an
existing checkpoint file → that file; with ``pretrained`` a known tag (``laion2b_s34b_b79k``) →
the tag's weights in the models dir (the hub repo's folder), the Hugging Face cache or the
open_clip URL cache; with ``pretrained`` empty/None → random weights, for timing runs.
"""

from __future__ import annotations

import glob
import os
from dataclasses import dataclass, field
from typing import Dict, Optional

from .hf_models import hf_cache_dir
from .model_loading import ModelUnavailableError, expand_path, models_dir_folder, resolve_models_dir

__all__ = ['OpenClipSource', 'resolve_open_clip_model']

_OPEN_CLIP_CONFIG = 'open_clip_config.json'
_OPEN_CLIP_HF_WEIGHTS = ('open_clip_model.safetensors', 'open_clip_pytorch_model.bin')


@dataclass
class OpenClipSource:
    """What to pass to ``open_clip.create_model_and_transforms`` (all of it local)."""

    model_name: str  # a built-in architecture name, or 'local-dir:<dir>'
    pretrained: Optional[str] = None  # a local checkpoint file, or None (random / from the dir)
    # Preprocessing of the pretrained tag (mean/std/interpolation/resize mode): open_clip applies
    # it only when given the tag, and we give it the resolved file instead.
    preprocess_overrides: Dict[str, object] = field(default_factory=dict)


def _open_clip_dir(directory: str, model: str) -> OpenClipSource:
    if not os.path.isfile(os.path.join(directory, _OPEN_CLIP_CONFIG)):
        raise ModelUnavailableError(
            model,
            f'the directory {directory} has no {_OPEN_CLIP_CONFIG}',
            f'use a directory holding {_OPEN_CLIP_CONFIG} and its weights (e.g. an open_clip '
            'repo from the Hugging Face hub, downloaded with `hf download <repo> --local-dir`)',
        )
    if not any(glob.glob(os.path.join(directory, p)) for p in ('*.safetensors', '*.bin', '*.pth')):
        raise ModelUnavailableError(
            model, f'the directory {directory} holds no weights file', f'put the weights next to {_OPEN_CLIP_CONFIG}'
        )
    return OpenClipSource(model_name=f'local-dir:{directory}')


def _safetensors_twins(filename: str):
    # open_clip loads a .safetensors twin of a listed .bin/.pth when the repo has one.
    if filename == _OPEN_CLIP_HF_WEIGHTS[1]:
        yield _OPEN_CLIP_HF_WEIGHTS[0]
    elif filename.endswith(('.bin', '.pth')):
        yield filename[:-4] + '.safetensors'


def _hub_file(repo_id: str, filenames, cache_dir: Optional[str], allow_download: bool):
    """The first of ``filenames`` in the cache (or downloaded); None if none is."""
    from huggingface_hub import hf_hub_download

    for filename in filenames:
        try:
            return hf_hub_download(repo_id, filename, cache_dir=cache_dir, local_files_only=not allow_download)
        except Exception:  # noqa: BLE001 -- try the next candidate
            continue
    return None


def resolve_open_clip_model(
    model_name: str,
    pretrained: Optional[str],
    *,
    allow_download: bool = False,
    cache_dir: Optional[str] = None,
    config_key: str = 'embedder',
    models_dir: Optional[str] = None,
) -> OpenClipSource:
    """Resolve an open_clip (architecture, weights) pair to local files.

    Raises:
        ModelUnavailableError: the weights are neither local nor cached, or the name/tag is
            unknown.
    """
    import open_clip

    if model_name.startswith('local-dir:'):
        return _open_clip_dir(expand_path(model_name[len('local-dir:') :]), model_name)
    if os.path.isdir(expand_path(model_name)):
        return _open_clip_dir(expand_path(model_name), model_name)
    in_models_dir = os.path.join(resolve_models_dir(models_dir), model_name)
    if '/' not in model_name and os.path.isdir(in_models_dir):  # a folder name, not a path
        return _open_clip_dir(expand_path(in_models_dir), model_name)

    if model_name.startswith('hf-hub:'):
        repo_id = model_name[len('hf-hub:') :]
        local_dir = models_dir_folder(repo_id, models_dir)
        if os.path.isfile(os.path.join(local_dir, _OPEN_CLIP_CONFIG)):
            return _open_clip_dir(expand_path(local_dir), model_name)
        remedy = (
            f'run `hf download {repo_id} --local-dir {local_dir}` on a machine with internet and copy it '
            f'here (the models dir is searched first, so {config_key}.model_name can stay {model_name!r})'
        )
        config = _hub_file(repo_id, [_OPEN_CLIP_CONFIG], cache_dir, allow_download)
        weights = _hub_file(repo_id, _OPEN_CLIP_HF_WEIGHTS, cache_dir, allow_download)
        if config is None or weights is None:
            raise ModelUnavailableError(
                model_name,
                f'its config and weights are not in the Hugging Face cache ({hf_cache_dir(cache_dir)})',
                remedy,
            )
        # Both files sit in the same cached snapshot directory.
        return _open_clip_dir(os.path.dirname(config), model_name)

    architecture = model_name.replace('/', '-')  # open_clip's own spelling clean-up
    if open_clip.get_model_config(architecture) is None:
        raise ModelUnavailableError(
            model_name,
            'it is neither a local directory nor one of open_clip\'s architectures',
            f'set {config_key}.model_name to one of open_clip.list_models() or to a local '
            f'directory with {_OPEN_CLIP_CONFIG} and weights',
        )
    if not pretrained:
        return OpenClipSource(model_name=architecture)  # random weights, for timing runs
    if os.path.isfile(expand_path(pretrained)):
        return OpenClipSource(model_name=architecture, pretrained=expand_path(pretrained))

    tag_cfg = open_clip.get_pretrained_cfg(architecture, pretrained)
    if not tag_cfg:
        raise ModelUnavailableError(
            f'{model_name}/{pretrained}',
            'the pretrained value is neither a file nor a tag open_clip knows for this architecture',
            f'use one of {open_clip.list_pretrained_tags_by_model(architecture)} or a checkpoint file',
        )
    preprocess = {
        'image_mean': tag_cfg.get('mean'),
        'image_std': tag_cfg.get('std'),
        'image_interpolation': tag_cfg.get('interpolation'),
        'image_resize_mode': tag_cfg.get('resize_mode'),
    }
    preprocess = {k: v for k, v in preprocess.items() if v is not None}
    checkpoint, where, remedy = None, [], []
    if tag_cfg.get('hf_hub'):
        # 'org/repo/' (default file name) or 'org/repo/file.bin', as open_clip spells it.
        repo_id, filename = os.path.split(tag_cfg['hf_hub'])
        filename = filename or _OPEN_CLIP_HF_WEIGHTS[1]
        candidates = [*_safetensors_twins(filename), filename]
        local_dir = models_dir_folder(repo_id, models_dir)
        local = [os.path.join(local_dir, name) for name in candidates if os.path.isfile(os.path.join(local_dir, name))]
        checkpoint = expand_path(local[0]) if local else _hub_file(repo_id, candidates, cache_dir, allow_download)
        where.append(f'the models dir ({expand_path(local_dir)})')
        where.append(f'the Hugging Face cache ({hf_cache_dir(cache_dir)}, repo {repo_id})')
        remedy.append(
            f'run `hf download {repo_id} --local-dir {local_dir}` on a machine with internet and copy it here '
            f'(the models dir is searched first: {config_key} can stay as it is)'
        )
    if checkpoint is None and tag_cfg.get('url'):
        from open_clip.pretrained import download_pretrained_from_url

        clip_cache = cache_dir or os.path.expanduser('~/.cache/clip')
        target = os.path.join(clip_cache, os.path.basename(tag_cfg['url']))
        if os.path.isfile(target):
            checkpoint = target
        elif allow_download:
            try:
                checkpoint = download_pretrained_from_url(tag_cfg['url'], cache_dir=clip_cache)
            except Exception:  # noqa: BLE001
                checkpoint = None
        where.append(f'the open_clip URL cache ({clip_cache})')
        remedy.append(f'download {tag_cfg["url"]} and set {config_key}.pretrained to the file')
    if checkpoint is None:
        raise ModelUnavailableError(
            f'{model_name}/{pretrained}',
            f'its weights are not in {" or ".join(where)}',
            '; or '.join(remedy) + '; or build the component with allow_download=True',
        )
    return OpenClipSource(model_name=architecture, pretrained=checkpoint, preprocess_overrides=preprocess)
