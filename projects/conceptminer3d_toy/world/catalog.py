"""What the toy world contains: object classes, scene themes and the sensor rig.

Sizes are nuScenes' per-class mean box sizes; frequencies follow nuScenes' long tail
(cars and pedestrians dominate, bicycles / construction vehicles are a few percent).
Rare classes are concentrated in themed scenes so that mining has something to find.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Dict, Optional, Tuple

import numpy as np


@dataclass(frozen=True)
class ObjectClass:
    detection_name: str  # the nuScenes detection class (mmdet3d's class name)
    category: str  # the nuScenes category written in category.json
    size_wlh: Tuple[float, float, float]
    colour: Tuple[int, int, int]  # body colour in the camera images
    lane: str  # where it is placed: 'road', 'parking', 'bike_lane', 'sidewalk', 'works'
    max_speed: float  # m/s when moving
    moving_share: float  # fraction of instances that move
    moving_attribute: Optional[str]
    static_attribute: Optional[str]
    intensity: float  # mean lidar return intensity (0..255)


OBJECT_CLASSES: Tuple[ObjectClass, ...] = (
    ObjectClass(
        'car',
        'vehicle.car',
        (1.95, 4.62, 1.73),
        (40, 90, 200),
        'road',
        10.0,
        0.6,
        'vehicle.moving',
        'vehicle.parked',
        40.0,
    ),
    ObjectClass(
        'truck',
        'vehicle.truck',
        (2.51, 6.93, 2.84),
        (225, 225, 225),
        'road',
        8.0,
        0.5,
        'vehicle.moving',
        'vehicle.parked',
        60.0,
    ),
    ObjectClass(
        'bus',
        'vehicle.bus.rigid',
        (2.94, 10.5, 3.47),
        (230, 190, 30),
        'road',
        8.0,
        0.7,
        'vehicle.moving',
        'vehicle.stopped',
        55.0,
    ),
    ObjectClass(
        'trailer',
        'vehicle.trailer',
        (2.90, 12.29, 3.87),
        (130, 80, 40),
        'parking',
        0.0,
        0.0,
        None,
        'vehicle.parked',
        50.0,
    ),
    ObjectClass(
        'construction_vehicle',
        'vehicle.construction',
        (2.73, 6.37, 3.19),
        (250, 140, 0),
        'works',
        1.0,
        0.3,
        'vehicle.moving',
        'vehicle.parked',
        70.0,
    ),
    ObjectClass(
        'pedestrian',
        'human.pedestrian.adult',
        (0.67, 0.73, 1.77),
        (200, 40, 40),
        'sidewalk',
        1.5,
        0.7,
        'pedestrian.moving',
        'pedestrian.standing',
        20.0,
    ),
    ObjectClass(
        'motorcycle',
        'vehicle.motorcycle',
        (0.77, 2.11, 1.47),
        (120, 30, 150),
        'road',
        9.0,
        0.6,
        'cycle.with_rider',
        'cycle.without_rider',
        45.0,
    ),
    ObjectClass(
        'bicycle',
        'vehicle.bicycle',
        (0.60, 1.70, 1.28),
        (30, 170, 60),
        'bike_lane',
        4.0,
        0.6,
        'cycle.with_rider',
        'cycle.without_rider',
        30.0,
    ),
    ObjectClass(
        'traffic_cone',
        'movable_object.trafficcone',
        (0.41, 0.41, 1.07),
        (255, 110, 20),
        'works',
        0.0,
        0.0,
        None,
        None,
        90.0,
    ),
    ObjectClass(
        'barrier', 'movable_object.barrier', (2.53, 0.50, 0.98), (235, 235, 120), 'works', 0.0, 0.0, None, None, 80.0
    ),
)
CLASS_BY_NAME: Dict[str, ObjectClass] = {c.detection_name: c for c in OBJECT_CLASSES}

ATTRIBUTES = (
    'cycle.with_rider',
    'cycle.without_rider',
    'pedestrian.moving',
    'pedestrian.sitting_lying_down',
    'pedestrian.standing',
    'vehicle.moving',
    'vehicle.parked',
    'vehicle.stopped',
)
VISIBILITY_LEVELS = (('1', 'v0-40'), ('2', 'v40-60'), ('3', 'v60-80'), ('4', 'v80-100'))


@dataclass(frozen=True)
class SceneTheme:
    name: str
    description: str
    class_weights: Dict[str, float]
    share: float  # fraction of scenes with this theme


_CITY = {
    'car': 50,
    'pedestrian': 28,
    'truck': 6,
    'bus': 2,
    'barrier': 3,
    'traffic_cone': 3,
    'motorcycle': 1,
    'bicycle': 1,
    'trailer': 0.5,
    'construction_vehicle': 0.2,
}
SCENE_THEMES: Tuple[SceneTheme, ...] = (
    SceneTheme('city', 'City street, cars and pedestrians', _CITY, 0.6),
    SceneTheme(
        'roadworks',
        'Road works with construction vehicles, cones and barriers',
        {**_CITY, 'construction_vehicle': 7, 'traffic_cone': 14, 'barrier': 10, 'truck': 10, 'trailer': 4},
        0.2,
    ),
    SceneTheme(
        'cyclists', 'Bike lane with cyclists and motorcycles', {**_CITY, 'bicycle': 10, 'motorcycle': 7, 'bus': 4}, 0.2
    ),
)


@dataclass(frozen=True)
class CameraSpec:
    channel: str
    yaw_deg: float  # heading in the ego frame (x forward, y left)
    translation: Tuple[float, float, float]  # in the ego frame, metres
    focal_at_1600: float  # focal length in pixels for a 1600-px-wide image (nuScenes' own)
    time_offset_us: int  # cameras fire one after another during the lidar sweep


# Mounting positions and focal lengths follow nuScenes' calibrated_sensor values.
CAMERAS: Tuple[CameraSpec, ...] = (
    CameraSpec('CAM_FRONT', 0.0, (1.70, 0.02, 1.51), 1266.4, 12_000),
    CameraSpec('CAM_FRONT_RIGHT', -55.0, (1.55, -0.49, 1.50), 1260.8, 20_000),
    CameraSpec('CAM_BACK_RIGHT', -110.0, (1.03, -0.48, 1.56), 1259.5, 28_000),
    CameraSpec('CAM_BACK', 180.0, (0.03, 0.00, 1.58), 809.2, 37_000),
    CameraSpec('CAM_BACK_LEFT', 110.0, (1.05, 0.48, 1.56), 1256.7, 45_000),
    CameraSpec('CAM_FRONT_LEFT', 55.0, (1.52, 0.49, 1.51), 1272.6, 4_000),
)
CAMERA_CHANNELS = tuple(c.channel for c in CAMERAS)
LIDAR_CHANNEL = 'LIDAR_TOP'
LIDAR_TRANSLATION = (0.943713, 0.0, 1.84023)
LIDAR_YAW_DEG = -90.0  # nuScenes' LIDAR_TOP frame has x to the right, y forward


def camera_intrinsic(cam: CameraSpec, width: int, height: int) -> np.ndarray:
    f = cam.focal_at_1600 * width / 1600.0
    return np.array([[f, 0.0, width / 2.0], [0.0, f, height / 2.0], [0.0, 0.0, 1.0]])


def assign_themes(num_scenes: int, rng: np.random.Generator) -> Tuple[SceneTheme, ...]:
    """Themes by share, shuffled over the scene list. Every rare theme appears at least once
    when there is room, so both splits contain every class."""
    rare = SCENE_THEMES[1:]
    if num_scenes <= len(rare):
        themes = list(rare[:num_scenes])
    else:
        counts = np.maximum(np.round(np.array([t.share for t in rare]) * num_scenes).astype(int), 1)
        themes = [t for t, n in zip(rare, counts) for _ in range(n)]
        themes += [SCENE_THEMES[0]] * (num_scenes - len(themes))
    return tuple(themes[i] for i in rng.permutation(len(themes)))


def scene_weights(theme: SceneTheme) -> Tuple[Tuple[str, ...], np.ndarray]:
    names = tuple(theme.class_weights)
    weights = np.array([theme.class_weights[n] for n in names], dtype=float)
    return names, weights / weights.sum()


# --- The 'nuscenes' class mix and the distractors (ToyWorldConfig knobs; off by default) ---

# nuScenes v1.0-trainval: share of each detection class among the annotations, in percent.
NUSCENES_ANNOTATION_SHARES = {
    'car': 43.7,
    'pedestrian': 19.7,
    'barrier': 13.2,
    'traffic_cone': 8.7,
    'truck': 7.7,
    'trailer': 2.2,
    'bus': 1.4,
    'construction_vehicle': 1.3,
    'motorcycle': 1.1,
    'bicycle': 1.0,
}
# Instance weights that give about those shares among the annotations with lidar points (the
# ones mmdet3d trains on and the devkit evaluates): classes differ in how long they stay within
# the annotation radius (parked vs passing), in how often a crowded lane refuses them and in
# how often nearer objects hide them, so the weights are not the shares themselves. Fitted by
# simulating the benchmark preset and rescaling until the shares matched.
_NUSCENES_INSTANCE_WEIGHTS = {
    'car': 40.1,
    'pedestrian': 14.6,
    'barrier': 15.2,
    'traffic_cone': 11.7,
    'truck': 9.0,
    'trailer': 4.2,
    'bus': 1.95,
    'construction_vehicle': 0.89,
    'motorcycle': 1.09,
    'bicycle': 1.18,
}
# Classes that come and go together from scene to scene; cars and pedestrians are everywhere.
CLASS_GROUPS = {
    'works': ('construction_vehicle', 'traffic_cone', 'barrier'),
    'cycles': ('bicycle', 'motorcycle'),
    'heavy': ('truck', 'bus', 'trailer'),
}
_GROUP_DESCRIPTION = {'works': 'road works', 'cycles': 'cyclists', 'heavy': 'heavy vehicles'}


def _gamma(rng: np.random.Generator, variance: float) -> float:
    """A mean-1 factor with the given variance (1 exactly when the variance is 0)."""
    return float(rng.gamma(1.0 / variance, variance)) if variance > 0 else 1.0


def nuscenes_mix_theme(rng: np.random.Generator, clustering: float) -> SceneTheme:
    """One scene's class weights for the 'nuscenes' mix: every class can appear in every scene,
    but each class outside cars and pedestrians is scaled by a factor shared with its group
    (so cones, barriers and construction vehicles come together) times one of its own; both
    have mean 1 and variance ``clustering``, so 0 gives every scene the same mix."""
    weights = dict(_NUSCENES_INSTANCE_WEIGHTS)
    boosted = []
    for group, members in CLASS_GROUPS.items():
        factor = _gamma(rng, clustering)
        if factor > 1.5:
            boosted.append(group)
        for name in members:
            weights[name] *= factor * _gamma(rng, clustering)
    description = 'Street scene' + (' with ' + ' and '.join(_GROUP_DESCRIPTION[g] for g in boosted) if boosted else '')
    return SceneTheme('+'.join(['street', *boosted]), description, weights, 1.0)


# Common-class objects painted in a rare class's colour (a yellow car next to a yellow bus, an
# orange municipal truck next to an orange excavator): (look, share of the class's instances
# at lookalike_rate=1).
LOOKALIKES = {
    'car': (('bus', 0.05),),
    'truck': (('construction_vehicle', 0.10), ('trailer', 0.06)),
    'pedestrian': (('bicycle', 0.03), ('motorcycle', 0.03)),
}
# Unlabelled cut-out boards beside the road showing a rare class at its real size: a camera
# sees that class, the lidar a thin flat panel, and the 3D labels nothing.
POSTER_LOOKS = ('bus', 'trailer', 'construction_vehicle', 'motorcycle', 'bicycle')
POSTER_THICKNESS = 0.08
