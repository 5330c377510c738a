import hashlib
import json
import os
from collections import Counter

import numpy as np
import pytest
from nuscenes.utils import splits
from nuscenes.utils.data_classes import LidarPointCloud
from nuscenes.utils.geometry_utils import BoxVisibility, points_in_box

from conceptminer3d.mining.stages.concepts import NUSCENES_CLASSES
from conceptminer3d_toy.world import ToyWorldConfig, generate_toy_world
from conceptminer3d_toy.world.catalog import CAMERA_CHANNELS, CLASS_BY_NAME

RARE = ('bicycle', 'motorcycle', 'construction_vehicle', 'trailer', 'bus')
TINY = dict(train_scenes=2, val_scenes=1, samples_per_scene=3, image_width=160, image_height=90, points_per_frame=2000)


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
            patch = image[int(v) - 1 : int(v) + 2, int(u) - 1 : int(u) + 2].reshape(-1, 3).mean(0)
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
    assert set(CLASS_BY_NAME) == set(counts) == set(NUSCENES_CLASSES), 'all 10 detection classes appear'
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


# --- The benchmark preset (tools/make_toy_nuscenes.py --preset benchmark), scaled down ---


def _load_tool():
    import importlib.util

    path = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), 'tools', 'make_toy_nuscenes.py')
    spec = importlib.util.spec_from_file_location('make_toy_nuscenes', path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_tool_takes_its_defaults_from_the_preset_and_flags_override_it():
    from conceptminer3d_toy.world import PRESETS

    tool = _load_tool()
    assert tool.parse_args(['--out', 'x']).config == ToyWorldConfig()
    assert tool.parse_args(['--out', 'x', '--preset', 'benchmark']).config == PRESETS['benchmark']
    config = tool.parse_args(
        ['--preset', 'benchmark', '--out', 'x', '--train-scenes', '3', '--image-size', '200', '113']
    ).config
    assert (config.train_scenes, config.image_width, config.image_height) == (3, 200, 113)
    assert config.posters_per_scene == PRESETS['benchmark'].posters_per_scene > 0  # knobs kept
    with pytest.raises(SystemExit):
        tool.parse_args(['--out', 'x', '--preset', 'no-such-preset'])


def test_realism_knobs_are_validated_and_off_by_default(toy_world):
    with pytest.raises(ValueError, match='class_mix'):
        ToyWorldConfig(class_mix='zipf').validate()
    with pytest.raises(ValueError, match='objects_per_scene'):
        ToyWorldConfig(objects_per_scene=(5, 5)).validate()
    with pytest.raises(ValueError, match='posters_per_scene'):
        ToyWorldConfig(posters_per_scene=-1.0).validate()
    root, config = toy_world
    with open(os.path.join(root, 'toy_world.json')) as f:
        record = json.load(f)
    assert 'distractors' not in record
    assert not {'class_mix', 'occlusion', 'posters_per_scene', 'lookalike_rate'} & set(record['config'])


@pytest.fixture(scope='module')
def benchmark_world(tmp_path_factory):
    """The benchmark preset with fewer, shorter scenes and smaller images: (root, config, nusc)."""
    from dataclasses import replace

    from nuscenes.nuscenes import NuScenes

    from conceptminer3d_toy.world import PRESETS

    config = replace(
        PRESETS['benchmark'], train_scenes=24, val_scenes=6, samples_per_scene=2, image_width=240, image_height=135
    )
    root = str(tmp_path_factory.mktemp('benchmark') / 'nuscenes')
    generate_toy_world(root, config, progress=False)
    return root, config, NuScenes(version=config.version, dataroot=root, verbose=False)


def _detection_names(nusc):
    category = {c['token']: c['name'] for c in nusc.category}
    detection = {c.category: c.detection_name for c in CLASS_BY_NAME.values()}
    return {i['token']: detection[category[i['category_token']]] for i in nusc.instance}


def test_benchmark_class_frequencies_are_nuscenes_like(benchmark_world):
    """Among the boxes a lidar detector trains on (lidar points > 0): cars and pedestrians
    dominate, the five rare classes are all there at a few percent at most, and barriers,
    cones and trucks sit in between."""
    _, _, nusc = benchmark_world
    name_of = _detection_names(nusc)
    counts = Counter(name_of[a['instance_token']] for a in nusc.sample_annotation if a['num_lidar_pts'] > 0)
    share = {name: counts[name] / sum(counts.values()) for name in CLASS_BY_NAME}
    assert [n for n, _ in counts.most_common(2)] == ['car', 'pedestrian']
    assert share['car'] + share['pedestrian'] > 0.5
    for name in RARE:
        assert 0.002 < share[name] < 0.04, (name, share)
    for name in ('barrier', 'traffic_cone', 'truck'):
        assert max(share[r] for r in RARE) < share[name] < share['pedestrian'], (name, share)


def test_benchmark_rare_objects_spread_over_scenes(benchmark_world):
    """No handful of themed scenes holds the rare classes: most scenes have a rare object,
    and the fifth of the scenes with the most rare boxes holds well under all of them."""
    _, _, nusc = benchmark_world
    name_of = _detection_names(nusc)
    scene_of = {s['token']: s['scene_token'] for s in nusc.sample}
    rare_boxes = Counter(
        scene_of[a['sample_token']] for a in nusc.sample_annotation if name_of[a['instance_token']] in RARE
    )
    per_scene = sorted((rare_boxes[s['token']] for s in nusc.scene), reverse=True)
    assert sum(n > 0 for n in per_scene) / len(per_scene) > 0.6, per_scene
    top_fifth = per_scene[: len(per_scene) // 5]
    assert sum(top_fifth) / sum(per_scene) < 0.6, per_scene
    # train and val both get rare objects
    val_names = set(splits.val)
    assert any(rare_boxes[s['token']] for s in nusc.scene if s['name'] in val_names)
    assert any(rare_boxes[s['token']] for s in nusc.scene if s['name'] not in val_names)


def _global_to_camera(nusc, sd_token, points):
    from pyquaternion import Quaternion

    sd = nusc.get('sample_data', sd_token)
    pose = nusc.get('ego_pose', sd['ego_pose_token'])
    calib = nusc.get('calibrated_sensor', sd['calibrated_sensor_token'])
    ego = Quaternion(pose['rotation']).inverse.rotation_matrix @ (points - np.array(pose['translation'])).T
    cam = Quaternion(calib['rotation']).inverse.rotation_matrix @ (ego.T - np.array(calib['translation'])).T
    return cam.T, np.array(calib['camera_intrinsic']), sd


def _covers(box, intrinsic, u, v, margin=3):
    """Whether a box (camera frame) projects over pixel (u, v), by its corners' bounding box."""
    corners = box.corners()
    if (corners[2] < 0.1).any():
        return (corners[2] > 0.1).any()
    uv = (intrinsic @ corners)[:2] / corners[2]
    return uv[0].min() - margin <= u <= uv[0].max() + margin and uv[1].min() - margin <= v <= uv[1].max() + margin


def _unoccluded_centre_colours(nusc, scene_token, center):
    """(3×3-pixel mean colour, pixels per metre) at the projection of a global point, in every
    keyframe camera where it lies 3-30 m in front and no annotated box nearer projects over it."""
    from PIL import Image

    colours = []
    for sample in nusc.sample:
        if sample['scene_token'] != scene_token:
            continue
        for channel in CAMERA_CHANNELS:
            cam, intrinsic, sd = _global_to_camera(nusc, sample['data'][channel], np.array([center]))
            depth = cam[0, 2]
            if not 3 < depth < 30:
                continue
            u, v = (intrinsic @ cam[0])[:2] / depth
            if not (2 <= u < sd['width'] - 2 and 2 <= v < sd['height'] - 2):
                continue
            _, boxes, _ = nusc.get_sample_data(sample['data'][channel], box_vis_level=BoxVisibility.ANY)
            if any(_covers(b, intrinsic, u, v) for b in boxes if b.center[2] < depth):
                continue
            image = np.asarray(Image.open(nusc.get_sample_data_path(sample['data'][channel])), float)
            colours.append(
                (
                    image[int(v) - 1 : int(v) + 2, int(u) - 1 : int(u) + 2].reshape(-1, 3).mean(0),
                    intrinsic[0, 0] / depth,
                )
            )
    return colours


def _nearest_class_colour(rgb):
    """The class whose body colour, at the renderer's shading factors, is nearest."""

    def distance(colour):
        return min(np.linalg.norm(rgb - np.minimum(255, np.array(colour) * f)) for f in (0.8, 0.85, 0.92, 1.0, 1.1))

    return min(CLASS_BY_NAME.values(), key=lambda c: distance(c.colour)).detection_name


def test_benchmark_distractors_show_in_images_but_not_in_labels(benchmark_world):
    """Cut-outs of rare classes are drawn in that class's colour where they stand, yet no 3D
    box is there; look-alikes are labelled with their own (common) class but drawn in a rare
    class's colour."""
    root, _, nusc = benchmark_world
    with open(os.path.join(root, 'toy_world.json')) as f:
        distractors = json.load(f)['distractors']
    scene_token = {s['name']: s['token'] for s in nusc.scene}
    sample_scene = {s['token']: s['scene_token'] for s in nusc.sample}
    name_of = _detection_names(nusc)
    posters = [(name, d) for name, ds in distractors.items() for d in ds if d['kind'] == 'poster']
    lookalikes = [(name, d) for name, ds in distractors.items() for d in ds if d['kind'] == 'lookalike']
    assert len(posters) >= 10 and len(lookalikes) >= 10
    assert {d['look'] for _, d in posters} == set(RARE)

    shown = checked = 0
    for scene, poster in posters:
        centre = np.array(poster['translation'])
        body = centre - [0, 0, 0.1 * poster['size'][2]]  # 40% up: below windows and riders
        nearest_box = min(
            np.hypot(*(np.array(a['translation'][:2]) - centre[:2]))
            for a in nusc.sample_annotation
            if sample_scene[a['sample_token']] == scene_token[scene]
        )
        assert nearest_box > 1.0, 'no 3D label at a cut-out'
        for rgb, px_per_m in _unoccluded_centre_colours(nusc, scene_token[scene], body):
            if px_per_m * poster['size'][2] < 20:
                continue  # too small for a 3×3 patch to stay inside a cycle's frame
            checked += 1
            shown += _nearest_class_colour(rgb) == poster['look']
    assert checked >= 5 and shown / checked > 0.7, (shown, checked)

    instance_by_token = {i['token']: i for i in nusc.instance}
    shown = checked = 0
    for scene, lookalike in lookalikes:
        assert lookalike['look'] in RARE and lookalike['detection_name'] not in RARE
        assert name_of[lookalike['instance_token']] == lookalike['detection_name']
        if lookalike['detection_name'] != 'car':
            continue  # a pedestrian's shirt and a truck's cab are small targets at the box centre
        ann = nusc.get('sample_annotation', instance_by_token[lookalike['instance_token']]['first_annotation_token'])
        centre = np.array(ann['translation']) - [0, 0, 0.25 * ann['size'][2]]  # body, below the windows
        for rgb, _ in _unoccluded_centre_colours(nusc, scene_token[scene], centre)[:1]:
            checked += 1
            shown += _nearest_class_colour(rgb) == lookalike['look']
    assert checked >= 2 and shown / checked > 0.6, (shown, checked)


def _range_and_points(nusc, name_of, classes):
    """(distance from the lidar, points inside the box counted in the point cloud) per box."""
    out = []
    for sample in nusc.sample:
        path, boxes, _ = nusc.get_sample_data(sample['data']['LIDAR_TOP'])
        cloud = LidarPointCloud.from_file(path)
        for box in boxes:
            ann = nusc.get('sample_annotation', box.token)
            if name_of[ann['instance_token']] in classes:
                out.append(
                    (
                        float(np.hypot(*box.center[:2])),
                        int(points_in_box(box, cloud.points[:3]).sum()),
                        ann['visibility_token'],
                    )
                )
    return out


def test_benchmark_lidar_points_fall_with_range_and_behind_nearer_objects(benchmark_world):
    _, _, nusc = benchmark_world
    name_of = _detection_names(nusc)
    boxes = _range_and_points(nusc, name_of, {'car'})
    medians = [np.median([n for d, n, _ in boxes if lo <= d < lo + 10]) for lo in (0, 10, 20, 30)]
    assert all(a > b for a, b in zip(medians, medians[1:])), medians
    assert medians[0] > 4 * medians[2], medians
    # Lidar shadows: at the same range, mostly hidden cars get far fewer points than fully
    # visible ones, and some boxes are hidden entirely.
    mid = [(n, vis) for d, n, vis in boxes if 8 <= d < 25]
    hidden = [n for n, vis in mid if vis == '1']
    seen = [n for n, vis in mid if vis == '4']
    assert len(hidden) >= 5 and len(seen) >= 5
    assert np.median(hidden) < 0.5 * np.median(seen), (np.median(hidden), np.median(seen))
    assert any(a['num_lidar_pts'] == 0 for a in nusc.sample_annotation)
