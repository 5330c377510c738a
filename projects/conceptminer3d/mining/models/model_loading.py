"""Offline-first resolution of model names and paths, for every model family the miner uses.

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

How each family resolves (first match wins):

* **YOLO** (``resolve_yolo_model``): an existing file (``.pt`` checkpoint, or any format
  ultralytics loads) → that file; an ultralytics architecture ``.yaml`` (``yolov8l.yaml``,
  shipped inside the package) → built with random weights, for timing runs; a bare checkpoint
  name (``yolov8l.pt``) → the models dir, then ultralytics' weights directory
  (``yolo settings weights_dir``).
* **open_clip** (``resolve_open_clip_model``): ``model_name`` an existing directory (or
  ``local-dir:<dir>``, or a folder of that name in the models dir) holding
  ``open_clip_config.json`` + weights → that directory;
  ``hf-hub:<org>/<repo>`` → its snapshot in the Hugging Face cache; a built-in architecture
  name with ``pretrained`` an existing checkpoint file → that file; with ``pretrained`` a
  known tag (``laion2b_s34b_b79k``) → the tag's weights in the models dir (the hub repo's
  folder), the Hugging Face cache or the open_clip URL cache; with ``pretrained`` empty/None
  → random weights, for timing runs.
* **Hugging Face transformers** (``resolve_hf_model``): an existing directory with a
  ``config.json`` → that directory; a repo id (``Qwen/Qwen2-VL-2B-Instruct``) → the repo's
  folder in the models dir (``Qwen2-VL-2B-Instruct/``), then its complete snapshot in the
  Hugging Face cache (``HF_HUB_CACHE``); a bare folder name → that folder in the models dir.
"""

from __future__ import annotations

import glob
import inspect
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Dict, Optional

__all__ = [
    'MODELS_DIR_ENV',
    'ModelUnavailableError',
    'OpenClipSource',
    'component_config',
    'resolve_models_dir',
    'resolve_hf_model',
    'resolve_yolo_model',
    'resolve_open_clip_model',
    'check_available',
]

MODELS_DIR_ENV = 'CONCEPTMINER3D_MODELS_DIR'
DEFAULT_MODELS_DIR = 'models'  # relative to the working directory, as the README's commands run
MODEL_COMPONENTS = ('detector', 'embedder', 'captioner')  # the mining config's model-backed keys
_HF_WEIGHT_PATTERNS = ('*.safetensors', '*.bin', '*.safetensors.index.json', '*.bin.index.json')
_OPEN_CLIP_CONFIG = 'open_clip_config.json'
_OPEN_CLIP_HF_WEIGHTS = ('open_clip_model.safetensors', 'open_clip_pytorch_model.bin')


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


def _expand(path: str) -> str:
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


def _local_dir_name(repo_id: str, directory: Optional[str] = None) -> str:
    return os.path.join(resolve_models_dir(directory), repo_id.rstrip('/').split('/')[-1])


def _looks_like_repo_id(name: str) -> bool:
    # 'org/name', as the hub spells repository ids; './x', '/x', '~/x' or 'a/b/c' are paths.
    parts = name.split('/')
    return len(parts) == 2 and all(parts) and not name.startswith(('.', '~'))


def _has_hf_weights(directory: str) -> bool:
    return any(glob.glob(os.path.join(directory, pattern)) for pattern in _HF_WEIGHT_PATTERNS)


def _hf_cache_dir(cache_dir: Optional[str]) -> str:
    from huggingface_hub import constants

    return cache_dir or constants.HF_HUB_CACHE


# --------------------------------------------------------------------------- transformers
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
    path = _expand(model)
    if os.path.isdir(path):
        if not os.path.isfile(os.path.join(path, 'config.json')):
            raise ModelUnavailableError(
                model,
                f'the directory {path} has no config.json',
                'point it at a directory written by save_pretrained() or by `hf download <repo> --local-dir <dir>`',
            )
        return path
    in_models_dir = _local_dir_name(model, models_dir)
    # Only a name (a folder name or a hub repo id) is looked up there: a path that is missing
    # stays an error, never another model of the same folder name.
    is_name = '/' not in model.strip('/') or _looks_like_repo_id(model) and not os.path.isdir(model.split('/')[0])
    if is_name and not os.path.isabs(model) and os.path.isfile(os.path.join(in_models_dir, 'config.json')):
        return _expand(in_models_dir)
    first = model.split('/')[0]
    if '/' not in model.strip('/') and not os.path.isabs(model) and not _looks_like_repo_id(model):
        # A bare folder name: it lives in the models dir, and is not there.
        raise ModelUnavailableError(
            model,
            f'no folder of that name in the models dir ({_expand(in_models_dir)}) or here',
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
        f'({_expand(resolve_models_dir(models_dir))}) is searched first, so {config_key} can stay {model!r}; '
        'or build the component with allow_download=True to fetch it into the Hugging Face cache'
    )
    from huggingface_hub import snapshot_download

    try:
        snapshot = snapshot_download(model, cache_dir=cache_dir, local_files_only=not allow_download)
    except Exception as error:  # noqa: BLE001 -- every hub failure means the same thing here
        reason = (
            f'it is not in the models dir ({_expand(local_dir)}) and not in the Hugging Face cache '
            f'({_hf_cache_dir(cache_dir)})'
        )
        if allow_download:
            reason = f'the download failed ({type(error).__name__}: {str(error).splitlines()[0]})'
        raise ModelUnavailableError(model, reason, remedy) from None
    if not (os.path.isfile(os.path.join(snapshot, 'config.json')) and _has_hf_weights(snapshot)):
        raise ModelUnavailableError(
            model, f'its Hugging Face cache entry {snapshot} is incomplete (config.json or weights missing)', remedy
        )
    return snapshot


# --------------------------------------------------------------------------- ultralytics YOLO
def _ultralytics_release() -> str:
    # The release ultralytics itself downloads its named assets from.
    from ultralytics.utils.downloads import attempt_download_asset

    return inspect.signature(attempt_download_asset).parameters['release'].default


def resolve_yolo_model(
    model: str, *, allow_download: bool = False, config_key: str = 'detector.model', models_dir: Optional[str] = None
) -> str:
    """What to pass to ``ultralytics.YOLO``: a local file, or a packaged architecture yaml.

    Raises:
        ModelUnavailableError: a checkpoint name that is neither a local file nor in
            ultralytics' weights directory (and ``allow_download`` is False).
    """
    path = _expand(model)
    if os.path.isfile(path):
        return path
    name = Path(model).name
    suffix = Path(model).suffix.lower()
    if suffix in ('.yaml', '.yml'):
        # Architecture configs ship inside ultralytics ('yolov8l.yaml' → yolov8.yaml, scale l):
        # the model is built with random weights, which is what speed measurements need.
        from ultralytics.nn.tasks import yaml_model_load

        try:
            yaml_model_load(model)
        except Exception:  # noqa: BLE001
            raise ModelUnavailableError(
                model,
                'no such file, and ultralytics ships no architecture config of that name',
                f"set {config_key} to a .pt checkpoint or to a config such as 'yolov8l.yaml'",
            ) from None
        return model
    if suffix != '.pt':
        raise ModelUnavailableError(model, f'no such file ({path})', f'set {config_key} to an existing checkpoint file')

    from ultralytics.utils import SETTINGS
    from ultralytics.utils.downloads import GITHUB_ASSETS_NAMES

    weights_dir = Path(SETTINGS['weights_dir'])
    is_asset = name in GITHUB_ASSETS_NAMES  # only these have a download to suggest
    url = f'https://github.com/ultralytics/assets/releases/download/{_ultralytics_release()}/{name}'
    if Path(model).parent != Path('.'):
        # A path with folders: the file is expected exactly there.
        target, reason = Path(path), f'no such file ({path})'
        remedy = f'download {url} to {path}' if is_asset else f'set {config_key} to an existing checkpoint file'
    else:
        # A bare name: the models dir, then ultralytics' weights directory (where it downloads to).
        in_models_dir = Path(_expand(resolve_models_dir(models_dir))) / name
        if in_models_dir.is_file():
            return str(in_models_dir)
        target = weights_dir / name
        if target.is_file():
            return str(target)
        reason = f'not in the models dir ({in_models_dir.parent}) or in ultralytics\' weights directory ({weights_dir})'
        if is_asset:
            remedy = (
                f'download it into the models dir: `wget {url} -P {resolve_models_dir(models_dir)}` '
                f'(or put it in ultralytics\' weights directory {weights_dir})'
            )
        else:
            remedy = (
                f'{name} is not one of ultralytics\' released checkpoints, so there is nothing to download: '
                f'put it in the models dir ({resolve_models_dir(models_dir)}) or set {config_key} to its path'
            )
    if is_asset:
        remedy += '; or build the component with allow_download=True'
    if not (allow_download and is_asset):
        raise ModelUnavailableError(model, reason, remedy)
    from ultralytics.utils.downloads import attempt_download_asset

    target.parent.mkdir(parents=True, exist_ok=True)
    try:
        downloaded = attempt_download_asset(target)
    except Exception as error:  # noqa: BLE001
        raise ModelUnavailableError(model, f'the download failed ({type(error).__name__}: {error})', remedy) from None
    if not os.path.isfile(downloaded):
        raise ModelUnavailableError(model, 'ultralytics has no asset of that name', remedy)
    return downloaded


# --------------------------------------------------------------------------- open_clip
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
        return _open_clip_dir(_expand(model_name[len('local-dir:') :]), model_name)
    if os.path.isdir(_expand(model_name)):
        return _open_clip_dir(_expand(model_name), model_name)
    in_models_dir = os.path.join(resolve_models_dir(models_dir), model_name)
    if '/' not in model_name and os.path.isdir(in_models_dir):  # a folder name, not a path
        return _open_clip_dir(_expand(in_models_dir), model_name)

    if model_name.startswith('hf-hub:'):
        repo_id = model_name[len('hf-hub:') :]
        local_dir = _local_dir_name(repo_id, models_dir)
        if os.path.isfile(os.path.join(local_dir, _OPEN_CLIP_CONFIG)):
            return _open_clip_dir(_expand(local_dir), model_name)
        remedy = (
            f'run `hf download {repo_id} --local-dir {local_dir}` on a machine with internet and copy it '
            f'here (the models dir is searched first, so {config_key}.model_name can stay {model_name!r})'
        )
        config = _hub_file(repo_id, [_OPEN_CLIP_CONFIG], cache_dir, allow_download)
        weights = _hub_file(repo_id, _OPEN_CLIP_HF_WEIGHTS, cache_dir, allow_download)
        if config is None or weights is None:
            raise ModelUnavailableError(
                model_name,
                f'its config and weights are not in the Hugging Face cache ({_hf_cache_dir(cache_dir)})',
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
    if os.path.isfile(_expand(pretrained)):
        return OpenClipSource(model_name=architecture, pretrained=_expand(pretrained))

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
        local_dir = _local_dir_name(repo_id, models_dir)
        local = [os.path.join(local_dir, name) for name in candidates if os.path.isfile(os.path.join(local_dir, name))]
        checkpoint = _expand(local[0]) if local else _hub_file(repo_id, candidates, cache_dir, allow_download)
        where.append(f'the models dir ({_expand(local_dir)})')
        where.append(f'the Hugging Face cache ({_hf_cache_dir(cache_dir)}, repo {repo_id})')
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


# --------------------------------------------------------------------------- config-level check
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
