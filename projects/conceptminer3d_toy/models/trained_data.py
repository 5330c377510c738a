"""Camera 2D boxes of a toy world, as labels: a YOLO-format dataset for the detector and GT
crops for the embedder.

Where the boxes come from: the v2 info pickle's ``cam_instances`` carry each annotation's
3D box in camera coordinates (``bbox_3d``: geometric centre, l/h/w, yaw about the camera's y
axis) and a 2D ``bbox``. That ``bbox`` is not usable as is: mmdet3d's converter
(``convert_utils.post_process_coords``) clips the projected hull to nuScenes' 1600×900
canvas whatever the image size, so in a 400×225 toy image a third of the boxes lie wholly
outside the picture and the rest are cut at the wrong edges. Here the 3D box's corners are
projected again with ``cam2img`` and clipped with the same function against the real image
size: a box inside the image is exactly the pickle's, a box on an edge is the part of its
hull that is in the picture. A box that reaches behind the camera is first cut at the toy
renderer's near plane (the converter drops its rear corners instead, and with them the part
of a close truck that fills the picture).

A box counts as *visible* when its clipped box is at least ``min_size`` pixels on each side
and at least ``min_visible`` of its area is not covered by the 2D boxes of nearer objects
(the toy renderer paints nearer objects over farther ones; boxes overstate what a projected
3D box covers, so this errs towards calling boxes hidden).
"""

from __future__ import annotations

import os
import pickle
import warnings
from dataclasses import dataclass
from typing import Dict, Iterator, List, Optional, Sequence, Tuple

import numpy as np
import yaml
from PIL import Image

from conceptminer3d.mining.stages.concepts import NUSCENES_CLASSES
from conceptminer3d.mining.stages.crops import padded_crop_box

__all__ = [
    'BoxRules',
    'CameraBoxes',
    'GtCrops',
    'camera_boxes',
    'collect_gt_crops',
    'export_yolo_dataset',
    'project_camera_boxes',
    'visible_fractions',
    'yolo_label_lines',
]

# The detector's classes, in mmdet3d's config order; a YOLO label's class id indexes this.
CLASSES: Tuple[str, ...] = NUSCENES_CLASSES
NEAR_PLANE = 0.2  # metres; the toy renderer's near clipping plane (conceptminer3d_toy/world/render.py)


@dataclass(frozen=True)
class BoxRules:
    """Which projected boxes become labels.

    Args:
        min_size: pixels; both sides of the box clipped to the image must be at least this.
        min_visible: the share of the box not covered by nearer objects' boxes, in [0, 1];
            0 keeps occluded boxes too.
    """

    min_size: float = 2.0
    min_visible: float = 0.0


@dataclass(frozen=True)
class CameraBoxes:
    """The visible boxes of one camera image."""

    img_path: str
    width: int
    height: int
    boxes_xyxy: np.ndarray  # (n, 4) float64, pixels, clipped to the image
    labels: np.ndarray  # (n,) int64, indices into CLASSES
    visible: np.ndarray  # (n,) float64, share not covered by nearer boxes
    instance_index: np.ndarray  # (n,) int64, position in the camera's cam_instances


def project_camera_boxes(cam_instances: Sequence[dict], cam2img, width: int, height: int) -> List[tuple]:
    """``(index, box_xyxy)`` for each camera instance whose projected 3D box meets the
    ``width`` × ``height`` image, the box being the bounds of the hull's part inside it."""
    from mmdet3d.datasets.convert_utils import post_process_coords
    from mmdet3d.structures import CameraInstance3DBoxes

    if not cam_instances:
        return []
    boxes_3d = np.array([inst['bbox_3d'] for inst in cam_instances], dtype=np.float64)
    # origin (0.5, 0.5, 0.5): the converter stores the box centre, as nuScenes' Box does.
    corners = CameraInstance3DBoxes(boxes_3d, origin=(0.5, 0.5, 0.5)).corners.numpy().astype(np.float64)
    intrinsic = np.asarray(cam2img, dtype=np.float64)[:3, :3]
    out = []
    for index, points in enumerate(_clip_to_near_plane(corners)):
        if len(points) < 3:
            continue
        uv = points @ intrinsic.T
        uv = uv[:, :2] / uv[:, 2:3]
        with warnings.catch_warnings():
            # A hull that only touches the image meets it in a line: None, as it should be.
            warnings.filterwarnings('ignore', 'img_intersection is not an object of Polygon')
            clipped = post_process_coords(uv.tolist(), imsize=(width, height))
        if clipped is not None:
            out.append((index, np.array(clipped, dtype=np.float64)))
    return out


def _clip_to_near_plane(corners: np.ndarray, near: float = NEAR_PLANE) -> Iterator[np.ndarray]:
    """Per box, its corners in front of the plane z = ``near`` plus the points where the
    segments between its corners cross that plane: the hull of the box's part in front of
    the camera. (The converter keeps the front corners only, which for a box reaching behind
    the camera loses the part that the camera does see.) Segments between any two corners
    are used, not just the edges: the extra points lie inside the box and leave the hull as
    it is, and no corner order has to be assumed."""
    pairs = np.array([(a, b) for a in range(8) for b in range(a + 1, 8)])
    for points in corners:
        z = points[:, 2]
        front = points[z > near]
        if len(front) in (0, 8):
            yield front
            continue
        za, zb = z[pairs[:, 0]], z[pairs[:, 1]]
        crossing = pairs[(za > near) != (zb > near)]
        a, b = points[crossing[:, 0]], points[crossing[:, 1]]
        t = (near - a[:, 2:3]) / (b[:, 2:3] - a[:, 2:3])
        yield np.concatenate([front, a + t * (b - a)])


def visible_fractions(boxes_xyxy: np.ndarray, depths: np.ndarray, width: int, height: int) -> np.ndarray:
    """Per box, the share of its pixels that no nearer box covers (1 for an unoccluded box)."""
    covered = np.zeros((height, width), dtype=bool)
    visible = np.zeros(len(boxes_xyxy), dtype=np.float64)
    for i in np.argsort(depths, kind='stable'):
        x1, y1, x2, y2 = boxes_xyxy[i]
        c1, r1 = max(0, int(np.floor(x1))), max(0, int(np.floor(y1)))
        c2, r2 = min(width, int(np.ceil(x2))), min(height, int(np.ceil(y2)))
        if c2 <= c1 or r2 <= r1:
            continue
        region = covered[r1:r2, c1:c2]
        visible[i] = 1.0 - region.mean()
        region[:] = True
    return visible


def _image_size(path: str) -> Tuple[int, int]:
    with Image.open(path) as image:  # reads the header only
        return image.size


def _load_infos(ann_file: str) -> Tuple[List[dict], Dict[int, str]]:
    with open(ann_file, 'rb') as f:
        data = pickle.load(f)
    names = {int(i): name for name, i in data['metainfo']['categories'].items()}
    return data['data_list'], names


def camera_boxes(
    data_root: str, ann_file: str, rules: BoxRules = BoxRules(), cameras: Optional[Sequence[str]] = None
) -> Iterator[CameraBoxes]:
    """The visible boxes of every camera image of a v2 info pickle, in pickle order.

    Args:
        data_root: the dataset root; images are ``data_root/samples/<camera>/<img_path>``.
        ann_file: the info pickle, absolute or relative to ``data_root``.
        rules: which boxes count (see ``BoxRules``).
        cameras: the cameras to read (default: every camera of each sample).
    """
    infos, label_names = _load_infos(os.path.join(data_root, ann_file))
    class_index = {name: i for i, name in enumerate(CLASSES)}
    for info in infos:
        for camera, image in info['images'].items():
            if cameras is not None and camera not in cameras:
                continue
            path = os.path.join(data_root, 'samples', camera, image['img_path'])
            width, height = _image_size(path)
            instances = info['cam_instances'].get(camera, [])
            projected = [
                (i, box)
                for i, box in project_camera_boxes(instances, image['cam2img'], width, height)
                if label_names.get(instances[i]['bbox_label']) in class_index
            ]
            index = np.array([i for i, _ in projected], dtype=np.int64)
            boxes = np.array([box for _, box in projected], dtype=np.float64).reshape(-1, 4)
            depths = np.array([instances[i]['depth'] for i in index], dtype=np.float64)
            visible = visible_fractions(boxes, depths, width, height)
            keep = (
                (boxes[:, 2] - boxes[:, 0] >= rules.min_size)
                & (boxes[:, 3] - boxes[:, 1] >= rules.min_size)
                & (visible >= rules.min_visible)
            )
            labels = np.array(
                [class_index[label_names[instances[i]['bbox_label']]] for i in index[keep]], dtype=np.int64
            )
            yield CameraBoxes(path, width, height, boxes[keep], labels, visible[keep], index[keep])


# --------------------------------------------------------------------------- YOLO format
def yolo_label_lines(boxes: CameraBoxes) -> List[str]:
    """One ``class cx cy w h`` line per box, coordinates normalised by the image size."""
    lines = []
    for (x1, y1, x2, y2), label in zip(boxes.boxes_xyxy, boxes.labels):
        cx, cy = (x1 + x2) / 2 / boxes.width, (y1 + y2) / 2 / boxes.height
        w, h = (x2 - x1) / boxes.width, (y2 - y1) / boxes.height
        lines.append(f'{int(label)} {cx:.6f} {cy:.6f} {w:.6f} {h:.6f}')
    return lines


def export_yolo_dataset(
    out_dir: str, splits: Dict[str, Sequence[Tuple[str, str]]], rules: BoxRules = BoxRules()
) -> dict:
    """Write a YOLO-format dataset: ``images/<split>/`` (symbolic links to the JPEGs),
    ``labels/<split>/`` (one text file per image, empty for an image without boxes) and
    ``data.yaml``.

    Args:
        out_dir: where to write it.
        splits: split name (``'train'``, ``'val'``) → ``(data_root, ann_file)`` pairs whose
            camera images it holds.
        rules: which boxes become labels.

    Returns:
        dict: ``yaml`` (the data.yaml path) and, per split, the numbers of images and boxes.
    """
    out_dir = os.path.abspath(out_dir)
    counts = {}
    for split, sources in splits.items():
        image_dir, label_dir = os.path.join(out_dir, 'images', split), os.path.join(out_dir, 'labels', split)
        os.makedirs(image_dir, exist_ok=True)
        os.makedirs(label_dir, exist_ok=True)
        images = boxes = 0
        for data_root, ann_file in sources:
            for cam in camera_boxes(data_root, ann_file, rules):
                # nuScenes file names carry the log, camera and timestamp: unique within a world,
                # not across two worlds with the same log names, hence the running number.
                name = f'{images:06d}_{os.path.basename(cam.img_path)}'
                os.symlink(os.path.abspath(cam.img_path), os.path.join(image_dir, name))
                with open(os.path.join(label_dir, os.path.splitext(name)[0] + '.txt'), 'w') as f:
                    f.writelines(line + '\n' for line in yolo_label_lines(cam))
                images, boxes = images + 1, boxes + len(cam.labels)
        counts[split] = dict(images=images, boxes=boxes)
    # ultralytics wants both keys even to validate only: a missing one names the first split.
    data = dict(
        path=out_dir,
        names=dict(enumerate(CLASSES)),
        **{split: f'images/{split if split in splits else next(iter(splits))}' for split in ('train', 'val')},
    )
    path = os.path.join(out_dir, 'data.yaml')
    with open(path, 'w') as f:
        yaml.safe_dump(data, f, sort_keys=False)
    return dict(yaml=path, **counts)


# --------------------------------------------------------------------------- GT crops
@dataclass
class GtCrops:
    """GT objects cut out of camera images, for training and testing the embedder.

    ``images[i]`` is the object's box grown by ``context`` of its size on each side (clipped
    to the image); ``boxes[i]`` is the object's own box in that crop's pixels, so a caller can
    cut it again with any padding up to ``context``.
    """

    images: List[Image.Image]
    boxes: np.ndarray  # (n, 4) float64
    labels: np.ndarray  # (n,) int64, indices into CLASSES

    def __len__(self) -> int:
        return len(self.labels)

    def counts(self) -> Dict[str, int]:
        return {name: int((self.labels == i).sum()) for i, name in enumerate(CLASSES)}

    def cut(self, i: int, padding: float) -> Image.Image:
        """Crop ``i`` as the mining pipeline cuts a detection: its box grown by ``padding``."""
        image = self.images[i]
        return image.crop(padded_crop_box(self.boxes[i], padding, image.width, image.height))


def collect_gt_crops(
    sources: Sequence[Tuple[str, str]],
    rules: BoxRules,
    min_crop_size: int = 8,
    context: float = 0.25,
    padding: float = 0.05,
) -> GtCrops:
    """The visible GT boxes of every camera image of ``sources`` (``(data_root, ann_file)``
    pairs) whose crop with ``padding`` would be at least ``min_crop_size`` pixels on each
    side, as the mining pipeline's ``crops.min_size`` demands of a detection."""
    images, boxes, labels = [], [], []
    for data_root, ann_file in sources:
        for cam in camera_boxes(data_root, ann_file, rules):
            if not len(cam.labels):
                continue
            with Image.open(cam.img_path) as frame:
                frame = frame.convert('RGB')
                for box, label in zip(cam.boxes_xyxy, cam.labels):
                    x1, y1, x2, y2 = padded_crop_box(box, padding, cam.width, cam.height)
                    if min(x2 - x1, y2 - y1) < min_crop_size:
                        continue
                    outer = padded_crop_box(box, context, cam.width, cam.height)
                    images.append(frame.crop(outer))
                    boxes.append(box - np.array([outer[0], outer[1], outer[0], outer[1]], dtype=np.float64))
                    labels.append(int(label))
    return GtCrops(images, np.array(boxes, dtype=np.float64).reshape(-1, 4), np.array(labels, dtype=np.int64))
