"""Image decoding and crop extraction (crops stay in memory)."""

from __future__ import annotations

import hashlib
import os
from collections import deque
from concurrent.futures import Future, ThreadPoolExecutor
from typing import Collection, Deque, Dict, Iterator, List, NamedTuple, Optional, Sequence, Tuple

import numpy as np
from PIL import Image

from .contracts import FRAME_STATUS_CORRUPT, FRAME_STATUS_MISSING, FRAME_STATUS_OK
from .detection import Detections
from .frames import Frame


def decode_image(path: str) -> Tuple[Optional[Image.Image], str]:
    """(RGB image, status); a missing or undecodable file is a status, not an exception.

    Any failure to decode is a skip, whatever raised it: other libraries patch
    ``PIL.Image.open`` (ultralytics answers an unidentifiable file by importing, or trying to
    install, a HEIF plugin, and raises ``ModuleNotFoundError`` where that fails).
    """
    try:
        with Image.open(path) as img:
            return img.convert('RGB'), FRAME_STATUS_OK
    except FileNotFoundError:
        return None, FRAME_STATUS_MISSING
    except Exception:  # noqa: BLE001 -- truncated, empty, not an image, or a patched opener failing
        return None, FRAME_STATUS_CORRUPT


_DIGEST_BYTES = 1 << 16


def image_digest(frame: Frame) -> str:
    """The identity of a frame's image for the caches: its size and a hash of its first 64 KiB
    (a JPEG's headers, tables and first scans), not its path or mtime. Reading that much is
    cheap next to decoding, and a re-encoded or replaced image changes it."""
    if frame.status != FRAME_STATUS_OK:
        return frame.status
    try:
        with open(frame.img_path, 'rb') as f:
            head = f.read(_DIGEST_BYTES)
            size = f.seek(0, 2)
    except FileNotFoundError:
        return FRAME_STATUS_MISSING
    except OSError:
        return 'unreadable'  # decoding it will call it corrupt
    return f'{size}:{hashlib.blake2b(head, digest_size=12).hexdigest()}'


def decode_array(frame: Frame) -> Tuple[Optional[np.ndarray], str]:
    """(RGB ``uint8`` array (H, W, 3), status) of a frame's image; see ``decode_image``."""
    if frame.status != FRAME_STATUS_OK:
        return None, frame.status
    image, status = decode_image(frame.img_path)
    return (None if image is None else np.array(image)), status  # writable: torch takes it as is


def decode_batch(frames: Sequence[Frame]) -> List[Tuple[Optional[np.ndarray], str]]:
    return [decode_array(f) for f in frames]


def default_decode_workers() -> int:
    """Threads decoding JPEGs ahead of the models: half the cores (the models' threads and the
    main thread need the rest), at least 1 and at most 8."""
    return max(1, min(8, (os.cpu_count() or 2) // 2))


def prefetched(
    batches: Sequence[Sequence[Frame]], workers: Optional[int] = None
) -> Iterator[List[Tuple[Optional[np.ndarray], str]]]:
    """The decoded images of each batch, in order, decoded by ``workers`` threads (default:
    ``default_decode_workers``) while the models work: up to two batches ahead, so that a GPU
    never waits for a JPEG. PIL's decoder releases the GIL, so threads decode in parallel."""
    workers = workers or default_decode_workers()
    with ThreadPoolExecutor(max_workers=workers) as pool:
        pending: Deque[List[Future]] = deque()
        for i in range(len(batches)):
            while len(pending) < 3 and i + len(pending) < len(batches):
                pending.append([pool.submit(decode_array, f) for f in batches[i + len(pending)]])
            yield [future.result() for future in pending.popleft()]


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
