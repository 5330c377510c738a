"""Crop thumbnails for the report: small JPEGs, written once and reused by later builds."""

from __future__ import annotations

import hashlib
import os
from typing import Dict, Sequence, Tuple

from tqdm import tqdm

from ..mining.runtime.atomic_files import atomic_output
from ..mining.runtime.images import decode_image

THUMB_DIR = 'thumbs'
THUMB_SIZE = 128  # pixels on the long side
THUMB_QUALITY = 80


def thumbnail_name(crop_id: str, box: Tuple[int, int, int, int]) -> str:
    """A crop's thumbnail file name: its id and box, so a re-mined crop with another box gets
    a new thumbnail instead of a stale one."""
    digest = hashlib.blake2b(f'{crop_id}|{tuple(int(v) for v in box)}'.encode(), digest_size=10).hexdigest()
    return f'{THUMB_DIR}/{digest}.jpg'


def write_thumbnails(
    report_dir: str, crops: Sequence[Tuple[str, str, Tuple[int, int, int, int]]], progress: bool = True
) -> Dict[str, int]:
    """Write the thumbnail of every ``(crop_id, image path, box)`` that has none yet, decoding
    each image once. Returns counts: written, reused and unreadable (their image is gone)."""
    os.makedirs(os.path.join(report_dir, THUMB_DIR), exist_ok=True)
    todo: Dict[str, list] = {}
    counts = dict(written=0, reused=0, unreadable=0)
    for crop_id, path, box in crops:
        name = thumbnail_name(crop_id, box)
        if os.path.exists(os.path.join(report_dir, name)):
            counts['reused'] += 1
        else:
            todo.setdefault(path, []).append((name, box))
    for path, wanted in tqdm(todo.items(), desc='thumbnails', unit='img', disable=not progress):
        image, _ = decode_image(path)
        if image is None:
            counts['unreadable'] += len(wanted)
            continue
        for name, box in wanted:
            thumb = image.crop(tuple(int(v) for v in box))
            thumb.thumbnail((THUMB_SIZE, THUMB_SIZE))
            with atomic_output(os.path.join(report_dir, name), '.jpg') as scratch:
                thumb.save(scratch, quality=THUMB_QUALITY)
            counts['written'] += 1
    return counts
