"""A concept source without models: the 3D ground-truth boxes, projected into the cameras and
named by their class.

It writes the 2D pipeline's data contract (``contracts.py``) into its own work dir, so the
subsets, the subset configs and ``RareConceptSampler`` read it unchanged. Two uses: an upper
bound for what the cameras could yield if the 2D pipeline named every object right, and
mining for data that already carries 3D labels.

Each box is projected from ``instances[].bbox_3d`` with the pickle's ``lidar2cam`` and
``cam2img`` rather than read from ``cam_instances``, because the converter's 2D boxes
cannot stand in for it: they carry no index back to the 3D instance (the one thing that ties
a crop to what training and the GT database count), they are clipped to a 1600×900 canvas
whatever the image size, they drop boxes whose centre is behind the camera even when part
of the box is in view, and pickles of other datasets or converters may not have them.
"""

from __future__ import annotations

import logging
import os
import time
from collections import Counter
from typing import Dict, List, Optional, Tuple

import numpy as np
from mmengine.config import Config
from PIL import Image
from shapely.geometry import MultiPoint
from shapely.geometry import box as rectangle
from tqdm import tqdm

from ..registry import CONCEPT_SOURCES, FRAME_SOURCES, build_component
from .contracts import (
    CAPTION_SCHEMA,
    CONCEPT_SCHEMA,
    CROP_SCHEMA,
    FRAME_SCHEMA,
    FRAME_STATUS_CORRUPT,
    FRAME_STATUS_MISSING,
    FRAME_STATUS_OK,
    MANIFEST_FILE,
    Frame,
    concept_record,
    crop_record,
    frame_record,
    rows_to_table,
    run_manifest,
)
from .runtime.assembly import write_mining_tables
from .runtime.atomic_files import write_json_atomic
from .runtime.executors import LocalExecutor
from .runtime.run_record import StageTimer, package_versions, plain_config
from .stages.concepts import ConceptVocabulary, assign_groups
from .stages.frames import load_info_pickle, resolve_ann_file

logger = logging.getLogger('conceptminer3d.mining')

# The v2 nuScenes pickle stores a box's gravity centre (NuScenesDataset reads bbox_3d with
# origin (0.5, 0.5, 0.5)); corners in mmdet3d's LiDARInstance3DBoxes order, scaled by
# (l, w, h) and turned by yaw about z.
_UNIT_CORNERS = np.array(
    [[x, y, z] for x in (-0.5, 0.5) for y, z in ((-0.5, -0.5), (-0.5, 0.5), (0.5, 0.5), (0.5, -0.5))]
)


def lidar_box_corners(boxes: np.ndarray) -> np.ndarray:
    """(n, 8, 3) corners of (n, 7) LiDAR boxes ``x, y, z (centre), l, w, h, yaw``."""
    boxes = np.asarray(boxes, dtype=np.float64).reshape(-1, 7)
    corners = _UNIT_CORNERS[None] * boxes[:, None, 3:6]
    cos, sin = np.cos(boxes[:, 6])[:, None], np.sin(boxes[:, 6])[:, None]
    x, y = corners[..., 0].copy(), corners[..., 1].copy()
    corners[..., 0], corners[..., 1] = cos * x - sin * y, sin * x + cos * y
    return corners + boxes[:, None, :3]


def _clip_to_near_plane(points_cam: np.ndarray, near: float) -> np.ndarray:
    """The corners in front of ``near`` plus where the segments between a corner in front and
    one behind cross it. Face and body diagonals add points inside the clipped box, which
    leave its convex hull as it is, so every pair is taken instead of tracking edges."""
    front = points_cam[:, 2] >= near
    ahead, behind = points_cam[front], points_cam[~front]
    if not len(behind):
        return ahead
    p, q = np.repeat(ahead, len(behind), axis=0), np.tile(behind, (len(ahead), 1))
    t = (near - p[:, 2]) / (q[:, 2] - p[:, 2])
    return np.concatenate([ahead, p + t[:, None] * (q - p)])


def _to_pixels(points_cam: np.ndarray, intrinsics: np.ndarray) -> np.ndarray:
    uvw = points_cam @ intrinsics.T
    return uvw[..., :2] / uvw[..., 2:3]


def _visible_extent(uv: np.ndarray, width: int, height: int) -> Optional[Tuple[float, float, float, float]]:
    """Bounding box of the part of the convex hull of ``uv`` inside the image."""
    # The hull's corner can miss the image while its bounding box meets it: intersect the hull.
    visible = MultiPoint([tuple(p) for p in uv]).convex_hull.intersection(rectangle(0, 0, width, height))
    if visible.is_empty or visible.area <= 0:
        return None
    return tuple(float(v) for v in visible.bounds)


def project_boxes(
    corners_lidar: np.ndarray, lidar2cam, cam2img, width: int, height: int, near: float = 0.1
) -> List[Optional[Tuple[float, float, float, float]]]:
    """The image-space extent of the part of each 3D box in front of the camera and in the image.

    Args:
        corners_lidar (np.ndarray): (n, 8, 3) box corners in the lidar frame.
        lidar2cam (array-like): 4×4 lidar → camera transform (x right, y down, z forward).
        cam2img (array-like): 3×3 (or 3×4 / 4×4) intrinsics.
        width, height (int): image size in pixels.
        near (float): metres in front of the camera where a box is cut.

    Returns:
        list: per box ``(x1, y1, x2, y2)`` in pixels, within the image, or None when no part
        of it is in view (behind the camera or outside the image).
    """
    corners_lidar = np.asarray(corners_lidar, np.float64).reshape(-1, 8, 3)
    lidar2cam = np.asarray(lidar2cam, np.float64)
    intrinsics = np.asarray(cam2img, np.float64)[:3, :3]
    points = corners_lidar @ lidar2cam[:3, :3].T + lidar2cam[:3, 3]
    in_front = points[..., 2] >= near
    # Boxes wholly in front take the vectorised path; only boxes cut by the near plane or by
    # the image border need a polygon each (corners behind get a placeholder that is never read,
    # so nothing divides by a depth of zero).
    uv = _to_pixels(np.where(in_front[..., None], points, 1.0), intrinsics)
    low, high = uv.min(axis=1), uv.max(axis=1)
    out: List[Optional[Tuple[float, float, float, float]]] = []
    for i in range(len(points)):
        if not in_front[i].any():
            out.append(None)
        elif not in_front[i].all():
            out.append(_visible_extent(_to_pixels(_clip_to_near_plane(points[i], near), intrinsics), width, height))
        elif high[i, 0] <= 0 or high[i, 1] <= 0 or low[i, 0] >= width or low[i, 1] >= height:
            out.append(None)
        elif low[i, 0] >= 0 and low[i, 1] >= 0 and high[i, 0] <= width and high[i, 1] <= height:
            out.append((float(low[i, 0]), float(low[i, 1]), float(high[i, 0]), float(high[i, 1])))
        else:
            out.append(_visible_extent(uv[i], width, height))
    return out


def image_size(path: str) -> Tuple[Optional[Tuple[int, int]], str]:
    """(width, height) from the image file's header, with the frame status; nothing is decoded."""
    try:
        with Image.open(path) as img:
            return img.size, FRAME_STATUS_OK
    except FileNotFoundError:
        return None, FRAME_STATUS_MISSING
    except (OSError, ValueError, Image.DecompressionBombError):
        return None, FRAME_STATUS_CORRUPT


@CONCEPT_SOURCES.register_module()
class AnnotationConcepts:
    """Concepts from the 3D ground truth: one crop and one concept row per (3D instance, camera)
    whose projected box is in the image, named by the instance's class. No model is built.

    Built by ``run_mining`` from the mining config's ``concept_source`` (see
    ``configs/mining/annotations.py``); the other keys it reads are the mining config's
    ``frames`` (which cameras, where their images are), ``crops.min_size`` and
    ``concepts.vocabulary`` (Target / Rare / Common).

    What it writes, beside the 2D pipeline's contract (``contracts.py``):
        crops         ``x1..y2`` the projected box clipped to the image (float pixels),
                      ``crop_x1..crop_y2`` the same box in whole pixels (no padding);
                      ``crop_index`` is the instance's index in the sample's ``instances``;
                      ``yolo_label`` / ``yolo_class`` are the 3D label and its class name,
                      ``yolo_conf`` is 1. No outlier columns: there is no outlier stage.
        concepts      ``top_concepts`` = [the class's concept], ``top_scores`` = [1.0];
                      ``text_weight`` and ``image_caption_cos`` are NaN (nothing was scored).
        captions      empty.
        embeddings    float32 ``(len(crops), 0)``: row-aligned, with no features.
        frames        ``num_detections`` counts the instances whose box is in the image,
                      ``num_filtered`` those whose class has no concept in the vocabulary.

    Args:
        cfg (Config): the mining config.
        data_root (str): dataset root; image paths are resolved under it.
        ann_file (str): v2 info pickle, absolute or relative to ``data_root``.
        work_dir (str): where the tables and ``manifest.json`` go.
        progress (bool): show a progress bar.
        executor (LocalExecutor, optional): under a ``DistributedExecutor`` rank 0 does
            everything (there is no model work to share) and the other ranks return None.
        class_to_concept (dict, optional): 3D class name → vocabulary concept, for classes
            whose concept has another name; the others are named by their class.
        valid_only (bool): keep only instances with ``bbox_3d_isvalid`` (lidar or radar
            points), as training with ``use_valid_flag=True`` does. Default: every instance
            with a class, as a camera may see what the lidar missed.
        near (float): metres in front of a camera where boxes are cut.
    """

    def __init__(
        self,
        cfg: Config,
        data_root: str,
        ann_file: str,
        work_dir: str,
        progress: bool = True,
        executor: Optional[LocalExecutor] = None,
        class_to_concept: Optional[Dict[str, str]] = None,
        valid_only: bool = False,
        near: float = 0.1,
    ):
        self.cfg = cfg
        self.executor = executor or LocalExecutor()
        self.data_root, self.ann_file, self.work_dir = data_root, ann_file, work_dir
        self.progress = progress
        self.vocabulary = ConceptVocabulary(**plain_config(cfg.concepts.vocabulary))
        self.class_to_concept = dict(class_to_concept or {})
        unknown = sorted(set(self.class_to_concept.values()) - set(self.vocabulary.concepts))
        if unknown:
            raise ValueError(f'class_to_concept names concepts not in the vocabulary: {unknown}')
        self.min_size = int((cfg.get('crops') or {}).get('min_size', 0))
        self.valid_only, self.near = bool(valid_only), float(near)
        if self.near <= 0:
            raise ValueError(f'near must be > 0 metres, got {near!r}')
        self.frame_source = build_component(FRAME_SOURCES, cfg.frames)
        self.timer = StageTimer()
        self.skips: Counter = Counter()

    def concept_of(self, class_name: str) -> Optional[str]:
        concept = self.class_to_concept.get(class_name, class_name)
        return concept if concept in self.vocabulary.concepts else None

    def _instances(self, info: dict, class_names: Dict[int, str]) -> List[Tuple[int, str, np.ndarray]]:
        """(index in ``instances``, class name, box) of the instances to project."""
        kept = []
        for index, inst in enumerate(info.get('instances', [])):
            label = int(inst.get('bbox_label_3d', inst.get('bbox_label', -1)))
            if label not in class_names:  # -1: a class the converter does not know
                self.skips['instances_without_class'] += 1
                continue
            if self.valid_only and not inst.get('bbox_3d_isvalid', True):
                self.skips['instances_not_valid'] += 1
                continue
            kept.append((index, class_names[label], np.asarray(inst['bbox_3d'], np.float64)))
        return kept

    def _frame(
        self, frame: Frame, info: dict, instances, corners, frame_rows, crop_rows, concept_rows, seen: set
    ) -> None:
        row = frame_record(frame, frame.status)
        frame_rows.append(row)
        size, status = image_size(frame.img_path) if frame.status == FRAME_STATUS_OK else (None, frame.status)
        row['status'] = status
        if size is None:
            logger.warning('skipping %s image %s', status, frame.img_path)
            return
        width, height = size
        row.update(width=width, height=height)
        camera = info['images'][frame.camera]
        boxes = project_boxes(corners, camera['lidar2cam'], camera['cam2img'], width, height, self.near)
        for (index, class_name, _), box in zip(instances, boxes):
            if box is None:
                continue
            row['num_detections'] += 1
            seen.add(index)
            concept = self.concept_of(class_name)
            if concept is None:
                row['num_filtered'] += 1
                continue
            x1, y1, x2, y2 = box
            crop_box = (int(np.floor(x1)), int(np.floor(y1)), int(np.ceil(x2)), int(np.ceil(y2)))
            if min(crop_box[2] - crop_box[0], crop_box[3] - crop_box[1]) < self.min_size:
                row['num_too_small'] += 1
                continue
            row['num_crops'] += 1
            label = self._label_of[class_name]
            crop_rows.append(crop_record(frame, index, box, crop_box, label, class_name, 1.0))
            concept_rows.append(concept_record(crop_rows[-1], [concept], [1.0], float('nan'), float('nan'), None))

    def run(self) -> Optional[dict]:
        if not self.executor.is_main:  # no per-image model work to share: rank 0 does it all
            return None
        os.makedirs(self.work_dir, exist_ok=True)
        t0 = time.perf_counter()
        frames = self.frame_source.load(self.data_root, self.ann_file)
        if not frames:
            raise ValueError(f'{self.ann_file} holds no samples')
        infos = load_info_pickle(resolve_ann_file(self.data_root, self.ann_file))
        self._label_of = {name: int(label) for name, label in infos['metainfo']['categories'].items()}
        class_names = {label: name for name, label in self._label_of.items()}
        info_of = {info['token']: info for info in infos['data_list']}
        self.timer.add('frames', time.perf_counter() - t0, len(frames))

        start = time.perf_counter()
        frame_rows, crop_rows, concept_rows = [], [], []
        by_sample: Dict[str, List[Frame]] = {}
        for frame in frames:
            by_sample.setdefault(frame.sample_token, []).append(frame)
        instances_total, outside_total = Counter(), Counter()
        for token, sample_frames in tqdm(
            by_sample.items(), desc='project boxes', unit='sample', disable=not self.progress
        ):
            info = info_of[token]
            instances = self._instances(info, class_names)
            corners = lidar_box_corners(np.stack([box for _, _, box in instances]) if instances else np.zeros((0, 7)))
            seen: set = set()
            for frame in sample_frames:
                self._frame(frame, info, instances, corners, frame_rows, crop_rows, concept_rows, seen)
            instances_total.update(name for _, name, _ in instances)
            outside_total.update(name for index, name, _ in instances if index not in seen)
        groups = assign_groups([r['top_concept'] for r in concept_rows], self.vocabulary)
        for row, group in zip(concept_rows, groups):
            row['group'] = group
        self.timer.add('project', time.perf_counter() - start, len(frames))

        frames_table = rows_to_table(frame_rows, FRAME_SCHEMA)
        crops, concepts = rows_to_table(crop_rows, CROP_SCHEMA), rows_to_table(concept_rows, CONCEPT_SCHEMA)
        embeddings = np.zeros((crops.num_rows, 0), np.float32)
        write_mining_tables(self.work_dir, frames_table, crops, embeddings, CAPTION_SCHEMA.empty_table(), concepts)
        self.timer.add('total', time.perf_counter() - t0, len(frames))
        manifest = self._manifest(frame_rows, concept_rows, instances_total, outside_total)
        write_json_atomic(manifest, os.path.join(self.work_dir, MANIFEST_FILE))
        return manifest

    def _manifest(self, frame_rows, concept_rows, instances_total: Counter, outside_total: Counter) -> dict:
        for status, n in Counter(r['status'] for r in frame_rows).items():
            if status != FRAME_STATUS_OK:
                self.skips[f'images_{status}'] = n
        self.skips['instances_outside_cameras'] = sum(outside_total.values())
        self.skips['crops_too_small'] = sum(r['num_too_small'] for r in frame_rows)
        self.skips['crops_class_not_in_vocabulary'] = sum(r['num_filtered'] for r in frame_rows)
        per_class = Counter(r['top_concept'] for r in concept_rows)
        return run_manifest(
            data_root=self.data_root,
            ann_file=self.ann_file,
            concept_source=type(self).__name__,
            config=plain_config(self.cfg),
            versions=package_versions(),
            counts=dict(
                frames=len(frame_rows),
                samples=len({r['sample_token'] for r in frame_rows}),
                instances=sum(instances_total.values()),
                detections=sum(r['num_detections'] for r in frame_rows),
                crops=len(concept_rows),
                embedding_dim=0,
                outliers=0,
                outliers_per_method={},
                caption_selected=0,
                captions=0,
                concepts=len(concept_rows),
                groups=dict(Counter(r['group'] for r in concept_rows)),
                concepts_per_class=dict(sorted(per_class.items())),
                instances_per_class=dict(sorted(instances_total.items())),
                instances_outside_cameras_per_class=dict(sorted(outside_total.items())),
            ),
            skips=self.skips,
            stages=self.timer.report(),
        )
