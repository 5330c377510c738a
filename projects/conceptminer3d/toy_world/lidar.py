"""Synthetic LIDAR_TOP sweeps: a ground plane, points on the visible faces of every box,
and unlabelled clutter, in nuScenes' 5-float layout (x, y, z, intensity, ring)."""
from __future__ import annotations

from typing import Dict

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


def synthesize_sweep(sim: SceneSimulation, t: float, lidar2global: np.ndarray, budget: int,
                     rng: np.random.Generator) -> tuple[np.ndarray, Dict[int, int]]:
    """Returns points in the lidar frame (N×5 float32) and lidar point counts per track."""
    sensor = lidar2global[:3, 3]
    density = _DENSITY_AT_DEFAULT * budget / _DEFAULT_BUDGET
    chunks, labels = [], []

    n_ground = int(budget * 0.55)
    radius = 2.5 + (MAX_RANGE - 2.5) * rng.random(n_ground) ** 1.6
    angle = rng.uniform(-np.pi, np.pi, n_ground)
    ground = np.stack([sensor[0] + radius * np.cos(angle), sensor[1] + radius * np.sin(angle),
                       rng.normal(0.0, 0.03, n_ground), rng.normal(8.0, 3.0, n_ground)], axis=1)
    chunks.append(ground)
    labels.append(np.full(n_ground, -1))

    for track in sim.tracks:
        center = track.center(t)
        dist = float(np.hypot(*(center[:2] - sensor[:2])))
        if dist > MAX_RANGE:
            continue
        corners = box_corners(center, track.size_wlh, track.yaw)
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
            inten = rng.normal(track.object_class.intensity, 8.0, (n, 1))
            chunks.append(np.hstack([pts, inten]))
            labels.append(np.full(n, track.instance_index))

    for blob in sim.clutter:
        dist = float(np.hypot(*(blob.position[:2] - sensor[:2])))
        if dist > MAX_RANGE:
            continue
        n = rng.poisson(2 * np.pi * blob.radius * blob.height * density / max(dist, 2.0) ** 2 / 2)
        ang = rng.uniform(-np.pi, np.pi, n)
        pts = np.stack([blob.position[0] + blob.radius * np.cos(ang),
                        blob.position[1] + blob.radius * np.sin(ang),
                        rng.uniform(0.0, blob.height, n), rng.normal(25.0, 6.0, n)], axis=1)
        chunks.append(pts)
        labels.append(np.full(n, -2))

    points = np.concatenate(chunks)
    owner = np.concatenate(labels)
    # The ground under a box is hidden by the box itself.
    keep = np.ones(len(points), bool)
    counts: Dict[int, int] = {}
    for track in sim.tracks:
        center = track.center(t)
        if np.hypot(*(center[:2] - sensor[:2])) > MAX_RANGE + 10:
            continue
        grown = tuple(x + 0.1 for x in track.size_wlh)
        inside = points_in_box(points, center, grown, track.yaw)
        keep &= ~(inside & (owner == -1))
        counts[track.instance_index] = int((inside & (owner == track.instance_index)).sum())
    points = points[keep]

    local = apply(np.linalg.inv(lidar2global), points[:, :3])
    elevation = np.arctan2(local[:, 2], np.hypot(local[:, 0], local[:, 1]))
    ring = np.clip(np.round((elevation + 0.54) / (0.72 / _NUM_RINGS)), 0, _NUM_RINGS - 1)
    intensity = np.clip(points[:, 3], 0.0, 255.0)
    cloud = np.hstack([local, intensity[:, None], ring[:, None]]).astype(np.float32)
    return cloud, counts
