"""The mining pipeline's data contract: every table it writes, defined once.

All tables are Parquet files in the work dir. Rows are keyed by sample token + camera
(+ crop index), never by file name, so shards from several processes merge
deterministically (sort by the key columns).

frames.parquet      one row per (sample, camera) that was asked for
crops.parquet       one row per embedded crop; row i ↔ embeddings.npy[i]
captions.parquet    one row per captioned crop
concepts.parquet    one row per captioned (with captions off: caption-selected) crop: concept scores, group
embeddings.npy      float32 (len(crops), d), L2-normalised CLIP image embeddings
manifest.json       config, versions, counts, skips, per-stage time and throughput

Two concept sources write these files (``run_mining`` picks one from the mining config's
``concept_source``): ``MiningPipeline`` (the 2D models, the default) and
``AnnotationConcepts`` (``annotations.py``: the 3D ground-truth boxes projected into the
cameras, no model). What the second fills differently:
- embeddings.npy is (len(crops), 0): row-aligned, with no features. A consumer that needs
  features (a coreset, outliers) must check ``embeddings.shape[1]`` (``manifest.json``'s
  ``counts.embedding_dim`` is 0) and do without them.
- crops: crop_index is the instance's index in the sample's ``instances`` (so a crop names
  its 3D box); yolo_label / yolo_class are the 3D class, yolo_conf is 1; crop_x1..crop_y2
  are the projected box, unpadded; no outlier columns.
- concepts: top_concepts = [the class's concept], top_scores = [1.0]; text_weight and
  image_caption_cos are NaN.
- captions.parquet is empty.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from typing import Dict, Iterable, List, Optional

import numpy as np
import pyarrow as pa

FRAMES_FILE = 'frames.parquet'
CROPS_FILE = 'crops.parquet'
CAPTIONS_FILE = 'captions.parquet'
CONCEPTS_FILE = 'concepts.parquet'
EMBEDDINGS_FILE = 'embeddings.npy'
MANIFEST_FILE = 'manifest.json'
# What ``runtime.assembly.write_mining_tables`` writes; the manifest, written last, says they are complete.
MINING_TABLE_FILES = (FRAMES_FILE, CROPS_FILE, EMBEDDINGS_FILE, CAPTIONS_FILE, CONCEPTS_FILE)

FRAME_STATUS_OK, FRAME_STATUS_MISSING, FRAME_STATUS_CORRUPT = 'ok', 'missing', 'corrupt'
GROUP_TARGET, GROUP_RARE, GROUP_COMMON = 'Target', 'Rare', 'Common'

FRAME_SCHEMA = pa.schema(
    [
        ('frame_id', pa.string()),  # '<sample_token>/<camera>'
        ('sample_token', pa.string()),
        ('scene_token', pa.string()),  # '' when the devkit tables are not available
        ('sample_idx', pa.int64()),  # position in the info pickle's data_list
        ('camera', pa.string()),
        ('img_path', pa.string()),  # as resolved: data_root/data_prefix[camera]/img_path
        ('timestamp', pa.int64()),
        ('width', pa.int32()),
        ('height', pa.int32()),
        ('status', pa.string()),  # ok | missing | corrupt
        ('num_detections', pa.int32()),
        ('num_filtered', pa.int32()),  # detections dropped by the optional YOLO class filter
        ('num_too_small', pa.int32()),  # padded crops under crops.min_size pixels: not embedded
        ('num_crops', pa.int32()),  # detections that were embedded
    ]
)

CROP_SCHEMA = pa.schema(
    [
        ('crop_id', pa.string()),  # '<sample_token>/<camera>/<crop_index>'
        ('sample_token', pa.string()),
        ('scene_token', pa.string()),
        ('camera', pa.string()),
        ('crop_index', pa.int32()),  # index among the frame's detections, by descending score
        ('x1', pa.float32()),
        ('y1', pa.float32()),
        ('x2', pa.float32()),
        ('y2', pa.float32()),  # detector box
        ('crop_x1', pa.int32()),
        ('crop_y1', pa.int32()),
        ('crop_x2', pa.int32()),
        ('crop_y2', pa.int32()),
        ('yolo_label', pa.int32()),
        ('yolo_class', pa.string()),
        ('yolo_conf', pa.float32()),
    ]
)
# Added by the outlier stage: 'outlier_score_<method>' (higher = more unusual) and
# 'is_outlier_<method>' per method, 'is_outlier' (combined) and 'caption_selected'.

CAPTION_SCHEMA = pa.schema(
    [
        ('crop_id', pa.string()),
        ('caption', pa.string()),  # verbatim model output
    ]
)

CONCEPT_SCHEMA = pa.schema(
    [
        ('crop_id', pa.string()),
        ('sample_token', pa.string()),
        ('scene_token', pa.string()),
        ('camera', pa.string()),
        ('crop_index', pa.int32()),
        ('top_concepts', pa.list_(pa.string())),
        ('top_scores', pa.list_(pa.float32())),
        ('top_concept', pa.string()),
        ('top_score', pa.float32()),
        ('text_weight', pa.float32()),  # w used for this crop
        ('image_caption_cos', pa.float32()),
        ('group', pa.string()),  # Target | Rare | Common
    ]
)


def frame_id(sample_token: str, camera: str) -> str:
    return f'{sample_token}/{camera}'


@dataclass(frozen=True)
class Frame:
    """One camera image of one sample: the frame record every stage passes on."""

    sample_token: str
    scene_token: str
    sample_idx: int
    camera: str
    img_path: str
    timestamp: int
    status: str  # ok | missing (checked up front; corrupt images are found when decoded)

    @property
    def frame_id(self) -> str:
        return frame_id(self.sample_token, self.camera)


def crop_id(sample_token: str, camera: str, crop_index: int) -> str:
    return f'{sample_token}/{camera}/{crop_index}'


def concept_table(keys: pa.Table, top_names, top_scores, text_weight, image_caption_cos, groups) -> pa.Table:
    """The concept table of scored crops: ``keys`` (their crop rows, for the key columns), the
    (n, k) arrays of top concept names and scores, best first, and per crop its text weight,
    image-caption cosine and group."""
    n, k = np.shape(top_scores)
    offsets = pa.array(np.arange(0, n * k + 1, k, dtype=np.int32))
    top_names, top_scores = np.asarray(top_names, dtype=object), np.asarray(top_scores, np.float32)
    columns = {name: keys.column(name) for name in ('crop_id', 'sample_token', 'scene_token', 'camera', 'crop_index')}
    columns.update(
        top_concepts=pa.ListArray.from_arrays(offsets, pa.array(top_names.ravel(), pa.string())),
        top_scores=pa.ListArray.from_arrays(offsets, pa.array(top_scores.ravel(), pa.float32())),
        top_concept=pa.array(top_names[:, 0] if k else [], pa.string()),
        top_score=pa.array(top_scores[:, 0] if k else [], pa.float32()),
        text_weight=pa.array(np.asarray(text_weight, np.float32)),
        image_caption_cos=pa.array(np.asarray(image_caption_cos, np.float32)),
        group=pa.array(list(groups), pa.string()),
    )
    return pa.table(columns).cast(CONCEPT_SCHEMA)


# The frame columns that say which image a row is (the rest are results of processing it).
FRAME_IDENTITY_COLUMNS = ('frame_id', 'sample_token', 'scene_token', 'sample_idx', 'camera', 'img_path', 'timestamp')


def frame_record(frame, status: str) -> Dict:
    """One ``FRAME_SCHEMA`` row for ``frame`` (anything with the identity columns as
    attributes), its results zero until the image is processed."""
    row = {name: getattr(frame, name) for name in FRAME_IDENTITY_COLUMNS}
    return dict(row, width=0, height=0, status=status, num_detections=0, num_filtered=0, num_too_small=0, num_crops=0)


def crop_record(frame, crop_index: int, box, crop_box, label: int, class_name: str, conf: float) -> Dict:
    """One ``CROP_SCHEMA`` row, before the outlier columns.

    Args:
        frame: the crop's frame (anything with ``sample_token``, ``scene_token``, ``camera``).
        crop_index (int): the crop's index within its frame (part of ``crop_id``).
        box: the detected or projected box, (x1, y1, x2, y2) in image pixels.
        crop_box: the pixel rectangle cut from the image, (x1, y1, x2, y2).
        label (int), class_name (str), conf (float): the box's class id, name and confidence.
    """
    x1, y1, x2, y2 = (float(v) for v in box)
    cx1, cy1, cx2, cy2 = (int(v) for v in crop_box)
    return dict(crop_id=crop_id(frame.sample_token, frame.camera, crop_index), sample_token=frame.sample_token,
                scene_token=frame.scene_token, camera=frame.camera, crop_index=int(crop_index),
                x1=x1, y1=y1, x2=x2, y2=y2, crop_x1=cx1, crop_y1=cy1, crop_x2=cx2, crop_y2=cy2,
                yolo_label=int(label), yolo_class=str(class_name), yolo_conf=float(conf))  # fmt: skip


def concept_record(crop, top_concepts, top_scores, text_weight: float, image_caption_cos: float, group) -> Dict:
    """One ``CONCEPT_SCHEMA`` row for ``crop`` (a ``CROP_SCHEMA`` row: its key columns are copied)."""
    return dict(crop_id=crop['crop_id'], sample_token=crop['sample_token'], scene_token=crop['scene_token'],
                camera=crop['camera'], crop_index=crop['crop_index'], top_concepts=list(top_concepts),
                top_scores=[float(v) for v in top_scores], top_concept=top_concepts[0],
                top_score=float(top_scores[0]), text_weight=float(text_weight),
                image_caption_cos=float(image_caption_cos), group=group)  # fmt: skip


def rows_to_table(rows: List[Dict], schema: pa.Schema) -> pa.Table:
    return pa.Table.from_pylist(rows, schema=schema) if rows else schema.empty_table()


def require_mining_outputs(work_dir: str, files) -> None:
    """Raise ``FileNotFoundError`` naming the ``files`` that ``work_dir`` lacks: a reader's check
    that it was given a finished mining run."""
    missing = [f for f in files if not os.path.isfile(os.path.join(work_dir, f))]
    if missing:
        raise FileNotFoundError(
            f'{work_dir} is not a finished mining run (no {", ".join(missing)}): run tools/mine.py first'
        )


def concat_tables(tables: Iterable[pa.Table], schema: pa.Schema) -> pa.Table:
    tables = [t for t in tables if t.num_rows]
    return pa.concat_tables(tables).cast(schema) if tables else schema.empty_table()


# manifest.json, the same for both concept sources; ``apis.run_mining`` adds ``fingerprint``
# (mining/fingerprint.py) and, with subset settings, ``subsets`` (subsets/builder.py).
MANIFEST_KEYS = (
    'inputs',
    'concept_source',
    'config',
    'versions',
    'torch_threads',
    'counts',
    'skips',
    'cache',
    'stages',
)


def run_manifest(
    *,
    data_root: str,
    ann_file: str,
    concept_source: str,
    config: dict,
    versions: Dict[str, str],
    counts: dict,
    skips: Dict[str, int],
    stages: dict,
    cache: Optional[dict] = None,
    torch_threads: Optional[int] = None,
) -> dict:
    """A run's ``manifest.json``, keys in ``MANIFEST_KEYS`` order.

    Args:
        data_root, ann_file: what was mined (the data root made absolute).
        concept_source (str): the class that named the crops (``MiningPipeline``, ...).
        config (dict): the mining config as run; versions: ``run_record.package_versions()``.
        counts (dict): rows of each table (``run_record.table_counts``) and source-specific counts.
        skips (dict): what was skipped and why, counted; stages: ``StageTimer.report()``.
        cache (dict, optional): per stage cache key and reused / computed items; None: no cache.
        torch_threads (int, optional): the intra-op threads the models ran with; None: no model.
    """
    return dict(
        inputs=dict(data_root=os.path.abspath(data_root), ann_file=ann_file),
        concept_source=concept_source,
        config=config,
        versions=versions,
        torch_threads=torch_threads,
        counts=counts,
        skips=dict(sorted(skips.items())),
        cache=cache or {},
        stages=stages,
    )
