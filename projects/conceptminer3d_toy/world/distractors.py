"""Which camera distractors each sample of a toy world shows, for counting what mining mistook.

``toy_world.json`` lists per scene the cut-out boards (``poster``: a picture of a rare class
with no 3D label) and the annotated objects painted in another class's colour (``lookalike``).
A sample shows a look-alike when the object is annotated in it, and a board when the board's
box projects into one of the sample's cameras.
"""

from __future__ import annotations

import json
import os
from collections import defaultdict
from typing import Dict, List, Mapping

import numpy as np

from conceptminer3d.mining.annotations import lidar_box_corners, project_boxes

__all__ = ['sample_decoys']


def _global_to_lidar(info: Mapping) -> np.ndarray:
    lidar2global = np.asarray(info['ego2global'], np.float64) @ np.asarray(
        info['lidar_points']['lidar2ego'], np.float64
    )
    return np.linalg.inv(lidar2global)


def _posters_in_view(info: Mapping, posters: List[dict], width: int, height: int) -> List[str]:
    """The looks of the boards whose box shows in one of the sample's cameras."""
    to_lidar = _global_to_lidar(info)
    yaw_offset = np.arctan2(to_lidar[1, 0], to_lidar[0, 0])
    boxes = []
    for poster in posters:
        centre = to_lidar[:3, :3] @ np.asarray(poster['translation'], np.float64) + to_lidar[:3, 3]
        thickness, length, h = poster['size']  # width, length, height as the generator writes it
        boxes.append([*centre, length, thickness, h, poster['yaw'] + yaw_offset])
    corners = lidar_box_corners(np.asarray(boxes))
    seen = np.zeros(len(posters), bool)
    for camera in (info.get('images') or {}).values():
        if 'lidar2cam' not in camera:
            continue
        extents = project_boxes(corners, camera['lidar2cam'], camera['cam2img'], width, height)
        seen |= np.array([e is not None for e in extents])
    return [p['look'] for p, s in zip(posters, seen) if s]


def sample_decoys(data_root: str, infos: Mapping) -> Dict[str, Dict[str, List[str]]]:
    """sample token → {class a distractor there looks like: sorted kinds of distractor}.

    Args:
        data_root (str): the toy world (holds ``toy_world.json`` and the ``v1.0-*`` tables).
        infos (dict): a v2 info pickle of that world.

    Returns:
        dict: empty when ``data_root`` is not a toy world or its world has no distractors.
    """
    path = os.path.join(data_root, 'toy_world.json')
    if not os.path.isfile(path):
        return {}
    with open(path) as f:
        world = json.load(f)
    by_scene = world.get('distractors') or {}
    if not by_scene:
        return {}
    config = world['config']
    tables = os.path.join(data_root, config['version'])
    with open(os.path.join(tables, 'scene.json')) as f:
        scene_name = {s['token']: s['name'] for s in json.load(f)}
    with open(os.path.join(tables, 'sample.json')) as f:
        scene_of = {s['token']: scene_name[s['scene_token']] for s in json.load(f)}
    lookalike_look = {
        d['instance_token']: d['look'] for records in by_scene.values() for d in records if d['kind'] == 'lookalike'
    }
    out: Dict[str, Dict[str, set]] = defaultdict(lambda: defaultdict(set))
    with open(os.path.join(tables, 'sample_annotation.json')) as f:
        for annotation in json.load(f):
            look = lookalike_look.get(annotation['instance_token'])
            if look:
                out[annotation['sample_token']][look].add('lookalike')
    for info in infos['data_list']:
        posters = [d for d in by_scene.get(scene_of.get(info['token']), []) if d['kind'] == 'poster']
        if posters:
            for look in _posters_in_view(info, posters, config['image_width'], config['image_height']):
                out[info['token']][look].add('poster')
    return {token: {look: sorted(kinds) for look, kinds in looks.items()} for token, looks in out.items()}
