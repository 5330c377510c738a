"""Image decoding and crop extraction (crops stay in memory)."""
from __future__ import annotations

from concurrent.futures import Future, ThreadPoolExecutor
from typing import Iterator, List, Optional, Sequence, Tuple

import numpy as np
from PIL import Image

from .contracts import FRAME_STATUS_CORRUPT, FRAME_STATUS_MISSING, FRAME_STATUS_OK
from .frames import Frame


def decode_image(path: str) -> Tuple[Optional[Image.Image], str]:
    """(RGB image, status); a missing or undecodable file is a status, not an exception."""
    try:
        with Image.open(path) as img:
            return img.convert('RGB'), FRAME_STATUS_OK
    except FileNotFoundError:
        return None, FRAME_STATUS_MISSING
    except (OSError, ValueError, Image.DecompressionBombError):
        return None, FRAME_STATUS_CORRUPT


def decode_batch(frames: Sequence[Frame]) -> List[Tuple[Optional[Image.Image], str]]:
    return [decode_image(f.img_path) if f.status == FRAME_STATUS_OK else (None, f.status) for f in frames]


def prefetched(batches: Sequence[Sequence[Frame]]) -> Iterator[List[Tuple[Optional[Image.Image], str]]]:
    """Decode batch i+1 in a background thread while the models work on batch i
    (PIL's JPEG decoder releases the GIL)."""
    with ThreadPoolExecutor(max_workers=1) as pool:
        pending: Optional[Future] = pool.submit(decode_batch, batches[0]) if batches else None
        for i in range(len(batches)):
            current = pending.result()
            pending = pool.submit(decode_batch, batches[i + 1]) if i + 1 < len(batches) else None
            yield current


def padded_crop_box(box_xyxy: np.ndarray, padding: float, width: int, height: int) -> Tuple[int, int, int, int]:
    """The detector box grown by ``padding`` of its size on each side, clipped to the image."""
    x1, y1, x2, y2 = (float(v) for v in box_xyxy)
    pad_x, pad_y = padding * (x2 - x1), padding * (y2 - y1)
    return (max(0, int(np.floor(x1 - pad_x))), max(0, int(np.floor(y1 - pad_y))),
            min(width, int(np.ceil(x2 + pad_x))), min(height, int(np.ceil(y2 + pad_y))))
