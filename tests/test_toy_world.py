import hashlib
import json
import os
from collections import Counter

import numpy as np
import pytest
from nuscenes.utils import splits
from nuscenes.utils.data_classes import LidarPointCloud
from nuscenes.utils.geometry_utils import BoxVisibility, points_in_box

from conceptminer3d.toy_world import ToyWorldConfig, generate_toy_world
from conceptminer3d.toy_world.catalog import CAMERA_CHANNELS, CLASS_BY_NAME

RARE = ('bicycle', 'motorcycle', 'construction_vehicle', 'trailer', 'bus')
TINY = dict(train_scenes=2, val_scenes=1, samples_per_scene=3, image_width=160, image_height=90,
            points_per_frame=2000)


def _tree_digest(root):
    digest = hashlib.sha256()
    for dirpath, _, files in sorted(os.walk(root)):
        for name in sorted(files):
            path = os.path.join(dirpath, name)
            digest.update(os.path.relpath(path, root).encode())
            with open(path, 'rb') as f:
                digest.update(f.read())
    return digest.hexdigest()


def test_generator_is_deterministic_for_a_seed(tmp_path):
    for name, seed in (('a', 0), ('b', 0), ('c', 1)):
        generate_toy_world(str(tmp_path / name), ToyWorldConfig(seed=seed, **TINY), progress=False)
    assert _tree_digest(tmp_path / 'a') == _tree_digest(tmp_path / 'b')
    assert _tree_digest(tmp_path / 'a') != _tree_digest(tmp_path / 'c')


def test_invalid_sizes_are_refused():
    with pytest.raises(ValueError, match='v1.0-trainval'):
        ToyWorldConfig(train_scenes=9).validate()
    ToyWorldConfig(version='v1.0-trainval', train_scenes=20, val_scenes=5).validate()


def test_devkit_loads_world_with_official_split_names(nusc, toy_world):
    _, config = toy_world
    names = {s['name'] for s in nusc.scene}
    assert names == set(splits.mini_train) | set(splits.mini_val)
    assert len(nusc.sample) == 10 * config.samples_per_scene
    sample = nusc.sample[0]
    assert set(sample['data']) == set(CAMERA_CHANNELS) | {'LIDAR_TOP'}
    for channel, token in sample['data'].items():
        path = nusc.get_sample_data_path(token)
        assert os.path.getsize(path) > 0, channel
    # lidar sweeps chain back through non-keyframes
    sd = nusc.get('sample_data', nusc.sample[1]['data']['LIDAR_TOP'])
    prev = nusc.get('sample_data', sd['prev'])
    assert not prev['is_key_frame'] and prev['filename'].startswith('sweeps/LIDAR_TOP/')


def test_every_annotation_projects_into_a_camera_that_shows_it(nusc):
    """The devkit's own projection (BoxVisibility.ANY: a corner inside the image, in front
    of the camera) finds every box in some camera; nearly all box centres land inside one."""
    shown_by = {ann['token']: set() for ann in nusc.sample_annotation}
    centre_inside = set()
    for sample in nusc.sample:
        for channel in CAMERA_CHANNELS:
            sd_token = sample['data'][channel]
            sd = nusc.get('sample_data', sd_token)
            _, boxes, intrinsic = nusc.get_sample_data(sd_token, box_vis_level=BoxVisibility.ANY)
            for box in boxes:
                shown_by[box.token].add(channel)
                centre = intrinsic @ box.center
                u, v = centre[:2] / centre[2]
                if centre[2] > 0 and 0 <= u < sd['width'] and 0 <= v < sd['height']:
                    centre_inside.add(box.token)
    unseen = [t for t, cams in shown_by.items() if not cams]
    assert not unseen, f'{len(unseen)} of {len(shown_by)} annotations project into no camera'
    assert len(centre_inside) / len(shown_by) > 0.98
    # the six cameras share the work: each one sees some objects
    assert set().union(*shown_by.values()) == set(CAMERA_CHANNELS)


def test_image_shows_object_colour_where_its_box_projects(nusc):
    """The renderer and the calibration agree: the pixel at a close, unoccluded car's
    projected centre (mid-height: below the windows) has the car's blue body colour."""
    from PIL import Image
    assert CLASS_BY_NAME['car'].colour == (40, 90, 200)
    hits = checked = 0
    for sample in nusc.sample[::3]:
        sd_token = sample['data']['CAM_FRONT']
        path, boxes, intrinsic = nusc.get_sample_data(sd_token, box_vis_level=BoxVisibility.ALL)
        _, all_boxes, _ = nusc.get_sample_data(sd_token, box_vis_level=BoxVisibility.ANY)
        image = np.asarray(Image.open(path), float)
        for box in boxes:
            if box.name != 'vehicle.car' or not 4 < box.center[2] < 20:
                continue
            nearer = [b for b in all_boxes if b.center[2] < box.center[2] and b.token != box.token]
            u, v = (intrinsic @ box.center)[:2] / box.center[2]
            if any(np.hypot(*((intrinsic @ b.center)[:2] / b.center[2] - (u, v))) < 80 for b in nearer):
                continue
            checked += 1
            patch = image[int(v) - 1:int(v) + 2, int(u) - 1:int(u) + 2].reshape(-1, 3).mean(0)
            r, g, b = patch
            hits += b > r + 50 and b > g + 30  # the car's blue body (shaded, JPEG-compressed)
    assert checked >= 3
    assert hits / checked >= 0.8


def test_lidar_point_counts_match_points_in_boxes(nusc):
    sample = nusc.sample[len(nusc.sample) // 2]
    path, boxes, _ = nusc.get_sample_data(sample['data']['LIDAR_TOP'])
    cloud = LidarPointCloud.from_file(path)
    assert cloud.points.shape[0] == 4 and cloud.points.shape[1] > 1000
    ground = np.abs(cloud.points[2] + 1.84) < 0.15
    assert 0.3 < ground.mean() < 0.9, 'a ground plane 1.84 m under the sensor'
    for box in boxes:
        ann = nusc.get('sample_annotation', box.token)
        box.wlh = box.wlh + 0.1  # the generator counts with the same 5 cm margin
        inside = int(points_in_box(box, cloud.points[:3]).sum())
        assert abs(inside - ann['num_lidar_pts']) <= max(3, 0.1 * inside), ann['token']


def test_class_frequencies_are_long_tailed_and_rare_classes_cluster(nusc, toy_world):
    root, _ = toy_world
    name_of = {c['token']: c['name'] for c in nusc.category}
    instance_class = {i['token']: name_of[i['category_token']] for i in nusc.instance}
    detection = {c.category: c.detection_name for c in CLASS_BY_NAME.values()}
    counts = Counter(detection[instance_class[a['instance_token']]] for a in nusc.sample_annotation)
    total = sum(counts.values())
    assert set(counts) == set(CLASS_BY_NAME), 'all 10 detection classes appear'
    assert counts.most_common(1)[0][0] == 'car'
    assert (counts['car'] + counts['pedestrian']) / total > 0.5
    for name in RARE:
        assert counts[name] / total < 0.08, (name, counts[name] / total)
    # rare classes concentrate in the themed scenes (road works, cyclists)
    with open(os.path.join(root, 'toy_world.json')) as f:
        theme_of_name = json.load(f)['themes']
    theme_of_sample = {s['token']: theme_of_name[nusc.get('scene', s['scene_token'])['name']] for s in nusc.sample}
    share = {}
    for themed in (True, False):
        anns = [a for a in nusc.sample_annotation if (theme_of_sample[a['sample_token']] != 'city') == themed]
        share[themed] = np.mean([detection[instance_class[a['instance_token']]] in RARE for a in anns])
    assert share[True] > 2.5 * share[False], share
