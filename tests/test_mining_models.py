"""Model wrappers (YOLO, open_clip, Qwen2-VL, BLIP) on real tiny models built offline, and the
offline-availability errors for the real model names."""

import hashlib
import os
import socket

import numpy as np
import pytest
import torch
from PIL import Image

from conceptminer3d.mining.models.model_loading import ModelUnavailableError, check_available
from conceptminer3d.mining.stages.captioning import BlipCaptioner, Qwen2VLCaptioner
from conceptminer3d.mining.stages.detection import Detections, YoloDetector
from conceptminer3d.mining.stages.embedding import OpenClipEmbedder
from conceptminer3d.registry import CAPTIONERS, DETECTORS_2D, EMBEDDERS
from conceptminer3d_toy.models import build_toy_models, build_toy_qwen2_vl

from helpers import toy_blip_captioner, toy_mining_cfg

# (height, width) of the test images / crops: all different, as crops are.
SIZES = [(120, 200), (300, 160), (64, 64), (240, 320), (37, 90), (200, 150)]


def scene(seed: int, height: int, width: int) -> np.ndarray:
    """An RGB uint8 image: flat background and coloured boxes."""
    rng = np.random.default_rng(seed)
    image = np.empty((height, width, 3), np.uint8)
    image[:] = rng.integers(0, 256, 3)
    for _ in range(5):
        h, w = rng.integers(4, height // 2 + 5), rng.integers(4, width // 2 + 5)
        y, x = rng.integers(0, height - h + 1), rng.integers(0, width - w + 1)
        image[y : y + h, x : x + w] = rng.integers(0, 256, 3)
    return image


@pytest.fixture(scope='module')
def images():
    return [scene(i, h, w) for i, (h, w) in enumerate(SIZES)]


@pytest.fixture(scope='module')
def crops(images):
    return [Image.fromarray(image) for image in images] + [
        Image.fromarray(scene(10, 48, 30)),
        Image.fromarray(scene(11, 90, 60)),
    ]


@pytest.fixture(scope='module')
def detector(toy_models):
    """The toy YOLO as configs/mining/toy.py configures it."""
    return DETECTORS_2D.build(toy_mining_cfg(toy_models).detector)


# --------------------------------------------------------------------------- toy models
def _digest(path):
    digest = hashlib.sha256()
    for root, _, files in sorted(os.walk(path)):
        for name in sorted(files):
            with open(os.path.join(root, name), 'rb') as f:
                digest.update(name.encode() + f.read())
    return digest.hexdigest()


def test_toy_models_are_reused_and_deterministic(toy_models, tmp_path):
    out_dir = os.path.dirname(toy_models['yolo'])
    assert set(toy_models) == {'yolo', 'clip', 'qwen2_vl', 'blip'}
    assert all(os.path.exists(p) for p in toy_models.values())
    assert not [n for n in os.listdir(os.path.dirname(out_dir)) if '.partial' in n]
    before = {name: os.stat(os.path.join(out_dir, name)).st_mtime_ns for name in os.listdir(out_dir)}
    assert build_toy_models(out_dir, seed=0) == toy_models
    assert {name: os.stat(os.path.join(out_dir, name)).st_mtime_ns for name in os.listdir(out_dir)} == before
    with pytest.raises(FileExistsError):  # never replaces a directory holding other files
        (tmp_path / 'other').mkdir()
        (tmp_path / 'other' / 'notes.txt').write_text('keep me')
        build_toy_models(str(tmp_path / 'other'))
    assert (tmp_path / 'other' / 'notes.txt').exists()
    # Same seed, same bytes (one builder, to keep the suite fast).
    build_toy_qwen2_vl(str(tmp_path / 'again'), seed=0)
    assert _digest(str(tmp_path / 'again')) == _digest(toy_models['qwen2_vl'])


def test_toy_config_finds_the_toy_models(toy_models):
    """configs/mining/toy.py names the files build_toy_models writes."""
    cfg = toy_mining_cfg(toy_models)
    for registry, component in (
        (DETECTORS_2D, cfg.detector),
        (EMBEDDERS, cfg.embedder),
        (CAPTIONERS, cfg.captioner),
        (CAPTIONERS, toy_blip_captioner(toy_models)),
    ):
        check_available(registry, component)
    with pytest.raises(ModelUnavailableError, match='no such file'):
        check_available(DETECTORS_2D, dict(cfg.detector, model=toy_models['yolo'] + '.gone.pt'))
    with pytest.raises(ModelUnavailableError, match=r'put it in the models dir \(models\)'):
        check_available(DETECTORS_2D, dict(cfg.detector, model='yolov8n-toy.pt'))  # a name: ./models, the default


def test_check_available_names_the_unknown_type():
    with pytest.raises(KeyError) as info:
        check_available(CAPTIONERS, dict(type='GPT5Captioner', model='Qwen/Qwen2-VL-2B-Instruct'))
    message = info.value.args[0]
    assert "'GPT5Captioner'" in message and 'BlipCaptioner, Qwen2VLCaptioner' in message
    assert 'Qwen/Qwen2-VL-2B-Instruct' not in message  # the rest of the config is not the problem
    with pytest.raises(KeyError, match='needs a type'):
        check_available(CAPTIONERS, dict(model='Qwen/Qwen2-VL-2B-Instruct'))


# --------------------------------------------------------------------------- YOLO
def _assert_same(a: Detections, b: Detections, scale: float = 1.0):
    assert len(a) == len(b)
    np.testing.assert_allclose(a.boxes_xyxy * scale, b.boxes_xyxy, rtol=1e-5, atol=1e-3)
    np.testing.assert_allclose(a.scores, b.scores, rtol=1e-5, atol=1e-6)
    np.testing.assert_array_equal(a.labels, b.labels)


def test_yolo_results_align_with_inputs(detector, images):
    detections = detector.detect(images)
    assert len(detections) == len(images) and sum(map(len, detections)) > 0
    for (height, width), det in zip(SIZES, detections):
        assert det.boxes_xyxy.dtype == np.float32 and det.boxes_xyxy.shape == (len(det), 4)
        assert det.scores.dtype == np.float32 and det.labels.dtype == np.int64
        assert set(det.labels.tolist()) <= set(detector.class_names)
        # Original-image pixels, not the 320-pixel letterbox.
        assert (det.boxes_xyxy >= 0).all()
        assert (det.boxes_xyxy[:, [0, 2]] <= width).all()
        assert (det.boxes_xyxy[:, [1, 3]] <= height).all()
    # The model sees each image (the outputs differ), and each result stays with its image
    # in any order and across batch boundaries (batch_size 3: two model calls).
    assert len({det.scores.tobytes() for det in detections}) == len(images)
    for a, b in zip(detections, detector.detect(images[::-1])[::-1]):
        _assert_same(a, b)
    batch_size, detector.batch_size = detector.batch_size, 3
    try:
        for a, b in zip(detections, detector.detect(images)):
            _assert_same(a, b)
    finally:
        detector.batch_size = batch_size
    assert detector.detect([]) == []


def test_yolo_boxes_are_in_original_pixels(detector):
    # An image at the inference size and its 2x nearest-neighbour enlargement reach the
    # network as the same letterboxed tensor, so the boxes must differ by exactly 2x.
    small = scene(42, 240, 320)
    large = np.repeat(np.repeat(small, 2, axis=0), 2, axis=1)
    det_small, det_large = detector.detect([small, large])
    assert len(det_small) > 0
    _assert_same(det_small, det_large, scale=2.0)


def test_yolo_reads_rgb(detector):
    image = scene(42, 240, 320)
    ours = detector.detect([image])[0]
    # ultralytics converts PIL images (RGB) itself: the reference for the channel order.
    reference = detector.model.predict(
        [Image.fromarray(image)],
        conf=detector.conf,
        iou=detector.iou,
        imgsz=detector.imgsz,
        max_det=detector.max_det,
        verbose=False,
    )[0]
    _assert_same(
        ours,
        Detections(
            reference.boxes.xyxy.numpy(), reference.boxes.conf.numpy(), reference.boxes.cls.numpy().astype(np.int64)
        ),
    )
    swapped = detector.detect([np.ascontiguousarray(image[..., ::-1])])[0]
    assert not np.allclose(swapped.scores, ours.scores)  # the channel order matters


def test_yolo_restores_thread_count(toy_models, images):
    before = torch.get_num_threads()
    try:
        # A count ultralytics would not pick (it sets min(8, cpu_count - 1) on set-up).
        torch.set_num_threads(3)
        detector = YoloDetector(toy_models['yolo'], conf=1e-4, imgsz=320)
        assert torch.get_num_threads() == 3
        detector.detect(images[:2])
        assert torch.get_num_threads() == 3
        YoloDetector(toy_models['yolo'], imgsz=320, num_threads=2).detect(images[:1])
        assert torch.get_num_threads() == 2
    finally:
        torch.set_num_threads(before)


def test_yolo_class_filter(toy_models, images):
    detector = YoloDetector(toy_models['yolo'], conf=1e-4, imgsz=320, classes=['car', 'truck'])
    labels = np.concatenate([d.labels for d in detector.detect(images)])
    assert len(labels) and set(labels.tolist()) <= {2, 7}  # COCO ids of car and truck


# --------------------------------------------------------------------------- CLIP
def test_clip_embeddings(toy_models, crops):
    embedder = OpenClipEmbedder(toy_models['clip'], pretrained=None, batch_size=3)
    embeddings = embedder.encode_images(crops)
    assert embeddings.dtype == np.float32
    assert embeddings.shape == (len(crops), embedder.embedding_dim)
    np.testing.assert_allclose(np.linalg.norm(embeddings, axis=1), 1.0, atol=1e-5)
    one_by_one = np.concatenate([embedder.encode_images([crop]) for crop in crops])
    np.testing.assert_allclose(embeddings, one_by_one, atol=1e-5)

    texts = ['a car', 'a construction vehicle', 'a pedestrian pushing a stroller', 'others']
    text_embeddings = embedder.encode_texts(texts)
    assert text_embeddings.shape == (len(texts), embedder.embedding_dim)
    np.testing.assert_allclose(np.linalg.norm(text_embeddings, axis=1), 1.0, atol=1e-5)
    np.testing.assert_allclose(text_embeddings, np.concatenate([embedder.encode_texts([t]) for t in texts]), atol=1e-5)
    assert embedder.encode_images([]).shape == (0, embedder.embedding_dim)
    # The same directory through open_clip's own schema.
    same = OpenClipEmbedder('local-dir:' + toy_models['clip'], pretrained=None)
    np.testing.assert_allclose(same.encode_images(crops[:2]), embeddings[:2], atol=1e-5)


# --------------------------------------------------------------------------- captioners
@pytest.mark.parametrize('captioner_type', [Qwen2VLCaptioner, BlipCaptioner])
def test_batched_captions_equal_one_by_one(toy_models, crops, captioner_type):
    path = toy_models['qwen2_vl' if captioner_type is Qwen2VLCaptioner else 'blip']
    captioner = captioner_type(path, max_new_tokens=12, batch_size=8)
    captions = captioner.caption(crops)
    assert len(captions) == len(crops) and all(isinstance(c, str) for c in captions)
    # Verbatim but stripped; a random model may stop at once (an empty caption), rarely.
    assert all(c == c.strip() for c in captions) and sum(map(bool, captions)) >= len(crops) // 2
    assert len(set(captions)) > 1  # the model looks at the image
    # Greedy decoding with left padding: a crop's caption must not depend on its neighbours.
    assert [captioner.caption([crop])[0] for crop in crops] == captions
    captioner.batch_size = 3
    assert captioner.caption(crops) == captions
    for caption in captions:  # the generated text only
        assert 'assistant' not in caption and 'helpful' not in caption
        assert not caption.startswith('a photo of')
    assert captioner.caption([]) == []


def test_qwen2vl_pads_on_the_left(toy_models, crops):
    captioner = Qwen2VLCaptioner(toy_models['qwen2_vl'], max_new_tokens=4)
    inputs, prompt_length = captioner._inputs([crop.convert('RGB') for crop in crops[:3]])
    mask = inputs['attention_mask']
    assert prompt_length == mask.shape[1] and (mask[:, -1] == 1).all() and (mask == 0).any()


# --------------------------------------------------------------------------- unavailable models
@pytest.fixture
def connections(monkeypatch):
    """Every network connection the test attempts; each is refused. The availability checks
    must decide offline, so a machine without internet gets the error at once."""
    attempts = []

    def refuse(sock, address):
        attempts.append(address)
        raise OSError(f'no network in this test (tried {address})')

    monkeypatch.setattr(socket.socket, 'connect', refuse)
    return attempts


def _raises_unavailable(connections, build, *expected):
    with pytest.raises(ModelUnavailableError) as info:
        build()
    assert not connections, f'tried the network: {connections}'
    message = str(info.value)
    for text in expected:
        assert text in message, f'{text!r} not in {message!r}'
    # One clear error, not a chain of hub tracebacks.
    error = info.value
    assert error.__cause__ is None and (error.__context__ is None or error.__suppress_context__)
    return message


def test_unavailable_yolo(connections, tmp_path):
    _raises_unavailable(
        connections,
        lambda: YoloDetector('yolov8l.pt', models_dir=str(tmp_path / 'models')),
        "'yolov8l.pt'",
        f'not in the models dir ({tmp_path / "models"})',
        f'`wget https://github.com/ultralytics/assets/releases/download/v8.4.0/yolov8l.pt -P {tmp_path / "models"}`',
    )
    _raises_unavailable(connections, lambda: YoloDetector(str(tmp_path / 'missing.pt')), 'no such file')
    _raises_unavailable(connections, lambda: YoloDetector('yolov8l.yml.nope'), 'no such file')
    # Names that ultralytics never released: no download is suggested, even when allowed.
    for name in ('yolov8n-toy.pt', str(tmp_path / 'models' / 'yolov8n-toy.pt')):
        for allow_download in (False, True):
            message = _raises_unavailable(
                connections, lambda n=name, a=allow_download: YoloDetector(n, allow_download=a), 'detector.model'
            )
            assert 'github.com' not in message and 'allow_download' not in message


def test_unavailable_open_clip(connections, tmp_path):
    _raises_unavailable(
        connections,
        lambda: OpenClipEmbedder('ViT-B-32', 'laion2b_s34b_b79k', cache_dir=str(tmp_path)),
        'ViT-B-32/laion2b_s34b_b79k',
        'hf download laion/CLIP-ViT-B-32-laion2B-s34B-b79K --local-dir models/CLIP-ViT-B-32-laion2B-s34B-b79K',
        'embedder can stay as it is',
    )
    _raises_unavailable(connections, lambda: OpenClipEmbedder(str(tmp_path), pretrained=None), 'open_clip_config.json')
    _raises_unavailable(connections, lambda: OpenClipEmbedder('ViT-B-32', 'no-such-tag'), 'no-such-tag')


def test_unavailable_transformers_models(connections, tmp_path):
    cache = str(tmp_path / 'empty_hf_cache')
    _raises_unavailable(
        connections,
        lambda: Qwen2VLCaptioner(cache_dir=cache),
        "'Qwen/Qwen2-VL-2B-Instruct'",
        'hf download Qwen/Qwen2-VL-2B-Instruct --local-dir models/Qwen2-VL-2B-Instruct',
        "captioner.model can stay 'Qwen/Qwen2-VL-2B-Instruct'",
    )
    _raises_unavailable(
        connections, lambda: Qwen2VLCaptioner('qwen2-vl-toy', models_dir=cache), 'no folder of that name'
    )
    _raises_unavailable(
        connections, lambda: BlipCaptioner(cache_dir=cache), 'hf download Salesforce/blip-image-captioning-large'
    )
    _raises_unavailable(connections, lambda: Qwen2VLCaptioner(str(tmp_path)), 'no config.json')
    # The config-level check, as a mining run does before its first stage.
    _raises_unavailable(
        connections,
        lambda: check_available(
            CAPTIONERS,
            dict(type='Qwen2VLCaptioner', model='Qwen/Qwen2-VL-2B-Instruct', cache_dir=cache, max_new_tokens=8),
        ),
        'Qwen/Qwen2-VL-2B-Instruct',
    )


# --------------------------------------------------------------------------- devices and cache identity
def test_auto_device_and_per_device_batch_sizes(toy_models):
    """On a machine without a GPU 'auto' is the CPU, with the CPU's batch sizes and float32."""
    assert not torch.cuda.is_available(), 'this test describes a CPU-only machine'
    embedder = OpenClipEmbedder(toy_models['clip'], pretrained=None)
    assert embedder.device == torch.device('cpu') and embedder.dtype == torch.float32
    assert embedder.batch_size == OpenClipEmbedder.default_batch_size['cpu']
    detector = YoloDetector(toy_models['yolo'], conf=1e-4)
    assert detector.device == torch.device('cpu') and not detector.half
    assert detector.batch_size == YoloDetector.default_batch_size['cpu']
    assert YoloDetector(toy_models['yolo'], batch_size=3).batch_size == 3
    with pytest.raises(RuntimeError, match='sees no CUDA device'):
        OpenClipEmbedder(toy_models['clip'], pretrained=None, device='cuda')
    with pytest.raises(ValueError, match='batch_size'):
        OpenClipEmbedder(toy_models['clip'], pretrained=None, batch_size=0)


def test_result_identity_ignores_how_a_model_runs_and_where_it_lies(toy_models, tmp_path):
    import shutil

    from conceptminer3d.mining.models.identity import result_identity

    moved = shutil.copytree(toy_models['clip'], tmp_path / 'elsewhere' / 'clip')
    base = dict(type='OpenClipEmbedder', model_name=toy_models['clip'], pretrained=None)
    same = [
        dict(base, batch_size=7, device='cpu', dtype='float32'),
        dict(base, model_name=str(moved)),
        dict(base, model_name='local-dir:' + os.path.relpath(moved)),
    ]
    for cfg in same:
        assert result_identity(EMBEDDERS, cfg) == result_identity(EMBEDDERS, base), cfg
    weights = next(p for p in moved.iterdir() if p.suffix in ('.safetensors', '.bin', '.pth'))
    with open(weights, 'r+b') as f:  # other weights: another identity
        f.seek(-4, os.SEEK_END)
        f.write(b'\x00\x01\x02\x03')
    assert result_identity(EMBEDDERS, dict(base, model_name=str(moved))) != result_identity(EMBEDDERS, base)

    yolo = dict(type='YoloDetector', model=toy_models['yolo'], conf=0.3)
    assert result_identity(DETECTORS_2D, yolo) == result_identity(DETECTORS_2D, dict(yolo, batch_size=2, conf=0.3))
    assert result_identity(DETECTORS_2D, yolo) == result_identity(
        DETECTORS_2D, {k: v for k, v in yolo.items() if k != 'conf'}
    )
    assert result_identity(DETECTORS_2D, yolo) != result_identity(DETECTORS_2D, dict(yolo, conf=0.5))


def test_default_names_resolve_in_the_models_dir(toy_models, tmp_path, monkeypatch, connections):
    """The names the configs use (default.py's and the toy ones) resolve in the models dir laid
    out as the download commands leave it: the config key, or $CONCEPTMINER3D_MODELS_DIR; a path
    that exists still wins."""
    import shutil

    from conceptminer3d.mining.models.model_loading import MODELS_DIR_ENV
    from conceptminer3d.mining.models.open_clip_models import resolve_open_clip_model

    models = tmp_path / 'models'
    models.mkdir()
    shutil.copy(toy_models['yolo'], models / 'yolov8l.pt')
    shutil.copytree(toy_models['qwen2_vl'], models / 'Qwen2-VL-2B-Instruct')
    shutil.copytree(toy_models['clip'], models / 'clip-toy')
    (models / 'CLIP-ViT-B-32-laion2B-s34B-b79K').mkdir()
    (models / 'CLIP-ViT-B-32-laion2B-s34B-b79K' / 'open_clip_pytorch_model.bin').write_bytes(b'weights')
    named = [
        (DETECTORS_2D, dict(type='YoloDetector', model='yolov8l.pt'), str(models / 'yolov8l.pt')),
        (
            CAPTIONERS,
            dict(type='Qwen2VLCaptioner', model='Qwen/Qwen2-VL-2B-Instruct'),
            str(models / 'Qwen2-VL-2B-Instruct'),
        ),
    ]
    for how in ('config', 'environment'):
        for registry, cfg, expected in named:
            if how == 'config':
                assert check_available(registry, dict(cfg, models_dir=str(models))) == expected
            else:
                monkeypatch.setenv(MODELS_DIR_ENV, str(models))
                assert check_available(registry, cfg) == expected
                monkeypatch.delenv(MODELS_DIR_ENV)
    clip = resolve_open_clip_model('ViT-B-32', 'laion2b_s34b_b79k', models_dir=str(models))
    assert clip.model_name == 'ViT-B-32' and clip.pretrained == str(
        models / 'CLIP-ViT-B-32-laion2B-s34B-b79K' / 'open_clip_pytorch_model.bin'
    )
    assert clip.preprocess_overrides  # the tag's preprocessing, as from the Hugging Face cache
    assert (
        resolve_open_clip_model('clip-toy', None, models_dir=str(models)).model_name
        == f'local-dir:{models / "clip-toy"}'
    )
    assert (
        check_available(DETECTORS_2D, dict(type='YoloDetector', model=toy_models['yolo'], models_dir=str(models)))
        == toy_models['yolo']
    )
    assert not connections


# --------------------------------------------------------------------------- bad images
def test_undecodable_images_are_skips_whatever_patched_pil(tmp_path):
    """ultralytics (imported by the detector) patches PIL.Image.open to answer an unidentifiable
    file by installing pi-heif; the mining decoder must still call it a corrupt image, and
    nothing may be installed."""
    import ultralytics.utils.checks
    from PIL import Image as PILImage

    from conceptminer3d.mining.runtime.images import decode_image

    assert PILImage.open.__module__ == 'ultralytics.utils.patches', 'the patched opener is what is tested'
    assert ultralytics.utils.checks.AUTOINSTALL is False and os.environ['YOLO_AUTOINSTALL'] == 'False'
    good = tmp_path / 'good.jpg'
    PILImage.fromarray(scene(0, 64, 96)).save(good, quality=90)
    data = good.read_bytes()
    files = {
        'empty.jpg': b'',
        'text.jpg': b'this is not an image at all',
        'truncated.jpg': data[: len(data) // 2],
        'header_only.jpg': data[:20],
    }
    for name, content in files.items():
        (tmp_path / name).write_bytes(content)
        image, status = decode_image(str(tmp_path / name))
        assert image is None and status == 'corrupt', name
    assert decode_image(str(tmp_path / 'absent.jpg')) == (None, 'missing')
    image, status = decode_image(str(good))
    assert status == 'ok' and image.size == (96, 64)
