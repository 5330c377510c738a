"""Scene simulation: an ego vehicle driving a straight street and the objects around it.

Everything is placed in road coordinates (s along the road, d to the left) and moves at
constant velocity; objects sharing a lane share its speed, so nothing collides.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import Dict, List, Optional, Tuple

import numpy as np

from .catalog import CLASS_BY_NAME, LOOKALIKES, POSTER_LOOKS, POSTER_THICKNESS, ObjectClass, SceneTheme, scene_weights

ANNOTATION_RADIUS = 40.0  # metres around the ego within which objects are annotated
_MOVING_LANES = ((0.0, 1), (3.5, 1), (-3.5, -1), (-7.0, -1))  # (d, direction)


@dataclass(frozen=True)
class Track:
    """One object instance: a box moving at constant velocity in the global frame."""

    instance_index: int
    object_class: ObjectClass
    start: np.ndarray  # box centre at t=0, global frame
    velocity: np.ndarray  # global frame, m/s (z is 0)
    yaw: float
    size_wlh: Tuple[float, float, float]
    attribute: Optional[str]
    colour: Optional[Tuple[int, int, int]] = None  # painted unlike its class (a look-alike)

    def center(self, t: float) -> np.ndarray:
        return self.start + self.velocity * t


@dataclass(frozen=True)
class Clutter:
    """Unlabelled static structure (poles, bushes) that the detector must learn to ignore."""

    position: np.ndarray
    radius: float
    height: float


@dataclass(frozen=True)
class SceneSimulation:
    theme: SceneTheme
    origin: np.ndarray  # ego position at t=0
    heading: float
    ego_speed: float
    tracks: Tuple[Track, ...]
    clutter: Tuple[Clutter, ...]
    # Unlabelled things drawn like a class (cut-out boards); never annotated.
    distractors: Tuple[Track, ...] = ()

    def road_to_global(self, s, d, z=0.0) -> np.ndarray:
        c, si = np.cos(self.heading), np.sin(self.heading)
        return np.array([self.origin[0] + c * s - si * d, self.origin[1] + si * s + c * d, z])

    def ego_pose(self, t: float) -> Tuple[np.ndarray, float]:
        return self.road_to_global(self.ego_speed * t, 0.0), self.heading

    def annotated_tracks(self, t: float) -> List[Track]:
        ego, _ = self.ego_pose(t)
        return [tr for tr in self.tracks if np.hypot(*(tr.center(t)[:2] - ego[:2])) <= ANNOTATION_RADIUS]


@dataclass
class _Placed:
    """Road-frame footprint of a placed object: s at t=0, lateral centre, speed along s."""

    s: float
    d: float
    speed: float
    length: float
    width: float


def _overlap_during(a: _Placed, b: _Placed, duration: float) -> bool:
    if abs(a.d - b.d) >= (a.width + b.width) / 2 + 0.3:
        return False
    gap0 = a.s - b.s
    gap1 = gap0 + (a.speed - b.speed) * duration
    closest = 0.0 if gap0 * gap1 <= 0 else min(abs(gap0), abs(gap1))
    return closest < (a.length + b.length) / 2 + 1.0


def simulate_scene(
    theme: SceneTheme,
    scene_index: int,
    duration: float,
    rng: np.random.Generator,
    objects: Tuple[int, int] = (28, 44),
    separate_objects: bool = False,
    lookalike_rate: float = 0.0,
    posters_per_scene: float = 0.0,
    extra_rng: Optional[np.random.Generator] = None,
) -> SceneSimulation:
    """``objects``: [low, high) number of objects to place. ``separate_objects``: refuse any
    placement whose footprint meets another object's at some time of the scene (lanes alone
    let parked cars, road works and the outer opposite lane overlap). ``lookalike_rate`` and
    ``posters_per_scene`` add distractors (see ``catalog.LOOKALIKES`` / ``POSTER_LOOKS``),
    drawn from ``extra_rng`` so that ``rng`` draws the same numbers whatever they are."""
    origin = np.array([400.0 + 600.0 * scene_index, 900.0 + rng.uniform(-50, 50), 0.0])
    heading = float(rng.uniform(-np.pi, np.pi))
    ego_speed = float(rng.uniform(3.0, 7.0))
    travelled = ego_speed * duration
    names, weights = scene_weights(theme)
    lane_speed: Dict[Tuple[str, float], float] = {('road', 0.0): ego_speed}
    occupied: Dict[Tuple[str, float], List[Tuple[float, float]]] = {}
    sim = SceneSimulation(theme, origin, heading, ego_speed, (), ())

    def free(key, s, length):
        lo, hi = s - length / 2 - 1.0, s + length / 2 + 1.0
        if key == ('road', 0.0) and lo < 8.0 and hi > -8.0:  # keep clear of the ego
            return False
        return all(hi < a or lo > b for a, b in occupied.get(key, []))

    # The ego too, so that nothing is placed on top of it.
    placed = [_Placed(0.0, 0.0, ego_speed, 14.0, 2.0)]
    scene_time = duration + 0.1  # cameras fire up to 45 ms after the last keyframe

    tracks: List[Track] = []
    num_objects = int(rng.integers(*objects))
    for _ in range(num_objects * 4):  # rejection sampling; most tries succeed
        if len(tracks) == num_objects:
            break
        cls = CLASS_BY_NAME[names[rng.choice(len(names), p=weights)]]
        size = tuple(float(x) * rng.uniform(0.92, 1.08) for x in cls.size_wlh)
        moving = rng.random() < cls.moving_share
        side = 1 if rng.random() < 0.5 else -1
        direction, yaw_offset = 1, 0.0
        if cls.lane == 'road' and moving:
            d, direction = _MOVING_LANES[rng.integers(len(_MOVING_LANES))]
            key = ('road', d)
            speed = lane_speed.setdefault(key, float(rng.uniform(0.4, 1.0) * cls.max_speed))
        elif cls.lane in ('road', 'parking'):
            d, key, speed = 7.5 * side, ('parking', 7.5 * side), 0.0
        elif cls.lane == 'bike_lane':
            d = 5.6 * side
            key = ('bike', d) if moving else ('bike_parked', 9.3 * side)
            direction = side
            speed = lane_speed.setdefault(key, float(rng.uniform(0.5, 1.0) * cls.max_speed)) if moving else 0.0
            d = d if moving else 9.3 * side
        elif cls.lane == 'sidewalk':
            sub = 0 if rng.random() < 0.5 else 1
            d = side * (10.2 + 1.3 * sub + (0.0 if moving else 2.2))
            key = ('sidewalk', d)
            direction = 1 if sub == 0 else -1
            speed = lane_speed.setdefault(key, float(rng.uniform(0.6, 1.0) * cls.max_speed)) if moving else 0.0
        else:  # road works zone beside the road, static except slow construction vehicles
            d = side * float(rng.choice([6.2, 8.2, 12.5]) if cls.detection_name != 'construction_vehicle' else 14.5)
            key, speed = ('works', d), 0.0
            yaw_offset = float(rng.choice([0.0, np.pi / 2])) if cls.detection_name == 'traffic_cone' else 0.0
            moving = False
        length = size[1] if yaw_offset == 0.0 else size[0]
        s = float(rng.uniform(-35.0, travelled + 35.0))
        if not free(key, s, length):
            continue
        if separate_objects:
            footprint = _Placed(s, d, speed * direction, length, size[0] if yaw_offset == 0.0 else size[1])
            if any(_overlap_during(footprint, other, scene_time) for other in placed):
                continue
            placed.append(footprint)
        occupied.setdefault(key, []).append((s - length / 2, s + length / 2))
        yaw = heading + (0.0 if direction > 0 else np.pi) + yaw_offset
        if speed == 0.0 and cls.lane != 'works':
            yaw += float(rng.choice([0.0, np.pi]))
        yaw += float(rng.normal(0.0, 0.03))
        center = sim.road_to_global(s, d, size[2] / 2)
        velocity = np.array([np.cos(heading), np.sin(heading), 0.0]) * speed * direction
        attribute = cls.moving_attribute if speed > 0 else cls.static_attribute
        if cls.detection_name in ('bicycle', 'motorcycle') and speed == 0 and rng.random() < 0.3:
            attribute = 'cycle.with_rider'  # waiting at a crossing
        tracks.append(
            Track(len(tracks), cls, center, velocity, float(np.arctan2(np.sin(yaw), np.cos(yaw))), size, attribute)
        )

    clutter = []
    for _ in range(int(rng.integers(6, 12))):
        s = float(rng.uniform(-35.0, travelled + 35.0))
        d = float(rng.choice([-1, 1]) * rng.uniform(15.5, 22.0))
        clutter.append(Clutter(sim.road_to_global(s, d), float(rng.uniform(0.2, 1.4)), float(rng.uniform(0.8, 4.0))))
    distractors: Tuple[Track, ...] = ()
    if lookalike_rate > 0 or posters_per_scene > 0:
        if extra_rng is None:
            raise ValueError('distractors need extra_rng')
        tracks = _paint_lookalikes(tracks, lookalike_rate, extra_rng)
        distractors = _posters(sim, posters_per_scene, travelled, extra_rng)
    return SceneSimulation(theme, origin, heading, ego_speed, tuple(tracks), tuple(clutter), distractors)


def _paint_lookalikes(tracks: List[Track], rate: float, rng: np.random.Generator) -> List[Track]:
    painted = []
    for track in tracks:
        options = LOOKALIKES.get(track.object_class.detection_name, ())
        if not options:
            painted.append(track)
            continue
        draw = rng.random()  # one draw per eligible track, whatever the rate
        for look, share in options:
            if draw < share * rate:
                track = replace(track, colour=CLASS_BY_NAME[look].colour)
                break
            draw -= share * rate
        painted.append(track)
    return painted


def _posters(sim: SceneSimulation, mean: float, travelled: float, rng: np.random.Generator) -> Tuple[Track, ...]:
    """Cut-out boards just beyond the works zone, their printed side towards the road."""
    posters: List[Track] = []
    taken: Dict[int, List[Tuple[float, float]]] = {}
    for _ in range(int(rng.poisson(mean))):
        cls = CLASS_BY_NAME[POSTER_LOOKS[rng.integers(len(POSTER_LOOKS))]]
        _, length, h = (float(x) * rng.uniform(0.92, 1.08) for x in cls.size_wlh)
        side = 1 if rng.random() < 0.5 else -1
        d = side * float(rng.uniform(16.6, 17.6))
        s = float(rng.uniform(-35.0, travelled + 35.0))
        yaw = sim.heading + float(rng.choice([0.0, np.pi]))
        if any(s + length / 2 + 1 > a and s - length / 2 - 1 < b for a, b in taken.get(side, [])):
            continue
        taken.setdefault(side, []).append((s - length / 2, s + length / 2))
        # A cycle's picture shows its rider, as most moving cycles have one.
        attribute = cls.moving_attribute if cls.detection_name in ('bicycle', 'motorcycle') else None
        posters.append(
            Track(
                -1 - len(posters),
                cls,
                sim.road_to_global(s, d, h / 2),
                np.zeros(3),
                float(np.arctan2(np.sin(yaw), np.cos(yaw))),
                (POSTER_THICKNESS, length, h),
                attribute,
            )
        )
    return tuple(posters)
