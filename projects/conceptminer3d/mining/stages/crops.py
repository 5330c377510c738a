"""Crops: the detector boxes the embedder and the captioner see, padded, clipped and filtered."""

from __future__ import annotations

from typing import Collection, Dict, List, NamedTuple, Optional, Tuple

import numpy as np

from .detection import Detections

__all__ = ['Crop', 'FrameCrops', 'cut_crops', 'padded_crop_box']


def padded_crop_box(box_xyxy: np.ndarray, padding: float, width: int, height: int) -> Tuple[int, int, int, int]:
    """The detector box grown by ``padding`` of its size on each side, clipped to the image."""
    x1, y1, x2, y2 = (float(v) for v in box_xyxy)
    pad_x, pad_y = padding * (x2 - x1), padding * (y2 - y1)
    return (
        max(0, int(np.floor(x1 - pad_x))),
        max(0, int(np.floor(y1 - pad_y))),
        min(width, int(np.ceil(x2 + pad_x))),
        min(height, int(np.ceil(y2 + pad_y))),
    )


class Crop(NamedTuple):
    """One detection's region of its image (the pixels stay in the image: the embedder cuts
    them, on its device)."""

    index: int  # the detection's rank by score in its image: the crop index of its crop id
    detection: int  # its row in the image's ``Detections``
    class_name: str
    box: Tuple[int, int, int, int]  # the padded, clipped box (pixels, x1 y1 x2 y2)


class FrameCrops(NamedTuple):
    """The crops of one image, and what became of the detections that gave none."""

    crops: List[Crop]
    num_filtered: int  # class not in ``keep_classes``
    num_too_small: int  # padded box narrower or lower than ``min_size``


def cut_crops(
    image_size: Tuple[int, int],
    detections: Detections,
    class_names: Dict[int, str],
    padding: float,
    min_size: int,
    keep_classes: Optional[Collection[str]] = None,
) -> FrameCrops:
    """The crops the mining pipeline embeds, in descending score order.

    Skipped detections keep their rank, so a crop's ``index`` (and its crop id) does not
    depend on the class filter or the size limit.

    Args:
        image_size (tuple): (width, height) of the image the detections are in.
        detections (Detections): its boxes, in its pixels.
        class_names (dict): label → name, the detector's ``class_names``.
        padding (float): grow each box by this fraction of its size on each side.
        min_size (int): skip crops smaller than this many pixels on a side.
        keep_classes (Collection[str], optional): cut only these classes; empty or None
            keeps all.
    """
    crops, num_filtered, num_too_small = [], 0, 0
    for index, k in enumerate(np.argsort(-detections.scores, kind='stable')):
        label = int(detections.labels[k])
        class_name = str(class_names.get(label, label))
        if keep_classes and class_name not in keep_classes:
            num_filtered += 1
            continue
        box = padded_crop_box(detections.boxes_xyxy[k], padding, *image_size)
        if min(box[2] - box[0], box[3] - box[1]) < min_size:
            num_too_small += 1
            continue
        crops.append(Crop(index, int(k), class_name, box))
    return FrameCrops(crops, num_filtered, num_too_small)
