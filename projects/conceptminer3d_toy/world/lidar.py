"""Synthetic LIDAR_TOP sweeps: a ground plane, points on the visible faces of every box,
and unlabelled clutter and cut-out boards, in nuScenes' 5-float layout (x, y, z, intensity,
ring); optionally with the shadows that nearer objects cast."""

from __future__ import annotations

from typing import Dict, List, NamedTuple, Tuple

import numpy as np

from .geometry import SIDE_FACES, TOP_FACE, apply, box_corners, points_in_box
from .simulate import SceneSimulation

MAX_RANGE = 55.0
_NUM_RINGS = 32
# Points per m² at 1 m range for the default budget; falls off with range².
_DENSITY_AT_DEFAULT = 1900.0
_DEFAULT_BUDGET = 8000


def _sample_quad(quad: np.ndarray, n: int, rng: np.random.Generator) -> np.ndarray:
    u, v = rng.random((2, n, 1))
    return quad[0] + u * (quad[1] - quad[0]) + v * (quad[3] - quad[0])


class Sweep(NamedTuple):
    cloud: np.ndarray  # N×5 float32, lidar frame
    counts: Dict[int, int]  # lidar points per track
    # Per track in range: the share of its sensor-facing surface not hidden behind nearer
    # objects (empty unless asked for).
    visible: Dict[int, float]


# A box that can block the sensor's rays: (identity, centre, size_wlh, yaw). Identities are
# track indices for tracks and negative numbers for everything unlabelled.
_Occluder = Tuple[int, np.ndarray, Tuple[float, float, float], float]
_GROUND, _CLUTTER = -1, -2  # point owners besides tracks; distractors own _distractor_id(i)
_BOARD_INTENSITY = 35.0  # a printed board: a plain, middling return


# One identity per unlabelled object, so that a blob or a board can shadow another but not
# itself.
def _distractor_id(i: int) -> int:
    return -10 - i


def _clutter_id(i: int, sim: SceneSimulation) -> int:
    return -10 - len(sim.distractors) - i


def _blocked(points: np.ndarray, ident: np.ndarray, sensor: np.ndarray, occluders: List[_Occluder]) -> np.ndarray:
    """True where the ray from the sensor to the point passes through an occluder other than
    the point's own object (slab test in each box's frame, only on points in its shadow cone)."""
    rel = points[:, :3] - sensor
    reach = np.hypot(rel[:, 0], rel[:, 1])
    heading = rel[:, :2] / np.maximum(reach, 1e-6)[:, None]
    blocked = np.zeros(len(points), bool)
    for oid, center, (w, l, h), yaw in occluders:
        offset = center[:2] - sensor[:2]
        dist = float(np.hypot(*offset))
        radius = 0.5 * float(np.hypot(w, l))
        if dist <= radius:
            continue  # nothing stands over the sensor
        # Within the cone the box's bounding circle subtends, seen from above.
        cos_cone = np.sqrt(1.0 - (radius / dist) ** 2)
        idx = np.flatnonzero(
            (reach > dist - radius) & (heading @ (offset / dist) >= cos_cone) & (ident != oid) & ~blocked
        )
        if len(idx) == 0:
            continue
        c, s = np.cos(yaw), np.sin(yaw)
        rot = np.array([[c, s, 0.0], [-s, c, 0.0], [0.0, 0.0, 1.0]])  # global -> box frame
        origin = rot @ (sensor - center)
        direction = rel[idx] @ rot.T
        half = np.array([l / 2, w / 2, h / 2])
        with np.errstate(divide='ignore', invalid='ignore'):
            t1 = (-half - origin) / direction
            t2 = (half - origin) / direction
        # A ray parallel to a slab is inside it everywhere or nowhere.
        parallel = direction == 0
        outside = np.abs(origin) > half
        t1 = np.where(parallel, np.where(outside, np.inf, -np.inf), t1)
        t2 = np.where(parallel, np.where(outside, -np.inf, np.inf), t2)
        enter = np.minimum(t1, t2).max(axis=1)
        leave = np.maximum(t1, t2).min(axis=1)
        length = np.linalg.norm(rel[idx], axis=1)
        # 5 cm of slack: a point on a face touching this box is not behind it.
        blocked[idx] = (enter < leave) & (leave > 0) & (enter < 1.0 - 0.05 / np.maximum(length, 0.05))
    return blocked


def _occluders(sim: SceneSimulation, t: float) -> List[_Occluder]:
    boxes: List[_Occluder] = [(tr.instance_index, tr.center(t), tr.size_wlh, tr.yaw) for tr in sim.tracks]
    boxes += [(_distractor_id(i), d.center(t), d.size_wlh, d.yaw) for i, d in enumerate(sim.distractors)]
    boxes += [
        (
            _clutter_id(i, sim),
            blob.position + np.array([0.0, 0.0, blob.height / 2]),
            (2 * blob.radius, 2 * blob.radius, blob.height),
            0.0,
        )
        for i, blob in enumerate(sim.clutter)
    ]
    return boxes


def _visible_share(sim: SceneSimulation, t: float, sensor: np.ndarray, occluders: List[_Occluder]) -> Dict[int, float]:
    """Share of each track's sensor-facing surface, weighted by how squarely it faces the
    sensor, that the sensor sees past the other objects (a 6×6 grid per face: finer than the
    20 cm of a pedestrian's head that often shows over a parked car)."""
    grid = (np.arange(6) + 0.5) / 6
    u, v = (x.ravel() for x in np.meshgrid(grid, grid))
    samples, ident, weight, owners = [], [], [], []
    for track in sim.tracks:
        center = track.center(t)
        if np.hypot(*(center[:2] - sensor[:2])) > MAX_RANGE:
            continue
        corners = box_corners(center, track.size_wlh, track.yaw)
        owners.append(track.instance_index)
        for face in (*SIDE_FACES.values(), TOP_FACE):
            quad = corners[list(face)]
            normal = quad.mean(0) - center
            to_sensor = sensor - quad.mean(0)
            facing = np.dot(normal, to_sensor) / (np.linalg.norm(normal) * np.linalg.norm(to_sensor))
            if facing <= 0:
                continue
            area = np.linalg.norm(quad[1] - quad[0]) * np.linalg.norm(quad[3] - quad[0])
            samples.append(quad[0] + u[:, None] * (quad[1] - quad[0]) + v[:, None] * (quad[3] - quad[0]))
            ident.append(np.full(len(u), track.instance_index))
            weight.append(np.full(len(u), area * facing))
    if not samples:
        return {}
    points, ident, weight = np.concatenate(samples), np.concatenate(ident), np.concatenate(weight)
    seen = ~_blocked(points, ident, sensor, occluders)
    return {i: float(weight[(ident == i) & seen].sum() / weight[ident == i].sum()) for i in owners}


def _box_points(
    center: np.ndarray,
    size_wlh,
    yaw: float,
    intensity: float,
    sensor: np.ndarray,
    density: float,
    dist: float,
    rng: np.random.Generator,
) -> List[np.ndarray]:
    corners = box_corners(center, size_wlh, yaw)
    chunks = []
    for face in (*SIDE_FACES.values(), TOP_FACE):
        quad = corners[list(face)]
        normal = quad.mean(0) - center
        if np.dot(normal, sensor - quad.mean(0)) <= 0:
            continue
        area = np.linalg.norm(quad[1] - quad[0]) * np.linalg.norm(quad[3] - quad[0])
        n = rng.poisson(area * density / max(dist, 2.0) ** 2)
        if n == 0:
            continue
        pts = _sample_quad(quad, n, rng) + rng.normal(0.0, 0.015, (n, 3))
        inten = rng.normal(intensity, 8.0, (n, 1))
        chunks.append(np.hstack([pts, inten]))
    return chunks


def synthesize_sweep(
    sim: SceneSimulation,
    t: float,
    lidar2global: np.ndarray,
    budget: int,
    rng: np.random.Generator,
    shadows: bool = False,
    visibility: bool = False,
) -> Sweep:
    """Points in the lidar frame and lidar point counts per track. With ``shadows``, points
    behind a nearer object (box, distractor or clutter) are dropped, as a real lidar never
    sees them; with ``visibility`` too, the visible share of each track is measured."""
    sensor = lidar2global[:3, 3]
    density = _DENSITY_AT_DEFAULT * budget / _DEFAULT_BUDGET
    chunks, labels = [], []

    n_ground = int(budget * 0.55)
    radius = 2.5 + (MAX_RANGE - 2.5) * rng.random(n_ground) ** 1.6
    angle = rng.uniform(-np.pi, np.pi, n_ground)
    ground = np.stack(
        [
            sensor[0] + radius * np.cos(angle),
            sensor[1] + radius * np.sin(angle),
            rng.normal(0.0, 0.03, n_ground),
            rng.normal(8.0, 3.0, n_ground),
        ],
        axis=1,
    )
    chunks.append(ground)
    labels.append(np.full(n_ground, _GROUND))

    for track in sim.tracks:
        center = track.center(t)
        dist = float(np.hypot(*(center[:2] - sensor[:2])))
        if dist > MAX_RANGE:
            continue
        for chunk in _box_points(
            center, track.size_wlh, track.yaw, track.object_class.intensity, sensor, density, dist, rng
        ):
            chunks.append(chunk)
            labels.append(np.full(len(chunk), track.instance_index))

    for i, distractor in enumerate(sim.distractors):
        center = distractor.center(t)
        dist = float(np.hypot(*(center[:2] - sensor[:2])))
        if dist > MAX_RANGE:
            continue
        for chunk in _box_points(
            center, distractor.size_wlh, distractor.yaw, _BOARD_INTENSITY, sensor, density, dist, rng
        ):
            chunks.append(chunk)
            labels.append(np.full(len(chunk), _distractor_id(i)))

    clutter_ids = []
    for i, blob in enumerate(sim.clutter):
        dist = float(np.hypot(*(blob.position[:2] - sensor[:2])))
        if dist > MAX_RANGE:
            continue
        n = rng.poisson(2 * np.pi * blob.radius * blob.height * density / max(dist, 2.0) ** 2 / 2)
        ang = rng.uniform(-np.pi, np.pi, n)
        pts = np.stack(
            [
                blob.position[0] + blob.radius * np.cos(ang),
                blob.position[1] + blob.radius * np.sin(ang),
                rng.uniform(0.0, blob.height, n),
                rng.normal(25.0, 6.0, n),
            ],
            axis=1,
        )
        chunks.append(pts)
        labels.append(np.full(n, _CLUTTER))
        clutter_ids.append(np.full(n, _clutter_id(i, sim)))

    points = np.concatenate(chunks)
    owner = np.concatenate(labels)
    visible: Dict[int, float] = {}
    if shadows:
        occluders = _occluders(sim, t)
        # The same identities as _occluders(), so that nothing shadows itself.
        ident = owner.copy()
        ident[owner == _CLUTTER] = np.concatenate(clutter_ids) if clutter_ids else []
        keep = ~_blocked(points, ident, sensor, occluders)
        points, owner = points[keep], owner[keep]
        if visibility:
            visible = _visible_share(sim, t, sensor, occluders)
    # The ground under a box is hidden by the box itself.
    keep = np.ones(len(points), bool)
    counts: Dict[int, int] = {}
    for track in sim.tracks:
        center = track.center(t)
        if np.hypot(*(center[:2] - sensor[:2])) > MAX_RANGE + 10:
            continue
        grown = tuple(x + 0.1 for x in track.size_wlh)
        inside = points_in_box(points, center, grown, track.yaw)
        keep &= ~(inside & (owner == _GROUND))
        counts[track.instance_index] = int((inside & (owner == track.instance_index)).sum())
    points = points[keep]

    local = apply(np.linalg.inv(lidar2global), points[:, :3])
    elevation = np.arctan2(local[:, 2], np.hypot(local[:, 0], local[:, 1]))
    ring = np.clip(np.round((elevation + 0.54) / (0.72 / _NUM_RINGS)), 0, _NUM_RINGS - 1)
    intensity = np.clip(points[:, 3], 0.0, 255.0)
    cloud = np.hstack([local, intensity[:, None], ring[:, None]]).astype(np.float32)
    return Sweep(cloud, counts, visible)
