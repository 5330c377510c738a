"""Toy mining models trained on a toy world of their own (``conceptminer3d_toy/models/trained*.py``), on a tiny
world with a tiny budget, and mining with captions off."""

import copy
import dataclasses
import math
import os
import pickle
import socket
import time

import numpy as np
import pyarrow.parquet as pq
import pytest
from mmengine.config import Config

from conceptminer3d.apis import run_mining
from conceptminer3d.mining.stages.concepts import ConceptVocabulary
from conceptminer3d.mining.stages.detection import YoloDetector
from conceptminer3d.mining.stages.embedding import OpenClipEmbedder
from conceptminer3d.registry import CAPTIONERS
from conceptminer3d_toy.models import trained
from conceptminer3d_toy.models.trained import (
    TRAINED_TOY_MODEL_FILES,
    TrainedToyModelsSpec,
    build_trained_toy_models,
    cache_key,
    check_separate_worlds,
    evaluate_trained_toy_models,
    link_trained_toy_models,
)
from conceptminer3d_toy.models.trained_clip import ClipTrainSettings, zero_shot_accuracy
from conceptminer3d_toy.models.trained_data import (
    CLASSES,
    NEAR_PLANE,
    BoxRules,
    collect_gt_crops,
    export_yolo_dataset,
    visible_fractions,
)
from conceptminer3d_toy.models.trained_yolo import YoloTrainSettings
from conceptminer3d_toy.world import PRESETS, ToyWorldConfig

from helpers import REPO, replace_path_prefix

TRAIN, VAL = 'nuscenes_infos_train.pkl', 'nuscenes_infos_val.pkl'
# Small images, so that the converter's 1600×900 clipping leaves boxes outside the picture.
TINY_WORLD = ToyWorldConfig(
    train_scenes=2,
    val_scenes=1,
    samples_per_scene=2,
    sweeps_per_sample=1,
    image_width=256,
    image_height=144,
    points_per_frame=1000,
    seed=5,
)
TINY_SPEC = TrainedToyModelsSpec(
    world=TINY_WORLD,
    yolo=YoloTrainSettings(epochs=1, imgsz=128, batch=4, close_mosaic=0),
    clip=ClipTrainSettings(epochs=10, batch_size=16, warmup_steps=5),
)


class _NetworkGuard:
    """Records and refuses every connection and name lookup."""

    def __init__(self):
        self.attempts = []

    def refuse(self, what):
        def refused(*args, **kwargs):
            self.attempts.append((what, args[1:] if what == 'connect' else args[:1]))
            raise OSError(f'no network in this test ({what})')

        return refused


@pytest.fixture(scope='module')
def built(tmp_path_factory):
    """The tiny build, trained once with the network refused: (result, cache root, attempts)."""
    cache_root = str(tmp_path_factory.mktemp('cm3d_cache'))
    guard = _NetworkGuard()
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(socket.socket, 'connect', guard.refuse('connect'))
        patch.setattr(socket.socket, 'connect_ex', guard.refuse('connect'))
        patch.setattr(socket, 'getaddrinfo', guard.refuse('getaddrinfo'))
        result = build_trained_toy_models(TINY_SPEC, cache_root, log=lambda *a: None)
        world = result['manifest']['training_world']['root']
        metrics = evaluate_trained_toy_models(result['dir'], world, VAL, spec=TINY_SPEC, log=lambda *a: None)
    return result, cache_root, guard.attempts, metrics


@pytest.fixture(scope='module')
def world(built):
    return built[0]['manifest']['training_world']['root']


# --------------------------------------------------------------------------- labels
def test_visible_fractions_count_only_nearer_boxes():
    boxes = np.array([[0, 0, 10, 10], [5, 0, 15, 10], [20, 20, 30, 30]], dtype=float)
    depths = np.array([5.0, 1.0, 3.0])  # box 1 is in front of box 0
    np.testing.assert_allclose(visible_fractions(boxes, depths, 40, 40), [0.5, 1.0, 1.0])


def test_yolo_export_has_one_line_per_visible_projected_box(world, tmp_path):
    """Checked against the converter's own 2D boxes: where the converter did not clip (the box
    is inside the image and wholly in front of the camera), the label is the pickle's box; no
    label lies outside the image; and boxes that only the converter's 1600×900 canvas holds
    get none."""
    from mmdet3d.structures import CameraInstance3DBoxes

    rules = BoxRules(min_size=0.0, min_visible=0.0)
    out = export_yolo_dataset(str(tmp_path / 'yolo'), {'train': [(world, TRAIN)]}, rules)
    with open(os.path.join(world, TRAIN), 'rb') as f:
        data = pickle.load(f)
    names = {i: name for name, i in data['metainfo']['categories'].items()}
    width, height = TINY_WORLD.image_width, TINY_WORLD.image_height
    label_dir = tmp_path / 'yolo' / 'labels' / 'train'
    files = sorted(os.listdir(label_dir))
    images = [(info, camera) for info in data['data_list'] for camera in info['images']]
    assert len(files) == len(images) == out['train']['images']
    outside_canvas_only = inside = lines_total = 0
    for name, (info, camera) in zip(files, images):
        assert name.endswith(os.path.splitext(info['images'][camera]['img_path'])[0] + '.txt')
        lines = [line.split() for line in (label_dir / name).read_text().splitlines()]
        lines_total += len(lines)
        labels = np.array([[float(v) for v in line] for line in lines]).reshape(-1, 5)
        assert ((labels[:, 1:] >= 0) & (labels[:, 1:] <= 1)).all()
        xyxy = np.stack(
            [
                labels[:, 1] - labels[:, 3] / 2,
                labels[:, 2] - labels[:, 4] / 2,
                labels[:, 1] + labels[:, 3] / 2,
                labels[:, 2] + labels[:, 4] / 2,
            ],
            axis=1,
        )
        assert (xyxy >= -1e-6).all() and (xyxy <= 1 + 1e-6).all()
        overlapping = inside_here = 0
        for instance in info['cam_instances'][camera]:
            x1, y1, x2, y2 = instance['bbox']
            if x1 >= width or y1 >= height:
                outside_canvas_only += 1
                continue
            overlapping += 1
            corners = CameraInstance3DBoxes(np.array([instance['bbox_3d']]), origin=(0.5, 0.5, 0.5)).corners
            # A box reaching behind the camera: the converter drops its rear corners, the
            # export clips it at the renderer's near plane (so it can only be larger).
            if x2 <= width and y2 <= height and bool((corners[..., 2] > NEAR_PLANE).all()):
                inside_here += 1
                expected = np.array([x1 / width, y1 / height, x2 / width, y2 / height])
                match = np.flatnonzero(np.abs(xyxy - expected).max(axis=1) < 1e-5)
                assert len(match) == 1, (camera, instance['bbox'])
                assert CLASSES[int(labels[match[0], 0])] == names[instance['bbox_label']]
        # A box across the image border gets a line when its hull meets the picture.
        assert inside_here <= len(lines) <= overlapping
        inside += inside_here
    assert lines_total == out['train']['boxes'] and inside > 0 and outside_canvas_only > 0


def test_occlusion_and_size_rules_drop_labels(world, tmp_path):
    every = export_yolo_dataset(str(tmp_path / 'a'), {'train': [(world, TRAIN)]}, BoxRules(0.0, 0.0))
    strict = export_yolo_dataset(str(tmp_path / 'b'), {'train': [(world, TRAIN)]}, BoxRules(8.0, 0.5))
    assert 0 < strict['train']['boxes'] < every['train']['boxes']


# --------------------------------------------------------------------------- training and cache
def test_training_made_no_network_attempt(built):
    assert built[2] == []


def test_models_load_through_the_pipeline_loaders(built):
    result = built[0]
    assert result['paths'] == {k: os.path.join(result['dir'], f) for k, f in TRAINED_TOY_MODEL_FILES.items()}
    detector = YoloDetector(result['paths']['yolo'], conf=1e-4, imgsz=128, max_det=5)
    assert tuple(detector.class_names[i] for i in range(len(CLASSES))) == CLASSES
    image = np.zeros((144, 256, 3), np.uint8)
    assert len(detector.detect([image])) == 1
    embedder = OpenClipEmbedder(result['paths']['clip'], pretrained=None)
    texts = embedder.encode_texts(['a photo of a car', 'a photo of a bus'])
    assert texts.shape == (2, embedder.embedding_dim)
    manifest = result['manifest']
    assert manifest['yolo']['parameters'] > 0 and manifest['clip']['parameters'] > 0


def test_contrastive_embedder_beats_chance_on_training_crops(built, world):
    result = built[0]
    crops = collect_gt_crops([(world, TRAIN)], TINY_SPEC.crop_rules, TINY_SPEC.min_crop_size)
    accuracy = zero_shot_accuracy(OpenClipEmbedder(result['paths']['clip'], pretrained=None), crops)
    assert accuracy['chance'] == 1 / len(CLASSES)
    assert accuracy['accuracy'] > 2.5 * accuracy['chance'], accuracy
    assert accuracy['balanced_accuracy'] > 2.5 * accuracy['chance'], accuracy


def test_evaluation_report(built):
    result, _, _, metrics = built
    assert set(metrics) == {'eval', 'yolo', 'clip'}
    per_class = metrics['yolo']['map50_per_class']
    assert per_class and set(per_class) <= set(CLASSES)
    # ultralytics' mAP50: the mean AP50 over the classes the val labels hold (every one is named here)
    assert math.isclose(metrics['yolo']['map50'], sum(per_class.values()) / len(per_class), rel_tol=1e-9)
    assert metrics['yolo']['dataset']['images'] == TINY_WORLD.val_scenes * TINY_WORLD.samples_per_scene * 6
    assert sum(v['crops'] for v in metrics['clip']['per_class'].values()) == metrics['clip']['crops'] > 0
    assert os.path.isfile(os.path.join(result['dir'], 'metrics.json'))
    # Reused while the models and the pickle are the same: no evaluation runs.
    again = evaluate_trained_toy_models(
        result['dir'],
        result['manifest']['training_world']['root'],
        VAL,
        spec=TINY_SPEC,
        log=lambda *a: pytest.fail('evaluated again'),
    )
    assert again == metrics


def test_cache_key_follows_every_input():
    base = cache_key(TINY_SPEC)
    assert cache_key(copy.deepcopy(TINY_SPEC)) == base
    # Threads change the speed, not the models.
    assert cache_key(dataclasses.replace(TINY_SPEC, yolo=dataclasses.replace(TINY_SPEC.yolo, num_threads=1))) == base
    changed = [
        dataclasses.replace(TINY_SPEC, world=dataclasses.replace(TINY_WORLD, seed=6)),
        dataclasses.replace(TINY_SPEC, world=dataclasses.replace(TINY_WORLD, image_width=320)),
        dataclasses.replace(TINY_SPEC, yolo=dataclasses.replace(TINY_SPEC.yolo, epochs=2)),
        dataclasses.replace(TINY_SPEC, clip=dataclasses.replace(TINY_SPEC.clip, lr=1e-3)),
        dataclasses.replace(TINY_SPEC, label_rules=BoxRules(2.0, 0.3)),
    ]
    keys = {cache_key(spec) for spec in changed}
    assert base not in keys and len(keys) == len(changed)


def test_cache_key_follows_versions(monkeypatch):
    base = cache_key(TINY_SPEC)
    real = trained.package_versions
    monkeypatch.setattr(trained, 'package_versions', lambda *a, **k: {**real(*a, **k), 'torch': '0.0.1'})
    assert cache_key(TINY_SPEC) != base
    monkeypatch.undo()
    monkeypatch.setattr(trained, 'TRAINED_TOY_MODELS_VERSION', trained.TRAINED_TOY_MODELS_VERSION + 1)
    assert cache_key(TINY_SPEC) != base


def test_second_build_reuses_without_training(built, monkeypatch):
    result, cache_root = built[0], built[1]

    def fail(*args, **kwargs):
        pytest.fail('trained again')

    for name in ('train_yolo', 'train_clip', 'build_toy_dataset'):
        monkeypatch.setattr(trained, name, fail)
    start = time.perf_counter()
    again = build_trained_toy_models(TINY_SPEC, cache_root, log=fail)
    assert again['reused'] and again['dir'] == result['dir'] and again['manifest'] == result['manifest']
    assert time.perf_counter() - start < 5
    # Only finished builds are left: no staging directories.
    assert os.listdir(os.path.dirname(result['dir'])) == [result['key']]


def test_link_gives_a_stable_path(built, tmp_path):
    result = built[0]
    out = str(tmp_path / 'data' / 'toy_models_trained')
    assert link_trained_toy_models(result['dir'], out) == out
    assert os.path.realpath(out) == os.path.realpath(result['dir'])
    link_trained_toy_models(result['dir'], out)  # replacing its own link is fine
    (tmp_path / 'other').mkdir()
    (tmp_path / 'other' / 'x').write_text('not ours')
    with pytest.raises(FileExistsError):
        link_trained_toy_models(result['dir'], str(tmp_path / 'other'))


def test_training_world_must_not_be_the_benchmark():
    benchmark = PRESETS['benchmark']
    with pytest.raises(ValueError, match='seed'):
        check_separate_worlds(dataclasses.replace(benchmark, train_scenes=10), benchmark)
    check_separate_worlds(trained.TRAINING_WORLD, benchmark)


# --------------------------------------------------------------------------- captions off
def test_mining_with_captions_off(built, world, tmp_path, monkeypatch):
    """configs/mining/toy_trained.py end to end: no captioner is checked or built, and every
    caption-selected crop gets concept scores from its image embedding alone."""
    for captioner in CAPTIONERS.module_dict.values():
        monkeypatch.setattr(captioner, '__init__', lambda *a, **k: pytest.fail('a captioner was built'))
        monkeypatch.setattr(captioner, 'check_available', classmethod(lambda *a, **k: pytest.fail('checked')))
    cfg = Config.fromfile(os.path.join(REPO, 'configs', 'mining', 'toy_trained.py'))
    assert cfg.captioner is None and cfg.concepts.weight_text == 0
    cfg = replace_path_prefix(cfg, cfg.toy_models, built[0]['dir'])
    # A one-epoch detector scores near its prior: the random toy config's threshold.
    cfg.detector.update(conf=1e-4, imgsz=128, max_det=6)
    cfg.frames.cameras = ['CAM_FRONT', 'CAM_BACK']
    cfg.subsets = None
    work_dir = str(tmp_path / 'mining')
    manifest = run_mining(cfg, world, TRAIN, work_dir, progress=False)

    crops = pq.read_table(os.path.join(work_dir, 'crops.parquet')).to_pandas()
    concepts = pq.read_table(os.path.join(work_dir, 'concepts.parquet')).to_pandas()
    assert len(pq.read_table(os.path.join(work_dir, 'captions.parquet'))) == 0
    selected = crops[crops.caption_selected]
    assert len(selected) > 0 and list(concepts.crop_id) == list(selected.crop_id)
    assert manifest['counts']['caption_selected'] == len(concepts) and manifest['counts']['captions'] == 0
    assert (concepts.text_weight == 0).all() and concepts.image_caption_cos.isna().all()
    # The scores are cos(image, concept prompt), recomputed here with the same embedder.
    embedder = OpenClipEmbedder(built[0]['paths']['clip'], pretrained=None)
    vocabulary = ConceptVocabulary(**cfg.concepts.vocabulary)
    embeddings = np.load(os.path.join(work_dir, 'embeddings.npy'))[selected.index.to_numpy()]
    cos = embeddings @ embedder.encode_texts(vocabulary.prompts()).T
    np.testing.assert_allclose(concepts.top_score, cos.max(axis=1), atol=1e-5)
    assert list(concepts.top_concept) == [vocabulary.concepts[j] for j in cos.argmax(axis=1)]
