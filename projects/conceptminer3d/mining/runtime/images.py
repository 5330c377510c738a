"""Image decoding ahead of the models: a frame's image, its content digest for the caches, and
batches decoded in threads."""

from __future__ import annotations

import hashlib
import os
from collections import deque
from concurrent.futures import Future, ThreadPoolExecutor
from typing import Callable, Deque, Hashable, Iterator, List, Mapping, Optional, Sequence, Tuple

import numpy as np
from PIL import Image

from ..contracts import FRAME_STATUS_CORRUPT, FRAME_STATUS_MISSING, FRAME_STATUS_OK, Frame


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


def last_image_reader(paths: Mapping[Hashable, str]) -> Callable[[Hashable], Optional[Image.Image]]:
    """``key`` → the decoded image at ``paths[key]`` (None if it cannot be read), keeping the
    last one decoded: for work sorted by image, each image is decoded once."""
    last: dict = {}

    def read(key):
        if key not in last:
            last.clear()
            last[key] = decode_image(paths[key])[0]
        return last[key]

    return read


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
