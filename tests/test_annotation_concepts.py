"""AnnotationConcepts: concepts from the 3D ground truth, projected into the cameras, with no model.

The reference is the converter's own 2D boxes (``cam_instances``, made by the nuScenes devkit's
projection from the devkit tables, not from the pickle's ``lidar2cam``), clipped to the image
as the source clips its boxes: an independent check of the projection, the class names and
the counts.
"""

import copy
import json
import os
import pickle
from collections import Counter

import numpy as np
import pyarrow.parquet as pq
import pytest
from mmengine.config import Config

import conceptminer3d.mining.pipeline as pipeline_module
from conceptminer3d.apis import run_mining
from conceptminer3d.mining.annotations import AnnotationConcepts, lidar_box_corners, project_boxes
from conceptminer3d.mining.contracts import MANIFEST_KEYS
from conceptminer3d.registry import CAPTIONERS, CONCEPT_SOURCES, DETECTORS_2D, EMBEDDERS, build_component
from conceptminer3d.samplers.rare_concept_sampler import DEFAULT_GROUP_WEIGHTS, RareConceptSampler
from conceptminer3d.subsets import SUBSET_DIR, SUBSET_MANIFEST, subset_paths

from helpers import REPO

CONFIG = os.path.join(REPO, 'configs', 'mining', 'annotations.py')
TRAIN = 'nuscenes_infos_train.pkl'


def _read(work_dir, name):
    return pq.read_table(os.path.join(work_dir, name)).to_pandas()


def _infos(root, name=TRAIN):
    with open(os.path.join(root, name), 'rb') as f:
        return pickle.load(f)


@pytest.fixture(scope='module')
def annotation_run(toy_world, tmp_path_factory):
    """The annotation config file itself (its base, default.py, names real models that are not
    on this machine) on the toy train pickle, with the subsets; every model registry refuses to
    build for the whole run."""
    work_dir = str(tmp_path_factory.mktemp('annotation_mining') / 'work')
    with pytest.MonkeyPatch.context() as patch:
        for registry in (DETECTORS_2D, EMBEDDERS, CAPTIONERS):
            patch.setattr(registry, 'build', lambda *a, **k: pytest.fail('a model was built'))
        patch.setattr(pipeline_module, 'check_available', lambda *a, **k: pytest.fail('a model was looked up'))
        manifest = run_mining(CONFIG, toy_world[0], TRAIN, work_dir, progress=False)
    return work_dir, manifest


def _reference(root, work_dir, min_size, valid_only):
    """(sample token, camera) → {instance index: (class, box, box exact)} from ``cam_instances``,
    matched to ``instances`` by the box centre in camera coordinates (only the instances with
    ``bbox_3d_isvalid`` when ``valid_only``); and the (sample token, camera, instance index) of
    the boxes that reach behind the camera, whose 2D box the converter gets from the corners in
    front only (or drops, when the centre is behind)."""
    from mmdet3d.structures import LiDARInstance3DBoxes

    infos = _infos(root)
    names = {label: name for name, label in infos['metainfo']['categories'].items()}
    frames = _read(work_dir, 'frames.parquet').set_index(['sample_token', 'camera'])
    expected, cut_by_camera = {}, set()
    for info in infos['data_list']:
        boxes_3d = LiDARInstance3DBoxes(
            np.array([inst['bbox_3d'] for inst in info['instances']]), origin=(0.5, 0.5, 0.5)
        )
        centres, corners = boxes_3d.gravity_center.numpy(), boxes_3d.corners.numpy()
        for camera, cam_instances in info['cam_instances'].items():
            lidar2cam = np.asarray(info['images'][camera]['lidar2cam'])
            in_cam = centres @ lidar2cam[:3, :3].T + lidar2cam[:3, 3]
            depth = (corners @ lidar2cam[:3, :3].T + lidar2cam[:3, 3])[..., 2]
            cut_by_camera |= {(info['token'], camera, i) for i in np.flatnonzero((depth <= 0).any(axis=1))}
            width, height = frames.loc[(info['token'], camera), ['width', 'height']]
            boxes = {}
            for ci in cam_instances:
                index = int(np.argmin(np.linalg.norm(in_cam - np.asarray(ci['bbox_3d'][:3]), axis=1)))
                assert np.allclose(in_cam[index], ci['bbox_3d'][:3], atol=1e-3), 'no 3D instance for a 2D box'
                if valid_only and not info['instances'][index]['bbox_3d_isvalid']:
                    continue
                raw = ci['bbox']
                x1, y1, x2, y2 = max(raw[0], 0), max(raw[1], 0), min(raw[2], width), min(raw[3], height)
                if x2 <= x1 or y2 <= y1:  # in the converter's 1600×900 canvas, not in this image
                    continue
                if min(np.ceil(x2) - np.floor(x1), np.ceil(y2) - np.floor(y1)) < min_size:
                    continue
                exact = (
                    raw[0] > 0
                    and raw[1] > 0
                    and raw[2] < width
                    and raw[3] < height
                    and (info['token'], camera, index) not in cut_by_camera
                )
                boxes[index] = (names[int(ci['bbox_label_3d'])], (x1, y1, x2, y2), exact)
            expected[(info['token'], camera)] = boxes
    return expected, cut_by_camera


def test_every_instance_in_view_gives_one_concept_named_by_its_class(annotation_run, toy_world):
    work_dir, manifest = annotation_run
    cfg = Config.fromfile(CONFIG)
    crops, concepts = _read(work_dir, 'crops.parquet'), _read(work_dir, 'concepts.parquet')
    expected, cut_by_camera = _reference(toy_world[0], work_dir, cfg.crops.min_size, cfg.concept_source.valid_only)
    assert sum(map(len, expected.values())) > 100, 'the toy world should put plenty of boxes in view'
    assert list(crops.crop_id) == list(concepts.crop_id) and crops.crop_id.is_unique
    got = {key: group.set_index('crop_index') for key, group in crops.groupby(['sample_token', 'camera'])}
    for key, boxes in expected.items():
        ours = got.get(key, crops.iloc[:0].set_index('crop_index'))
        extra = set(ours.index) - set(boxes)
        assert all((*key, i) in cut_by_camera for i in extra), f'{key}: crops {extra} not in view'
        assert set(boxes) <= set(ours.index), f'{key}: instances {set(boxes) - set(ours.index)} missed'
        for index, (name, box, exact) in boxes.items():
            row = ours.loc[index]
            assert row.yolo_class == name
            ours_box = np.array([row.x1, row.y1, row.x2, row.y2])
            if exact:
                np.testing.assert_allclose(ours_box, box, atol=1e-3, err_msg=f'{key} {index}')
            elif (*key, index) in cut_by_camera:  # the converter's box lacks the part nearest the camera
                assert (ours_box[:2] < np.array(box[2:])).all() and (np.array(box[:2]) < ours_box[2:]).all()
            else:  # the converter cut the hull with a 1600×900 canvas, not this image: looser
                assert (ours_box[:2] >= np.array(box[:2]) - 1e-3).all(), (key, index)
                assert (ours_box[2:] <= np.array(box[2:]) + 1e-3).all(), (key, index)
    for row in concepts.itertuples():
        assert row.top_concept == crops.yolo_class[row.Index] and list(row.top_concepts) == [row.top_concept]
        assert list(row.top_scores) == [1.0] and row.top_score == 1.0
        assert row.group == (
            'Target'
            if row.top_concept in cfg.concepts.vocabulary.target
            else 'Common'
            if row.top_concept in cfg.concepts.vocabulary.common
            else 'Rare'
        )


def test_counts_per_class_match_the_instances_in_view(annotation_run, toy_world):
    work_dir, manifest = annotation_run
    concepts = _read(work_dir, 'concepts.parquet')
    cfg = Config.fromfile(CONFIG)
    expected, cut_by_camera = _reference(toy_world[0], work_dir, cfg.crops.min_size, cfg.concept_source.valid_only)
    per_class = Counter(name for boxes in expected.values() for name, _, _ in boxes.values())
    # Boxes reaching behind a camera that the converter dropped (the test above checks them).
    in_reference = {(*key, index) for key, boxes in expected.items() for index in boxes}
    keys = list(zip(concepts.sample_token, concepts.camera, concepts.crop_index))
    per_class.update(concepts.top_concept[[key in cut_by_camera and key not in in_reference for key in keys]])
    assert Counter(concepts.top_concept) == per_class
    assert manifest['counts']['concepts_per_class'] == dict(sorted(per_class.items()))
    infos = _infos(toy_world[0])
    names = {label: name for name, label in infos['metainfo']['categories'].items()}
    in_pickle = Counter(
        names[int(i['bbox_label_3d'])]
        for info in infos['data_list']
        for i in info['instances']
        if i['bbox_3d_isvalid'] or not cfg.concept_source.valid_only
    )
    assert manifest['counts']['instances_per_class'] == dict(sorted(in_pickle.items()))
    frames = _read(work_dir, 'frames.parquet')
    assert manifest['counts']['crops'] == len(concepts) == frames.num_crops.sum()
    assert manifest['skips']['crops_too_small'] == frames.num_too_small.sum()
    assert (frames.num_detections == frames.num_crops + frames.num_too_small + frames.num_filtered).all()


def test_tables_keep_the_contract_without_a_model(annotation_run, toy_world):
    work_dir, manifest = annotation_run
    frames, crops = _read(work_dir, 'frames.parquet'), _read(work_dir, 'crops.parquet')
    samples = _infos(toy_world[0])['data_list']
    assert len(frames) == 6 * len(samples) and (frames.status == 'ok').all() and (frames.scene_token != '').all()
    assert (frames.width == toy_world[1].image_width).all() and (frames.height == toy_world[1].image_height).all()
    assert np.load(os.path.join(work_dir, 'embeddings.npy')).shape == (len(crops), 0)
    assert manifest['counts']['embedding_dim'] == 0 and len(_read(work_dir, 'captions.parquet')) == 0
    assert manifest['concept_source'] == 'AnnotationConcepts'
    assert list(manifest)[: len(MANIFEST_KEYS)] == list(MANIFEST_KEYS)  # one schema for both sources
    assert manifest['torch_threads'] is None and manifest['cache'] == {}
    assert manifest['config']['detector'] is None and 'detect' not in manifest['stages']
    width = frames.width.iloc[0]
    assert (crops.crop_x1 >= 0).all() and (crops.crop_x2 <= width).all() and (crops.crop_x2 > crops.crop_x1).all()


def test_box_corners_follow_mmdet3d(toy_world):
    from mmdet3d.structures import LiDARInstance3DBoxes

    boxes = np.array([inst['bbox_3d'] for info in _infos(toy_world[0])['data_list'][:5] for inst in info['instances']])
    # NuScenesDataset reads the pickle's boxes with their centre at the gravity centre.
    stock = LiDARInstance3DBoxes(boxes, origin=(0.5, 0.5, 0.5)).corners.numpy()
    np.testing.assert_allclose(lidar_box_corners(boxes), stock, atol=1e-4)


def test_projection_cuts_boxes_at_the_near_plane_and_the_image():
    """A camera looking down +x of the lidar frame, 100 px focal length, 200×100 image."""
    lidar2cam = np.array([[0, -1, 0, 0], [0, 0, -1, 0], [1, 0, 0, 0], [0, 0, 0, 1]], float)
    cam2img = [[100, 0, 100], [0, 100, 50], [0, 0, 1]]
    boxes = np.array(
        [
            [10, 0, 0, 2, 2, 2, 0],  # ahead, wholly in the image: x 90..110, y 40..60 at depth 9..11
            [-10, 0, 0, 2, 2, 2, 0],  # behind the camera
            [0, 0, 0, 4, 2, 2, 0],  # around the camera: cut at the near plane, fills the image
            [10, 40, 0, 2, 2, 2, 0],  # ahead but far to the left of the image
            [10, 11, 0, 2, 2, 2, 0],  # across the left border
        ]
    )
    out = project_boxes(lidar_box_corners(boxes), lidar2cam, cam2img, 200, 100)
    np.testing.assert_allclose(out[0], (100 - 100 / 9, 50 - 100 / 9, 100 + 100 / 9, 50 + 100 / 9))
    assert out[1] is None and out[3] is None
    assert out[2] == (0.0, 0.0, 200.0, 100.0)
    assert out[4][0] == 0.0 and 0 < out[4][2] < 100 and out[4][1] > 0


def test_target_samples_of_the_subset_hold_target_instances(annotation_run, toy_world):
    work_dir, manifest = annotation_run
    target = set(Config.fromfile(CONFIG).concepts.vocabulary.target)
    infos = _infos(toy_world[0])
    names = {label: name for name, label in infos['metainfo']['categories'].items()}
    with open(os.path.join(work_dir, SUBSET_DIR, SUBSET_MANIFEST)) as f:
        summary = json.load(f)
    chosen = [s for s in summary['selected'] if s['reason'] == 'target']
    assert len(chosen) == round(0.1 * len(infos['data_list'])) and not summary['target_shortfall_filled_from']
    for s in chosen:
        classes = {names[int(i['bbox_label_3d'])] for i in infos['data_list'][s['train_index']]['instances']}
        assert classes & target, s['sample_token']
        assert {c['concept'] for c in s['crops'] if c['group'] == 'Target'} <= classes & target
    # The subset pickles are there for the training configs; the sampler weighs by the same groups.
    infos_path, dbinfos_path = subset_paths(work_dir, 'random10_target10')
    assert os.path.isfile(infos_path) and os.path.isfile(dbinfos_path)
    # No image embeddings, so no coreset to pick: none is written rather than a meaningless one.
    assert summary['num_coreset'] is None and not os.path.exists(subset_paths(work_dir, 'coreset20')[0])
    subset = _infos(os.path.dirname(infos_path), os.path.basename(infos_path))['data_list']

    class Dataset:  # what RareConceptSampler reads of a dataset
        def __len__(self):
            return len(subset)

        def get_data_info(self, i):
            return subset[i]

    sampler = RareConceptSampler(Dataset(), work_dir, seed=0)
    for info, weight in zip(subset, sampler.weights.tolist()):
        if any(s['sample_token'] == info['token'] for s in chosen):
            assert weight == DEFAULT_GROUP_WEIGHTS['Target']


def test_vocabulary_decides_names_and_groups(annotation_run, toy_world, tmp_path):
    """A class the vocabulary lacks gives no crop (a counted skip); class_to_concept renames one."""
    root, _ = toy_world
    infos = _infos(root)
    infos['data_list'] = infos['data_list'][:4]
    ann = str(tmp_path / 'four.pkl')
    with open(ann, 'wb') as f:
        pickle.dump(infos, f)
    cfg = Config.fromfile(CONFIG)
    cfg.concepts.vocabulary = dict(concepts=['car', 'person', 'truck'], target=['person'], common=['car'])
    cfg.concept_source.class_to_concept = dict(pedestrian='person')
    cfg.subsets = None
    manifest = run_mining(cfg, root, ann, str(tmp_path / 'work'), progress=False)
    crops, concepts = _read(str(tmp_path / 'work'), 'crops.parquet'), _read(str(tmp_path / 'work'), 'concepts.parquet')
    # The same boxes as the full run's for these samples, less the classes without a concept.
    everything = _read(annotation_run[0], 'crops.parquet')
    everything = everything[everything.sample_token.isin({info['token'] for info in infos['data_list']})]
    kept = everything.yolo_class.isin(['car', 'pedestrian', 'truck'])
    assert list(crops.crop_id) == list(everything.crop_id[kept]) and (~kept).sum() > 0
    assert manifest['skips']['crops_class_not_in_vocabulary'] == (~kept).sum()
    named = dict(car='car', pedestrian='person', truck='truck')
    assert list(concepts.top_concept) == [named[c] for c in crops.yolo_class]
    assert 'person' in set(concepts.top_concept)
    assert (concepts.group == concepts.top_concept.map(dict(person='Target', car='Common', truck='Rare'))).all()

    bad = copy.deepcopy(cfg)
    bad.concept_source.class_to_concept = dict(pedestrian='walker')
    with pytest.raises(ValueError, match='walker'):
        run_mining(bad, root, ann, str(tmp_path / 'bad'), progress=False)
    assert not os.path.exists(tmp_path / 'bad')


def test_missing_images_are_counted_skips(toy_world, tmp_path):
    root, _ = toy_world
    infos = _infos(root)
    infos['data_list'] = infos['data_list'][:2]
    infos['data_list'][0]['images']['CAM_FRONT']['img_path'] = 'does_not_exist.jpg'
    ann = str(tmp_path / 'two.pkl')
    with open(ann, 'wb') as f:
        pickle.dump(infos, f)
    cfg = Config.fromfile(CONFIG)
    cfg.subsets = None
    manifest = run_mining(cfg, root, ann, str(tmp_path / 'work'), progress=False)
    assert manifest['skips']['images_missing'] == 1
    crops = _read(str(tmp_path / 'work'), 'crops.parquet')
    assert not ((crops.sample_token == infos['data_list'][0]['token']) & (crops.camera == 'CAM_FRONT')).any()


def test_concept_sources_share_one_registry(toy_world, tmp_path):
    """A config without ``concept_source`` keeps running the 2D pipeline."""
    cfg = Config.fromfile(os.path.join(REPO, 'configs', 'mining', 'toy.py'))
    assert 'concept_source' not in cfg
    args = dict(cfg=cfg, data_root=toy_world[0], ann_file=TRAIN, work_dir=str(tmp_path), progress=False)
    source = build_component(CONCEPT_SOURCES, dict(type='MiningPipeline'), default_args=args)
    assert type(source).__name__ == 'MiningPipeline' and source._detector is None
    assert isinstance(
        build_component(
            CONCEPT_SOURCES,
            Config.fromfile(CONFIG).concept_source,
            default_args=dict(args, cfg=Config.fromfile(CONFIG)),
        ),
        AnnotationConcepts,
    )


@pytest.mark.parametrize(
    'name, twin, mining_dir',
    [
        ('centerpoint_mined20_annotations.py', 'centerpoint_mined20.py', 'mining_nuscenes_annotations'),
        ('centerpoint_mined20_annotations_toy.py', 'centerpoint_mined20_toy.py', 'mining_toy_annotations'),
    ],
)
def test_training_configs_are_their_twins_with_the_annotation_source(name, twin, mining_dir):
    cfg, base = (Config.fromfile(os.path.join(REPO, 'configs', n)) for n in (name, twin))
    hook, base_hook = cfg.custom_hooks[0], base.custom_hooks[0]
    assert os.path.normpath(hook.mining_config) == CONFIG and hook.data_root == base_hook.data_root
    assert os.path.basename(os.path.normpath(hook.work_dir)) == mining_dir
    train = cfg.train_dataloader.dataset.dataset
    assert train.mining_dir == hook.work_dir and train.subset == base.train_dataloader.dataset.dataset.subset
    # Nothing else differs.
    cfg.custom_hooks, cfg.mining_work_dir = base.custom_hooks, base.mining_work_dir
    cfg.train_dataloader.dataset.dataset.mining_dir = base.train_dataloader.dataset.dataset.mining_dir
    assert cfg.to_dict() == base.to_dict()


def test_report_of_an_annotation_run_has_no_map_but_every_other_view(annotation_run, tmp_path):
    """No image embeddings (zero-width): the report still builds, says why the map is empty,
    and has its gallery and sample pages."""
    from conceptminer3d.report import build_report

    work_dir, manifest = annotation_run
    report = build_report(work_dir, out_dir=str(tmp_path / 'report'), progress=False)
    assert report['map_points'] == 0
    assert report['gallery_crops'] == sum(manifest['counts']['groups'].get(g, 0) for g in ('Target', 'Rare')) > 0
    assert report['sample_pages'] == manifest['subsets']['num_selected']
    with open(tmp_path / 'report' / 'assets' / 'report.js') as f:
        assert 'No embeddings in this run' in f.read()
