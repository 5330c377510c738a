"""Rigid transforms in nuScenes conventions (quaternions are w, x, y, z)."""

from __future__ import annotations

import numpy as np
from pyquaternion import Quaternion


def yaw_quaternion(yaw: float) -> Quaternion:
    return Quaternion(axis=(0.0, 0.0, 1.0), angle=yaw)


def camera_rotation(yaw: float) -> Quaternion:
    """cam→ego rotation of a level camera looking along ``yaw`` (cam: x right, y down, z forward)."""
    forward = np.array([np.cos(yaw), np.sin(yaw), 0.0])
    right = np.array([np.sin(yaw), -np.cos(yaw), 0.0])
    down = np.array([0.0, 0.0, -1.0])
    return Quaternion(matrix=np.stack([right, down, forward], axis=1))


def transform(rotation: Quaternion, translation) -> np.ndarray:
    """4×4 matrix mapping points of a child frame into its parent frame."""
    matrix = np.eye(4)
    matrix[:3, :3] = rotation.rotation_matrix
    matrix[:3, 3] = translation
    return matrix


def apply(matrix: np.ndarray, points: np.ndarray) -> np.ndarray:
    return points @ matrix[:3, :3].T + matrix[:3, 3]


def box_corners(center: np.ndarray, size_wlh, yaw: float) -> np.ndarray:
    """8 corners (global frame); first 4 the bottom face, counter-clockwise from front-left."""
    w, l, h = size_wlh
    x = np.array([1, -1, -1, 1, 1, -1, -1, 1]) * l / 2
    y = np.array([1, 1, -1, -1, 1, 1, -1, -1]) * w / 2
    z = np.array([-1, -1, -1, -1, 1, 1, 1, 1]) * h / 2
    c, s = np.cos(yaw), np.sin(yaw)
    local = np.stack([c * x - s * y, s * x + c * y, z], axis=1)
    return local + center


# Side faces as (bottom_a, bottom_b, top_b, top_a): u runs a→b along the ground, v upwards.
SIDE_FACES = {
    'front': (0, 3, 7, 4),
    'back': (1, 2, 6, 5),
    'left': (0, 1, 5, 4),
    'right': (3, 2, 6, 7),
}
TOP_FACE = (4, 7, 6, 5)


def face_patch(corners: np.ndarray, face, u0: float, u1: float, v0: float, v1: float) -> np.ndarray:
    """Quad covering [u0,u1]×[v0,v1] of a side face (any frame the corners are in)."""
    a, b, _, top_a = (corners[i] for i in face)
    du, dv = b - a, top_a - a
    return np.array([a + u * du + v * dv for u, v in ((u0, v0), (u1, v0), (u1, v1), (u0, v1))])


def points_in_box(points: np.ndarray, center: np.ndarray, size_wlh, yaw: float) -> np.ndarray:
    """Boolean mask of global-frame points inside a yaw-rotated box."""
    w, l, h = size_wlh
    d = points[:, :3] - center
    c, s = np.cos(-yaw), np.sin(-yaw)
    x = c * d[:, 0] - s * d[:, 1]
    y = s * d[:, 0] + c * d[:, 1]
    return (np.abs(x) <= l / 2) & (np.abs(y) <= w / 2) & (np.abs(d[:, 2]) <= h / 2)
