"""Offline resolution of ultralytics YOLO models (the detector).

How ``resolve_yolo_model`` resolves (first match wins; the models dir is
``model_loading.resolve_models_dir``):

an existing file (``.pt`` checkpoint, or any format ultralytics loads) → that file; an
ultralytics architecture ``.yaml`` (``yolov8l.yaml``, shipped inside the package) → built with
random weights, for timing runs; a bare checkpoint name (``yolov8l.pt``) → the models dir, then
ultralytics' weights directory (``yolo settings weights_dir``).
"""

from __future__ import annotations

import inspect
import os
from pathlib import Path
from typing import Optional

from .model_loading import ModelUnavailableError, expand_path, resolve_models_dir

__all__ = ['resolve_yolo_model']


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
    path = expand_path(model)
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
        in_models_dir = Path(expand_path(resolve_models_dir(models_dir))) / name
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
