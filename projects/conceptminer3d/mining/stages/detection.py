"""2D object detection on camera images: the first stage of mining (boxes to crop).

Config example::

    detector = dict(type='YoloDetector', model='models/yolov8l.pt', conf=0.3, iou=0.45)
"""

from __future__ import annotations

from contextlib import contextmanager
from dataclasses import dataclass
from typing import Dict, Iterator, List, Optional, Sequence, Union

import numpy as np
import torch

from ...registry import DETECTORS_2D
from ..models.devices import batch_size_for, resolve_device, resolve_dtype
from ..models.yolo_models import resolve_yolo_model

__all__ = ['Detections', 'YoloDetector', 'keep_torch_threads']


@dataclass(frozen=True, eq=False)
class Detections:
    """The 2D detections of one image."""

    boxes_xyxy: np.ndarray  # (n, 4) float32, pixels of the original image
    scores: np.ndarray  # (n,) float32
    labels: np.ndarray  # (n,) int64, keys of the detector's ``class_names``

    def __len__(self) -> int:
        return len(self.scores)

    @classmethod
    def empty(cls) -> Detections:
        return cls(np.zeros((0, 4), np.float32), np.zeros(0, np.float32), np.zeros(0, np.int64))


@contextmanager
def keep_torch_threads(num_threads: Optional[int] = None) -> Iterator[None]:
    """Run a block, then set torch's intra-op thread count to ``num_threads`` (default: the
    count before the block).

    ultralytics sets it to ``min(8, cpu_count - 1)`` when its predictor is set up, and the
    setting outlives the call: on a 2-core machine every later model in the process (CLIP,
    the captioner) would run on one thread, at half speed.
    """
    before = torch.get_num_threads()
    try:
        yield
    finally:
        torch.set_num_threads(num_threads or before)


def _ultralytics_device(device: torch.device) -> str:
    # ultralytics spells a GPU by its index ('0'); a bare 'cuda' means the current one.
    if device.type == 'cuda':
        return str(torch.cuda.current_device() if device.index is None else device.index)
    return device.type


def _batches(items: Sequence, size: int) -> Iterator[Sequence]:
    for start in range(0, len(items), size):
        yield items[start : start + size]


@DETECTORS_2D.register_module()
class YoloDetector:
    """An ultralytics YOLO detector on lists of RGB images.

    Args:
        model: a checkpoint (``'models/yolov8l.pt'``, or a bare asset name found in
            ultralytics' weights directory) or an architecture yaml (``'yolov8l.yaml'``,
            random weights, for timing runs). See ``yolo_models.resolve_yolo_model``.
        conf: minimum confidence.
        iou: NMS IoU threshold.
        max_det: at most this many boxes per image.
        imgsz: inference size (the long side, letterboxed).
        batch_size: images per model call; None: 1 on the CPU (batching does not pay there),
            64 on a GPU.
        device: torch device string (``'cpu'``, ``'cuda:0'``) or ``'auto'`` (see
            ``devices.resolve_device``).
        dtype: ``'auto'`` (half precision on a GPU, float32 on the CPU) or a torch dtype name;
            ultralytics' half precision is float16, so any 16-bit dtype runs as float16.
        classes: keep only these classes (ids or names of ``class_names``); None keeps all.
        num_threads: torch intra-op threads after each call; None keeps the count the process
            had before (see ``keep_torch_threads``).
        allow_download: fetch a missing checkpoint from the ultralytics assets release.
        models_dir: where a bare checkpoint name resolves first (see
            ``model_loading.resolve_models_dir``).
    """

    default_batch_size = dict(cpu=1, cuda=64)

    def __init__(
        self,
        model: str = 'yolov8l.pt',
        conf: float = 0.3,
        iou: float = 0.45,
        max_det: int = 100,
        imgsz: int = 640,
        batch_size: Optional[int] = None,
        device: str = 'auto',
        dtype: Union[str, torch.dtype] = 'auto',
        classes: Optional[Sequence[Union[int, str]]] = None,
        num_threads: Optional[int] = None,
        allow_download: bool = False,
        models_dir: Optional[str] = None,
    ):
        from ultralytics import YOLO

        self.model_path = self.check_available(model, allow_download, models_dir)
        self.conf, self.iou, self.max_det, self.imgsz = conf, iou, max_det, imgsz
        self.device = resolve_device(device)
        self.batch_size = batch_size_for(batch_size, self.device, **self.default_batch_size)
        self.half = self.device.type == 'cuda' and resolve_dtype(dtype, self.device).itemsize == 2
        self.num_threads = num_threads
        self.model = YOLO(self.model_path, task='detect')
        self.class_names: Dict[int, str] = {int(k): v for k, v in self.model.names.items()}
        self.classes = self._class_ids(classes)
        # Set the predictor up now, on a dummy image, so that its thread reset happens here,
        # is undone here, and every real batch runs with the thread count we want. At the
        # smallest input size (one stride): a full-size dummy forward costs a real image's time.
        with keep_torch_threads(num_threads):
            self._predict([np.zeros((32, 32, 3), np.uint8)], imgsz=32)

    @classmethod
    def check_available(
        cls, model: str = 'yolov8l.pt', allow_download: bool = False, models_dir: Optional[str] = None, **_other_args
    ) -> str:
        """The local model file (or packaged yaml) for ``model``; raises
        ``ModelUnavailableError`` if it cannot be had offline."""
        return resolve_yolo_model(
            model, allow_download=allow_download, config_key='detector.model', models_dir=models_dir
        )

    def _class_ids(self, classes) -> Optional[List[int]]:
        if classes is None:
            return None
        ids_by_name = {name: i for i, name in self.class_names.items()}
        ids = []
        for c in classes:
            if isinstance(c, str):
                if c not in ids_by_name:
                    raise KeyError(f'{c!r} is not a class of {self.model_path}; it has {sorted(ids_by_name)}')
                ids.append(ids_by_name[c])
            else:
                ids.append(int(c))
        return ids

    def _predict(self, images_bgr: List[np.ndarray], imgsz: Optional[int] = None):
        return self.model.predict(
            images_bgr,
            conf=self.conf,
            iou=self.iou,
            max_det=self.max_det,
            imgsz=imgsz or self.imgsz,
            device=_ultralytics_device(self.device),
            quantize=16 if self.half else None,  # 'half' is deprecated since ultralytics 8.4
            classes=self.classes,
            batch=len(images_bgr),
            verbose=False,
        )

    def detect(self, images: Sequence[np.ndarray]) -> List[Detections]:
        """Detect objects in RGB ``uint8`` images of shape (H, W, 3), of any sizes.

        Returns one ``Detections`` per image, in input order, with boxes in the pixel
        coordinates of that image. One model call per ``batch_size`` images.
        """
        for i, image in enumerate(images):
            if not (
                isinstance(image, np.ndarray) and image.ndim == 3 and image.shape[2] == 3 and image.dtype == np.uint8
            ):
                raise ValueError(
                    f'image {i}: expected an RGB uint8 array (H, W, 3), got '
                    f'{type(image).__name__} {getattr(image, "shape", "")} '
                    f'{getattr(image, "dtype", "")}'
                )
        detections: List[Detections] = []
        for batch in _batches(list(images), self.batch_size):
            # ultralytics reads numpy arrays as OpenCV BGR; contiguous, because cv2 rejects
            # negative strides.
            batch_bgr = [np.ascontiguousarray(image[..., ::-1]) for image in batch]
            with keep_torch_threads(self.num_threads):
                results = self._predict(batch_bgr)
            assert len(results) == len(batch), 'ultralytics returned a result per image'
            for result in results:
                boxes = result.boxes
                detections.append(
                    Detections(
                        boxes_xyxy=boxes.xyxy.cpu().numpy().astype(np.float32).reshape(-1, 4),
                        scores=boxes.conf.cpu().numpy().astype(np.float32),
                        labels=boxes.cls.cpu().numpy().astype(np.int64),
                    )
                )
        return detections
