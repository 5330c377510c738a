"""What one batch yields in the per-image stages, apart from how batches are scheduled and cached:
a batch of frames gives 2D boxes, crops and the crops' embeddings (``detect_and_embed_batch``);
a batch of caption-selected crops gives captions and their text embeddings (``caption_batch``).
The pipeline caches what these return; the mining speed benchmark times the same calls on
images decoded beforehand."""

from __future__ import annotations

import logging
import time
from typing import Callable, List, Mapping, Optional, Sequence, Tuple

import numpy as np
import pyarrow as pa
from PIL import Image

from ..contracts import CAPTION_SCHEMA, CROP_SCHEMA, FRAME_SCHEMA, Frame, crop_record, frame_record, rows_to_table
from ..runtime.run_record import StageTimer
from .crops import cut_crops

__all__ = ['caption_batch', 'detect_and_embed_batch']

logger = logging.getLogger('conceptminer3d.mining')


def detect_and_embed_batch(
    detector, embedder, frames: Sequence[Frame], decoded, crops_cfg: Mapping, timer: StageTimer
) -> Tuple[pa.Table, pa.Table, np.ndarray]:
    """The frames' rows, their crops' rows and the crops' embeddings (float32, one row per crop).

    Args:
        detector: a ``DETECTORS_2D`` component; one ``detect`` call for the batch.
        embedder: an ``EMBEDDERS`` component; one ``encode_regions`` call for the batch.
        frames: the batch's frames.
        decoded: ``(image or None, status)`` per frame (``runtime.images.decode_batch``); a
            frame without an image gets its row with its status and no crops.
        crops_cfg: the mining config's ``crops`` (``padding``, ``min_size``, ``yolo_classes``).
        timer: the model calls are added to it as the stages ``detect`` and ``embed``.
    """
    keep_classes = set(crops_cfg.get('yolo_classes') or [])
    images = [img for img, _ in decoded if img is not None]
    start = time.perf_counter()
    detections = detector.detect(images) if images else []
    timer.add('detect', time.perf_counter() - start, len(images))
    names = detector.class_names
    frame_rows, crop_rows, regions = [], [], []
    det_iter = iter(enumerate(detections))
    for frame, (image, status) in zip(frames, decoded):
        row = frame_record(frame, status)
        frame_rows.append(row)
        if image is None:
            logger.warning('skipping %s image %s', status, frame.img_path)
            continue
        position, det = next(det_iter)
        height, width = image.shape[:2]
        cut = cut_crops((width, height), det, names, crops_cfg['padding'], crops_cfg['min_size'], keep_classes)
        row.update(
            width=width,
            height=height,
            num_detections=len(det),
            num_filtered=cut.num_filtered,
            num_too_small=cut.num_too_small,
            num_crops=len(cut.crops),
        )
        for crop in cut.crops:
            k = crop.detection
            crop_rows.append(
                crop_record(
                    frame, crop.index, det.boxes_xyxy[k], crop.box, det.labels[k], crop.class_name, det.scores[k]
                )
            )
            regions.append((position, crop.box))
    start = time.perf_counter()
    embeddings = (
        embedder.encode_regions(images, regions) if regions else np.zeros((0, embedder.embedding_dim), np.float32)
    )
    timer.add('embed', time.perf_counter() - start, len(regions))
    return (
        rows_to_table(frame_rows, FRAME_SCHEMA),
        rows_to_table(crop_rows, CROP_SCHEMA),
        np.asarray(embeddings, dtype=np.float32),
    )


def caption_batch(
    captioner,
    embedder,
    crops: Sequence[Mapping],
    frame_image: Callable[[Tuple[str, str]], Optional[Image.Image]],
    timer: StageTimer,
) -> Tuple[List[int], pa.Table, np.ndarray]:
    """Captions of crop rows and the captions' text embeddings.

    Args:
        captioner: a ``CAPTIONERS`` component; one ``caption`` call for the batch.
        embedder: an ``EMBEDDERS`` component; one ``encode_texts`` call for the batch.
        crops: rows with ``crop_id``, ``sample_token``, ``camera`` and ``crop_x1`` … ``crop_y2``.
        frame_image: ``(sample_token, camera)`` → the decoded image, or None where it can no
            longer be read (that crop is left out).
        timer: the model calls are added to it as the stages ``caption`` and ``caption_text_embed``.

    Returns:
        The positions in ``crops`` that were captioned, their captions table and the captions'
        text embeddings (float32), in that order.
    """
    kept, images = [], []
    for position, crop in enumerate(crops):
        image = frame_image((crop['sample_token'], crop['camera']))
        if image is not None:
            kept.append(position)
            images.append(image.crop((crop['crop_x1'], crop['crop_y1'], crop['crop_x2'], crop['crop_y2'])))
    if not images:
        return kept, CAPTION_SCHEMA.empty_table(), np.zeros((0, embedder.embedding_dim), np.float32)
    start = time.perf_counter()
    texts = captioner.caption(images)
    timer.add('caption', time.perf_counter() - start, len(images))
    start = time.perf_counter()
    text_emb = embedder.encode_texts([t if t.strip() else '(empty)' for t in texts])
    timer.add('caption_text_embed', time.perf_counter() - start, len(texts))
    table = pa.table({'crop_id': [crops[p]['crop_id'] for p in kept], 'caption': texts}, schema=CAPTION_SCHEMA)
    return kept, table, np.asarray(text_emb, np.float32)
