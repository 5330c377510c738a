"""Writes a toy world in the nuScenes on-disk format (JSON tables, samples/, sweeps/)."""

from __future__ import annotations

import hashlib
import json
import os
from typing import Dict, List, Optional

import numpy as np
from PIL import Image
from tqdm import tqdm

from .catalog import (
    ATTRIBUTES,
    CAMERAS,
    LIDAR_CHANNEL,
    LIDAR_TRANSLATION,
    LIDAR_YAW_DEG,
    OBJECT_CLASSES,
    VISIBILITY_LEVELS,
    assign_themes,
    camera_intrinsic,
    nuscenes_mix_theme,
)
from .config import ToyWorldConfig
from .geometry import camera_rotation, transform, yaw_quaternion
from .lidar import synthesize_sweep
from .render import CameraView, render_camera
from .simulate import SceneSimulation, simulate_scene

SAMPLE_PERIOD_US = 500_000  # keyframes at 2 Hz, as in nuScenes


class _Tokens:
    """Deterministic 32-hex-digit tokens, like nuScenes'."""

    def __init__(self, seed: int):
        self.seed = seed

    def __call__(self, *key) -> str:
        return hashlib.md5(('/'.join(map(str, (self.seed, *key)))).encode()).hexdigest()


def _link(records: List[dict]) -> None:
    for prev, nxt in zip(records, records[1:]):
        prev['next'], nxt['prev'] = nxt['token'], prev['token']


def _visibility(distance: float) -> str:
    return '4' if distance < 20 else '3' if distance < 30 else '2'


def _visibility_of_share(share: float) -> str:
    """nuScenes' levels: v0-40, v40-60, v60-80, v80-100 percent visible."""
    return '1' if share < 0.4 else '2' if share < 0.6 else '3' if share < 0.8 else '4'


def generate_toy_world(out_dir: str, config: Optional[ToyWorldConfig] = None, progress: bool = True) -> Dict[str, int]:
    """Generate the world under ``out_dir``; returns counts of what was written."""
    config = config or ToyWorldConfig()
    config.validate()
    tok = _Tokens(config.seed)
    rng = np.random.default_rng(config.seed)
    names = config.scene_names()
    if config.class_mix == 'nuscenes':
        themes = tuple(nuscenes_mix_theme(rng, config.class_clustering) for _ in names)
    else:
        themes = assign_themes(config.train_scenes, rng) + assign_themes(config.val_scenes, rng)
    tables: Dict[str, List[dict]] = {
        k: []
        for k in (
            'category',
            'attribute',
            'visibility',
            'instance',
            'sensor',
            'calibrated_sensor',
            'ego_pose',
            'log',
            'scene',
            'sample',
            'sample_data',
            'sample_annotation',
            'map',
        )
    }

    for i, cls in enumerate(OBJECT_CLASSES):
        tables['category'].append(
            dict(
                token=tok('category', cls.category), name=cls.category, description=f'toy {cls.detection_name}', index=i
            )
        )
    for name in ATTRIBUTES:
        tables['attribute'].append(dict(token=tok('attribute', name), name=name, description=name))
    for token, level in VISIBILITY_LEVELS:
        tables['visibility'].append(dict(token=token, level=level, description=f'visibility {level}'))
    sensors = {cam.channel: 'camera' for cam in CAMERAS}
    sensors[LIDAR_CHANNEL] = 'lidar'
    for channel, modality in sensors.items():
        tables['sensor'].append(dict(token=tok('sensor', channel), channel=channel, modality=modality))

    os.makedirs(os.path.join(out_dir, config.version), exist_ok=True)
    for sub in [f'samples/{c}' for c in sensors] + [f'sweeps/{LIDAR_CHANNEL}', 'maps']:
        os.makedirs(os.path.join(out_dir, sub), exist_ok=True)

    width, height = config.image_width, config.image_height
    lidar_rotation = yaw_quaternion(np.deg2rad(LIDAR_YAW_DEG))
    lidar2ego = transform(lidar_rotation, LIDAR_TRANSLATION)
    cam_calib = {}
    for cam in CAMERAS:
        rot = camera_rotation(np.deg2rad(cam.yaw_deg))
        cam_calib[cam.channel] = (transform(rot, cam.translation), rot, camera_intrinsic(cam, width, height))

    distractors: Dict[str, List[dict]] = {}
    for scene_index, (scene_name, theme) in enumerate(
        tqdm(list(zip(names, themes)), desc='toy world scenes', disable=not progress)
    ):
        scene_rng = np.random.default_rng([config.seed, scene_index])
        duration = (config.samples_per_scene - 1) * SAMPLE_PERIOD_US / 1e6
        sim = simulate_scene(
            theme,
            scene_index,
            duration,
            scene_rng,
            objects=config.objects_per_scene,
            separate_objects=config.separate_objects,
            lookalike_rate=config.lookalike_rate,
            posters_per_scene=config.posters_per_scene,
            extra_rng=np.random.default_rng([config.seed, scene_index, 1]),
        )
        if sim.distractors or any(tr.colour for tr in sim.tracks):
            distractors[scene_name] = _distractor_record(sim, tok, scene_index)
        _write_scene(
            out_dir, config, tok, tables, scene_index, scene_name, sim, scene_rng, lidar2ego, lidar_rotation, cam_calib
        )

    log_tokens = [log['token'] for log in tables['log']]
    map_file = f'maps/{tok("map")}.png'
    Image.new('L', (64, 64), 255).save(os.path.join(out_dir, map_file))
    tables['map'].append(dict(token=tok('map'), log_tokens=log_tokens, category='semantic_prior', filename=map_file))
    for name, records in tables.items():
        path = os.path.join(out_dir, config.version, f'{name}.json')
        with open(path + '.tmp', 'w') as f:
            json.dump(records, f, indent=0)
        os.replace(path + '.tmp', path)
    with open(os.path.join(out_dir, 'toy_world.json'), 'w') as f:
        record = dict(config=config.record(), themes={n: t.name for n, t in zip(names, themes)})
        if distractors:
            record['distractors'] = distractors
        json.dump(record, f, indent=1)
    return {name: len(records) for name, records in tables.items()}


def _distractor_record(sim: SceneSimulation, tok: _Tokens, scene_index: int) -> List[dict]:
    """Where the camera distractors are, for analyses of what mining picked: the cut-outs
    (never annotated) and the annotated objects painted in another class's colour."""
    colour_to_class = {c.colour: c.detection_name for c in OBJECT_CLASSES}
    out = [
        dict(
            kind='poster',
            look=d.object_class.detection_name,
            translation=[float(x) for x in d.start],
            size=list(d.size_wlh),
            yaw=d.yaw,
        )
        for d in sim.distractors
    ]
    out += [
        dict(
            kind='lookalike',
            look=colour_to_class[tr.colour],
            detection_name=tr.object_class.detection_name,
            instance_token=tok('instance', scene_index, tr.instance_index),
        )
        for tr in sim.tracks
        if tr.colour
    ]
    return out


def _write_scene(
    out_dir: str,
    config: ToyWorldConfig,
    tok: _Tokens,
    tables: Dict[str, List[dict]],
    scene_index: int,
    scene_name: str,
    sim: SceneSimulation,
    rng: np.random.Generator,
    lidar2ego: np.ndarray,
    lidar_rotation,
    cam_calib,
) -> None:
    log_token = tok('log', scene_index)
    logfile = f'n{8 + scene_index % 2:03d}-2018-08-{1 + scene_index % 28:02d}-12-00-00-0400'
    tables['log'].append(
        dict(
            token=log_token,
            logfile=logfile,
            vehicle=logfile[:4],
            date_captured=logfile[5:15],
            location='singapore-onenorth' if scene_index % 2 else 'boston-seaport',
        )
    )
    calib_tokens = {}
    for channel, (cam2ego, rot, intrinsic) in cam_calib.items():
        calib_tokens[channel] = tok('calib', scene_index, channel)
        tables['calibrated_sensor'].append(
            dict(
                token=calib_tokens[channel],
                sensor_token=tok('sensor', channel),
                translation=[float(x) for x in cam2ego[:3, 3]],
                rotation=[float(x) for x in rot.elements],
                camera_intrinsic=intrinsic.tolist(),
            )
        )
    calib_tokens[LIDAR_CHANNEL] = tok('calib', scene_index, LIDAR_CHANNEL)
    tables['calibrated_sensor'].append(
        dict(
            token=calib_tokens[LIDAR_CHANNEL],
            sensor_token=tok('sensor', LIDAR_CHANNEL),
            translation=[float(x) for x in lidar2ego[:3, 3]],
            rotation=[float(x) for x in lidar_rotation.elements],
            camera_intrinsic=[],
        )
    )

    t0_us = 1_533_000_000_000_000 + scene_index * 3_600_000_000
    scene_token = tok('scene', scene_index)
    samples, lidar_records = [], []
    cam_records: Dict[str, List[dict]] = {c: [] for c in cam_calib}
    annotations_by_instance: Dict[int, List[dict]] = {}

    def ego_pose_record(key, t_us):
        translation, yaw = sim.ego_pose((t_us - t0_us) / 1e6)
        token = tok('ego_pose', scene_index, key, t_us)
        tables['ego_pose'].append(
            dict(
                token=token,
                timestamp=t_us,
                translation=[float(x) for x in translation],
                rotation=[float(x) for x in yaw_quaternion(yaw).elements],
            )
        )
        return token, transform(yaw_quaternion(yaw), translation)

    def sample_data(key, channel, t_us, filename, sample_token, is_key, h=0, w=0):
        ego_token, ego2global = ego_pose_record(key, t_us)
        record = dict(
            token=tok('sample_data', scene_index, key),
            sample_token=sample_token,
            ego_pose_token=ego_token,
            calibrated_sensor_token=calib_tokens[channel],
            timestamp=t_us,
            fileformat=filename.rsplit('.', 1)[-1] if channel != LIDAR_CHANNEL else 'pcd',
            is_key_frame=is_key,
            height=h,
            width=w,
            filename=filename,
            prev='',
            next='',
        )
        return record, ego2global

    for k in range(config.samples_per_scene):
        t_us = t0_us + k * SAMPLE_PERIOD_US
        t = (t_us - t0_us) / 1e6
        sample_token = tok('sample', scene_index, k)
        samples.append(dict(token=sample_token, timestamp=t_us, prev='', next='', scene_token=scene_token))
        sweep_times = (
            []
            if k == 0
            else [
                t_us - SAMPLE_PERIOD_US + (j + 1) * SAMPLE_PERIOD_US // (config.sweeps_per_sample + 1)
                for j in range(config.sweeps_per_sample)
            ]
        )
        for j, sweep_us in enumerate(sweep_times):
            name = f'sweeps/{LIDAR_CHANNEL}/{logfile}__{LIDAR_CHANNEL}__{sweep_us}.pcd.bin'
            record, ego2global = sample_data(
                f'lidar-{k}-{j}', LIDAR_CHANNEL, sweep_us, name, samples[-2]['token'], False
            )
            cloud = synthesize_sweep(
                sim,
                (sweep_us - t0_us) / 1e6,
                ego2global @ lidar2ego,
                config.points_per_frame // 2,
                rng,
                shadows=config.occlusion,
            ).cloud
            cloud.tofile(os.path.join(out_dir, name))
            lidar_records.append(record)
        name = f'samples/{LIDAR_CHANNEL}/{logfile}__{LIDAR_CHANNEL}__{t_us}.pcd.bin'
        record, ego2global = sample_data(f'lidar-{k}', LIDAR_CHANNEL, t_us, name, sample_token, True)
        cloud, point_counts, visible = synthesize_sweep(
            sim,
            t,
            ego2global @ lidar2ego,
            config.points_per_frame,
            rng,
            shadows=config.occlusion,
            visibility=config.occlusion,
        )
        cloud.tofile(os.path.join(out_dir, name))
        lidar_records.append(record)

        for cam in CAMERAS:
            cam_us = t_us + cam.time_offset_us
            name = f'samples/{cam.channel}/{logfile}__{cam.channel}__{cam_us}.jpg'
            record, ego2global = sample_data(
                f'{cam.channel}-{k}',
                cam.channel,
                cam_us,
                name,
                sample_token,
                True,
                config.image_height,
                config.image_width,
            )
            cam2ego, _, intrinsic = cam_calib[cam.channel]
            view = CameraView(np.linalg.inv(ego2global @ cam2ego), intrinsic, config.image_width, config.image_height)
            image = render_camera(sim, (cam_us - t0_us) / 1e6, view)
            image.save(os.path.join(out_dir, name), quality=config.jpeg_quality)
            cam_records[cam.channel].append(record)

        ego_xy = sim.ego_pose(t)[0][:2]
        for track in sim.annotated_tracks(t):
            center = track.center(t)
            distance = float(np.hypot(*(center[:2] - ego_xy)))
            visibility = (
                _visibility_of_share(visible[track.instance_index])
                if config.occlusion and track.instance_index in visible
                else _visibility(distance)
            )
            ann = dict(
                token=tok('ann', scene_index, track.instance_index, k),
                sample_token=sample_token,
                instance_token=tok('instance', scene_index, track.instance_index),
                visibility_token=visibility,
                attribute_tokens=[tok('attribute', track.attribute)] if track.attribute else [],
                translation=[float(x) for x in center],
                size=list(track.size_wlh),
                rotation=[float(x) for x in yaw_quaternion(track.yaw).elements],
                prev='',
                next='',
                num_lidar_pts=point_counts.get(track.instance_index, 0),
                num_radar_pts=0,
            )
            annotations_by_instance.setdefault(track.instance_index, []).append(ann)

    _link(samples)
    _link(lidar_records)
    for records in cam_records.values():
        _link(records)
    tables['sample'] += samples
    tables['sample_data'] += lidar_records + [r for recs in cam_records.values() for r in recs]
    for index, anns in sorted(annotations_by_instance.items()):
        _link(anns)
        tables['sample_annotation'] += anns
        track = sim.tracks[index]
        tables['instance'].append(
            dict(
                token=tok('instance', scene_index, index),
                category_token=tok('category', track.object_class.category),
                nbr_annotations=len(anns),
                first_annotation_token=anns[0]['token'],
                last_annotation_token=anns[-1]['token'],
            )
        )
    tables['scene'].append(
        dict(
            token=scene_token,
            log_token=log_token,
            nbr_samples=len(samples),
            first_sample_token=samples[0]['token'],
            last_sample_token=samples[-1]['token'],
            name=scene_name,
            description=sim.theme.description,
        )
    )
