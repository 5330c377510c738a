"""How right a search is, against the 3D labels projected into the cameras.

A run of the annotation concept source (``concept_source='annotations'``) holds every 3D box
projected into each camera as a crop with its class. A search result is labelled with the class
of the projected box it overlaps most (IoU ≥ ``min_iou``), or none; precision@k is the share of
the first k results labelled with the class searched for.
"""

from __future__ import annotations

import os

import numpy as np
import pandas as pd
import pyarrow.parquet as pq

from ..mining.contracts import CROPS_FILE
from .crop_search import MiningRunEmbeddings, search_mining_run

__all__ = ['label_results', 'precision_at_k', 'search_precision']


def _iou(box: np.ndarray, boxes: np.ndarray) -> np.ndarray:
    x1, y1 = np.maximum(box[0], boxes[:, 0]), np.maximum(box[1], boxes[:, 1])
    x2, y2 = np.minimum(box[2], boxes[:, 2]), np.minimum(box[3], boxes[:, 3])
    inter = np.clip(x2 - x1, 0, None) * np.clip(y2 - y1, 0, None)
    area = (box[2] - box[0]) * (box[3] - box[1]) + (boxes[:, 2] - boxes[:, 0]) * (boxes[:, 3] - boxes[:, 1])
    return inter / np.maximum(area - inter, 1e-9)


def label_results(results: pd.DataFrame, annotation_dir: str, min_iou: float = 0.5) -> list:
    """The 3D class under each result's box ('' where no projected box overlaps it enough)."""
    labels = pq.read_table(
        os.path.join(annotation_dir, CROPS_FILE),
        columns=['sample_token', 'camera', 'x1', 'y1', 'x2', 'y2', 'yolo_class'],
        filters=[('sample_token', 'in', sorted(set(results.sample_token)))],
    ).to_pandas()
    groups = {key: group for key, group in labels.groupby(['sample_token', 'camera'])}
    out = []
    for r in results.itertuples(index=False):
        group = groups.get((r.sample_token, r.camera))
        if group is None:
            out.append('')
            continue
        overlap = _iou(np.array([r.x1, r.y1, r.x2, r.y2], float), group[['x1', 'y1', 'x2', 'y2']].to_numpy(float))
        best = int(overlap.argmax())
        out.append(group.yolo_class.iloc[best] if overlap[best] >= min_iou else '')
    return out


def precision_at_k(results: pd.DataFrame, annotation_dir: str, label: str, k: int = 20) -> float:
    """Share of the first ``k`` results whose projected 3D class is ``label``."""
    first = results.head(k)
    return float(np.mean([found == label for found in label_results(first, annotation_dir)])) if len(first) else 0.0


def search_precision(work_dir: str, annotation_dir: str, classes, k: int = 20) -> list:
    """Per class: precision@k of the text query ``'a photo of a <class>'`` and of an example
    crop (the first crop of the class the text query found; itself left out of its results),
    and how much of the exact top k the approximate index returns.

    Args:
        work_dir (str): a mining run of the 2D models.
        annotation_dir (str): the annotation source's run of the same data (the labels).
        classes (list[str]): the classes to search for.
        k (int): results judged per query.
    """
    run = MiningRunEmbeddings.open(work_dir)
    rows = []
    for label in classes:
        text = f'a photo of a {label.replace("_", " ")}'
        exact, _, _ = search_mining_run(work_dir, [text], top=10 * k, run=run)
        approximate, _, _ = search_mining_run(work_dir, [text], top=k, index='approximate', run=run)
        found = label_results(exact, annotation_dir)
        row = dict(
            label=label,
            text_precision=round(float(np.mean([f == label for f in found[:k]])), 3),
            approximate_recall=len(set(approximate.crop_id) & set(exact.crop_id[:k])) / k,
            approximate_same_order=list(approximate.crop_id) == list(exact.crop_id[:k]),
        )
        examples = [crop for crop, f in zip(exact.crop_id, found) if f == label]
        if examples:
            by_crop, _, _ = search_mining_run(work_dir, [examples[0]], top=k + 1, run=run)
            row['crop_query'] = examples[0]
            row['crop_precision'] = round(precision_at_k(by_crop.iloc[1:], annotation_dir, label, k), 3)
        rows.append(row)
    return rows
