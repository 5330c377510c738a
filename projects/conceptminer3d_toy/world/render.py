"""Camera images: the 3D world projected through a pinhole camera, painter's algorithm.

Each class gets a recognisable look (colour and parts: windows and wheels on vehicles,
legs/torso/head on pedestrians, wheels and rider on cycles, striped barriers, cones),
drawn on the projected faces of its 3D box, so a 2D detector sees what the lidar sees.
"""

from __future__ import annotations

from typing import List, Sequence, Tuple

import numpy as np
from PIL import Image, ImageDraw

from .geometry import SIDE_FACES, TOP_FACE, apply, box_corners, face_patch
from .simulate import SceneSimulation, Track

NEAR = 0.2
Colour = Tuple[int, int, int]
_DARK = (25, 25, 30)
_GLASS = (60, 75, 95)
_SKIN = (225, 185, 150)
_TROUSERS = (35, 35, 90)
_RIDER = (210, 60, 60)
_SHADE = {'front': 0.85, 'back': 0.8, 'left': 1.0, 'right': 0.92, 'top': 1.1}
_WHEELS = ((0.1, 0.26, 0.0, 0.28), (0.74, 0.9, 0.0, 0.28))


def _clip(poly: np.ndarray, normal: np.ndarray, offset: float) -> np.ndarray:
    """Sutherland–Hodgman against the half-space normal·p >= offset."""
    dist = poly @ normal - offset
    if (dist >= 0).all():
        return poly
    if (dist < 0).all():
        return poly[:0]
    out: List[np.ndarray] = []
    n = len(poly)
    for i in range(n):
        a, b = poly[i], poly[(i + 1) % n]
        da, db = dist[i], dist[(i + 1) % n]
        if da >= 0:
            out.append(a)
        if (da >= 0) != (db >= 0):
            out.append(a + (b - a) * (da / (da - db)))
    return np.array(out) if out else np.zeros((0, poly.shape[1]))


class CameraView:
    def __init__(self, global2cam: np.ndarray, intrinsic: np.ndarray, width: int, height: int):
        self.global2cam, self.intrinsic = global2cam, intrinsic
        self.width, self.height = width, height
        self.position = np.linalg.inv(global2cam)[:3, 3]

    def project(self, poly_global: np.ndarray) -> np.ndarray:
        """Clipped, projected polygon in pixels (empty if not in front of the camera)."""
        cam = _clip(apply(self.global2cam, poly_global), np.array([0.0, 0.0, 1.0]), NEAR)
        if len(cam) < 3:
            return cam[:, :2]
        uv = (cam @ self.intrinsic.T)[:, :2] / cam[:, 2:3]
        margin = 2.0 * max(self.width, self.height)
        for normal, offset in (
            ((1, 0), -margin),
            ((-1, 0), -self.width - margin),
            ((0, 1), -margin),
            ((0, -1), -self.height - margin),
        ):
            uv = _clip(uv, np.array(normal, float), offset)
            if len(uv) < 3:
                break
        return uv

    def in_view(self, points_global: np.ndarray) -> bool:
        """False when the points are certainly outside the view frustum."""
        cam = apply(self.global2cam, points_global)
        front = cam[cam[:, 2] > NEAR]
        if len(front) == 0:
            return False
        if len(front) < len(cam):
            return True  # straddles the image plane: let clipping decide
        uv = (front @ self.intrinsic.T)[:, :2] / front[:, 2:3]
        return not ((uv[:, 0] < 0).all() or (uv[:, 0] > self.width).all() or (uv[:, 1] > self.height).all())

    def fill(self, draw: ImageDraw.ImageDraw, poly_global: np.ndarray, colour: Colour) -> None:
        uv = self.project(poly_global)
        if len(uv) >= 3:
            draw.polygon([tuple(p) for p in uv], fill=tuple(int(c) for c in colour))


def _shade(colour: Colour, factor: float) -> Colour:
    return tuple(int(min(255, c * factor)) for c in colour)


def _body(track: Track) -> Colour:
    return track.colour or track.object_class.colour


def _patches(track: Track) -> Tuple[bool, Sequence[Tuple[Sequence[str], Tuple[float, ...], Colour]]]:
    """(draw the solid body?, [(faces, (u0,u1,v0,v1), colour)]) for one object class."""
    name = track.object_class.detection_name
    body = _body(track)
    sides, ends = ('left', 'right'), ('front', 'back')
    wheels = [(sides, w, _DARK) for w in _WHEELS]
    rider = track.attribute == 'cycle.with_rider'
    if name == 'car':
        return True, [(sides, (0.22, 0.78, 0.58, 0.92), _GLASS), (ends, (0.1, 0.9, 0.58, 0.92), _GLASS), *wheels]
    if name == 'bus':
        return True, [(sides, (0.04, 0.96, 0.5, 0.85), _GLASS), (ends, (0.08, 0.92, 0.45, 0.9), _GLASS), *wheels]
    if name == 'truck':
        return True, [
            (sides, (0.0, 0.22, 0.3, 1.0), (170, 30, 30)),
            (('front',), (0.1, 0.9, 0.6, 0.9), _GLASS),
            *wheels,
        ]
    if name == 'trailer':
        return True, [(sides, (0.0, 1.0, 0.45, 0.52), _DARK), (sides, (0.05, 0.2, 0.0, 0.2), _DARK)]
    if name == 'construction_vehicle':
        return True, [
            (sides, (0.55, 0.95, 0.55, 0.95), _GLASS),
            (sides, (0.0, 0.5, 0.72, 0.82), _DARK),
            (sides, (0.05, 0.35, 0.0, 0.35), _DARK),
            (sides, (0.65, 0.95, 0.0, 0.35), _DARK),
        ]
    if name == 'pedestrian':
        every = ('front', 'back', 'left', 'right')
        return False, [
            (every, (0.2, 0.8, 0.0, 0.47), _TROUSERS),
            (every, (0.05, 0.95, 0.47, 0.84), body),
            (every, (0.28, 0.72, 0.84, 1.0), _SKIN),
        ]
    if name in ('bicycle', 'motorcycle'):
        parts = [
            (sides, (0.0, 0.32, 0.0, 0.5), _DARK),
            (sides, (0.68, 1.0, 0.0, 0.5), _DARK),
            (sides, (0.25, 0.75, 0.25, 0.55 if name == 'bicycle' else 0.65), body),
            (ends, (0.3, 0.7, 0.0, 0.55), _DARK),
        ]
        if rider:
            parts += [(sides + ends, (0.35, 0.65, 0.55, 0.88), _RIDER), (sides + ends, (0.4, 0.6, 0.88, 1.0), _SKIN)]
        return False, parts
    if name == 'barrier':
        stripes = [(sides, (u, u + 0.125, 0.15, 0.85), (200, 30, 30)) for u in np.arange(0.0, 1.0, 0.25)]
        return True, stripes
    return True, []


def _draw_cone(view: CameraView, draw: ImageDraw.ImageDraw, track: Track, t: float) -> None:
    corners = box_corners(track.center(t), track.size_wlh, track.yaw)
    apex = corners[4:].mean(0)
    base = corners[:4]
    if not view.in_view(corners):
        return
    for i in range(4):
        tri = np.array([base[i], base[(i + 1) % 4], apex])
        if np.dot(tri.mean(0) - base.mean(0), view.position - tri.mean(0)) > 0:
            view.fill(draw, tri, _shade(_body(track), 0.85 + 0.1 * (i % 2)))
            band = np.array(
                [
                    base[i] + 0.55 * (apex - base[i]),
                    base[(i + 1) % 4] + 0.55 * (apex - base[(i + 1) % 4]),
                    base[(i + 1) % 4] + 0.7 * (apex - base[(i + 1) % 4]),
                    base[i] + 0.7 * (apex - base[i]),
                ]
            )
            view.fill(draw, band, (245, 245, 245))


def _draw_box_object(view: CameraView, draw: ImageDraw.ImageDraw, track: Track, t: float) -> None:
    center = track.center(t)
    corners = box_corners(center, track.size_wlh, track.yaw)
    if not view.in_view(corners):
        return
    solid, patches = _patches(track)
    visible = [
        name
        for name, face in SIDE_FACES.items()
        if np.dot(corners[list(face)].mean(0) - center, view.position - corners[list(face)].mean(0)) > 0
    ]
    # Far faces first so that near faces (and their parts) overwrite them.
    visible.sort(key=lambda f: -np.linalg.norm(corners[list(SIDE_FACES[f])].mean(0) - view.position))
    for name in visible:
        face = SIDE_FACES[name]
        if solid:
            view.fill(draw, corners[list(face)], _shade(_body(track), _SHADE[name]))
        for faces, (u0, u1, v0, v1), colour in patches:
            if name in faces:
                view.fill(draw, face_patch(corners, face, u0, u1, v0, v1), _shade(colour, _SHADE[name]))
    if solid and view.position[2] > corners[4, 2]:
        view.fill(draw, corners[list(TOP_FACE)], _shade(_body(track), _SHADE['top']))


def render_camera(sim: SceneSimulation, t: float, view: CameraView) -> Image.Image:
    image = Image.new('RGB', (view.width, view.height), (150, 190, 230))
    draw = ImageDraw.Draw(image)
    far = 400.0
    ego, _ = sim.ego_pose(t)
    s_ego = sim.ego_speed * t
    view.fill(
        draw,
        np.array([sim.road_to_global(s_ego + s, d) for s, d in ((-far, -far), (far, -far), (far, far), (-far, far))]),
        (105, 120, 90),
    )
    for (d0, d1), colour in (((-13.5, 13.5), (170, 170, 165)), ((-9.0, 9.0), (75, 75, 80))):
        view.fill(
            draw,
            np.array([sim.road_to_global(s_ego + s, d) for s, d in ((-far, d0), (far, d0), (far, d1), (-far, d1))]),
            colour,
        )
    for s in np.arange(np.floor(s_ego / 6) * 6 - 60, s_ego + 60, 6.0):  # dashed centre line
        view.fill(
            draw,
            np.array(
                [sim.road_to_global(s, d, 0.01) for s, d in ((s, -1.85), (s + 3, -1.85), (s + 3, -1.65), (s, -1.65))]
            ),
            (235, 235, 235),
        )
    for blob in sim.clutter:
        corners = box_corners(
            blob.position + np.array([0, 0, blob.height / 2]), (blob.radius * 2, blob.radius * 2, blob.height), 0.0
        )
        view.fill(draw, corners[list(SIDE_FACES['front'])], (60, 110, 50))
    objects = sorted(
        sim.tracks + sim.distractors,
        key=lambda tr: -np.linalg.norm(box_corners(tr.center(t), tr.size_wlh, tr.yaw) - view.position, axis=1).min(),
    )
    for track in objects:
        if np.linalg.norm(track.center(t)[:2] - ego[:2]) > 80.0:
            continue
        if track.object_class.detection_name == 'traffic_cone':
            _draw_cone(view, draw, track, t)
        else:
            _draw_box_object(view, draw, track, t)
    return image
