"""A small YOLO trained from scratch on a toy world's camera boxes, with ultralytics' own
trainer, offline; and its 2D mAP50 with ultralytics' own validator.

ultralytics reaches for the network in several places that a plain ``train()`` passes
through, even with ``plots=False``: ``check_det_dataset`` asks for its Arial font
(``checks.check_font``: an HTTP HEAD to its assets release when the font is not cached),
``Model.train`` checks PyPI for a newer release, and every trainer and validator gets the
integration callbacks (anonymous usage events, the Ultralytics Platform, experiment
trackers). ``offline_ultralytics`` turns those off for the duration of a call, whatever
ultralytics' settings file says and whether or not it was imported before.
"""

from __future__ import annotations

import contextlib
import os
import shutil
from dataclasses import asdict, dataclass
from typing import Dict, Iterator, Optional

import torch

from conceptminer3d.mining.stages.detection import keep_torch_threads

from .trained_data import CLASSES

__all__ = ['YoloTrainSettings', 'evaluate_yolo', 'offline_ultralytics', 'train_yolo']


@dataclass(frozen=True)
class YoloTrainSettings:
    """ultralytics training arguments (part of the trained models' cache key).

    Args:
        model: an ultralytics architecture yaml; trained from random weights.
        epochs, imgsz, batch: as ultralytics has them.
        mosaic, close_mosaic: mosaic augmentation and the final epochs without it.
        seed: ultralytics' training seed.
        num_threads: torch threads while training (ultralytics lowers them to cpu_count - 1
            on CPU); None: all cores. Not part of the result, so not of the cache key.
    """

    model: str = 'yolov8n.yaml'
    epochs: int = 20
    imgsz: int = 320
    batch: int = 16
    mosaic: float = 1.0
    close_mosaic: int = 5
    seed: int = 0
    num_threads: Optional[int] = None

    def key(self) -> dict:
        out = asdict(self)
        del out['num_threads']
        return out


def _local_font(font: str = 'Arial.ttf'):
    """``check_font`` without its download: the font if cached, else None (a training run with
    ``plots=False`` never draws text)."""
    from pathlib import Path

    from ultralytics.utils import USER_CONFIG_DIR

    path = USER_CONFIG_DIR / Path(font).name
    return path if path.exists() else None


@contextlib.contextmanager
def offline_ultralytics() -> Iterator[None]:
    """Run ultralytics without any network access (see the module docstring)."""
    from unittest import mock

    # Read at ultralytics' import: it then skips its DNS probe and treats itself as offline.
    os.environ.setdefault('YOLO_OFFLINE', '1')
    import ultralytics.data.utils
    import ultralytics.utils.callbacks
    import ultralytics.utils.checks

    with contextlib.ExitStack() as stack:
        stack.enter_context(mock.patch.object(ultralytics.utils.checks, 'ONLINE', False))
        stack.enter_context(mock.patch.object(ultralytics.data.utils, 'check_font', _local_font))
        stack.enter_context(
            mock.patch.object(ultralytics.utils.callbacks, 'add_integration_callbacks', lambda instance: None)
        )
        yield


def _set_threads(num_threads: Optional[int]):
    def callback(_trainer_or_validator) -> None:
        torch.set_num_threads(num_threads or os.cpu_count() or 1)

    return callback


def train_yolo(
    data_yaml: str,
    out_path: str,
    work_dir: str,
    settings: YoloTrainSettings = YoloTrainSettings(),
    verbose: bool = False,
) -> dict:
    """Train ``settings.model`` from scratch on the YOLO-format dataset ``data_yaml`` and save
    the final weights (EMA, stripped of the optimizer) to ``out_path``.

    ultralytics validates on the dataset's ``val`` split after the last epoch; that split
    should come from the training world too. Its run directory goes under ``work_dir``.

    Returns:
        dict: ultralytics' final validation metrics (``metrics/mAP50(B)`` ...).
    """
    with offline_ultralytics(), keep_torch_threads():
        from ultralytics import YOLO

        torch.manual_seed(settings.seed)
        model = YOLO(settings.model, task='detect', verbose=verbose)
        # ultralytics sets torch's threads to cpu_count - 1 when it picks the CPU device, i.e.
        # one thread on a 2-core machine; the callbacks run after that choice.
        model.add_callback('on_pretrain_routine_start', _set_threads(settings.num_threads))
        model.train(
            data=data_yaml,
            epochs=settings.epochs,
            imgsz=settings.imgsz,
            batch=settings.batch,
            mosaic=settings.mosaic,
            close_mosaic=settings.close_mosaic,
            seed=settings.seed,
            deterministic=True,
            device='cpu',
            workers=0,
            amp=False,
            plots=False,
            pretrained=False,
            project=os.path.abspath(work_dir),
            name='yolo',
            exist_ok=True,
            verbose=verbose,
            val=False,
        )
        trainer = model.trainer
        shutil.copyfile(trainer.last, out_path)
        return {k: float(v) for k, v in (trainer.metrics or {}).items()}


def evaluate_yolo(
    model_path: str,
    data_yaml: str,
    imgsz: int = 320,
    batch: int = 16,
    split: str = 'val',
    num_threads: Optional[int] = None,
) -> Dict[str, object]:
    """2D box AP of a YOLO checkpoint on a YOLO-format split, by ultralytics' validator
    (conf 0.001, IoU 0.7 NMS, the COCO-style 101-point AP).

    Returns:
        dict: ``map50``, ``map50_95``, ``precision``, ``recall`` and ``map50_per_class``
        (class name → AP50, for the classes that have labels in the split).
    """
    with offline_ultralytics(), keep_torch_threads():
        from ultralytics import YOLO

        model = YOLO(model_path, task='detect')
        model.add_callback('on_val_start', _set_threads(num_threads))
        metrics = model.val(
            data=data_yaml,
            split=split,
            imgsz=imgsz,
            batch=batch,
            device='cpu',
            workers=0,
            plots=False,
            verbose=False,
            save_json=False,
            # ultralytics makes a run directory even with plots off: beside the data, not in the cwd.
            project=os.path.dirname(os.path.abspath(data_yaml)),
            name='val',
            exist_ok=True,
        )
    box = metrics.box
    names = model.names
    per_class = {names[int(c)]: float(box.ap50[i]) for i, c in enumerate(box.ap_class_index)}
    return dict(
        map50=float(box.map50),
        map50_95=float(box.map),
        precision=float(box.mp),
        recall=float(box.mr),
        map50_per_class={name: per_class[name] for name in CLASSES if name in per_class},
    )
