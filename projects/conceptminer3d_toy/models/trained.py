"""Toy mining models trained on a toy world of their own: stand-ins for models pretrained
elsewhere, so that what the mined arm of the benchmark selects depends on what the models
see (random-initialised models make that arm a lottery).

* Training data: a separate toy world (``TrainedToyModelsSpec.world``: the benchmark preset
  with another seed and fewer scenes), generated here into the cache; never the benchmark
  world's train or val split.
* Detector: a YOLOv8n trained from scratch by ultralytics' trainer on the cameras' 2D boxes
  (``trained_yolo``), with the ten nuScenes class names.
* Embedder: a small open_clip model trained contrastively on GT crops against texts naming
  their class, class-balanced (``trained_clip``).
* No captioner: ``configs/mining/toy_trained.py`` mines with captions off.

Both are cached like the mmcv wheel: under ``CM3D_CACHE`` (default
``~/.cache/conceptminer3d``) in ``toy_mining_models/<key>``, the key a hash of everything
they depend on (``cache_payload``); a build is written to a sibling directory and renamed
into place, so a key's directory is complete or absent. Worlds are cached the same way in
``toy_worlds/<key>``. ``evaluate_trained_toy_models`` measures them on another world's val
cameras and writes ``metrics.json`` beside them; ``link_trained_toy_models`` gives them a
stable path for the mining config.
"""

from __future__ import annotations

import dataclasses
import json
import os
import shutil
import tempfile
import time
from dataclasses import asdict, dataclass
from typing import Callable, Dict, Optional

from conceptminer3d.mining.runtime.atomic_files import publishing_directory, write_json_atomic
from conceptminer3d.mining.runtime.hashing import content_key, file_sha256
from conceptminer3d.mining.runtime.run_record import package_versions

from ..world import PRESETS, ToyWorldConfig, build_toy_dataset
from .trained_clip import ClipTrainSettings, train_clip, zero_shot_accuracy
from .trained_data import BoxRules, collect_gt_crops, export_yolo_dataset
from .trained_yolo import YoloTrainSettings, evaluate_yolo, train_yolo

__all__ = [
    'TRAINED_TOY_MODEL_FILES',
    'TRAINED_TOY_MODELS_VERSION',
    'TRAINING_WORLD',
    'TrainedToyModelsSpec',
    'build_trained_toy_models',
    'cache_key',
    'cache_payload',
    'check_separate_worlds',
    'default_cache_root',
    'ensure_toy_world',
    'evaluate_trained_toy_models',
    'link_trained_toy_models',
]

# Bump when what the build writes changes for the same inputs: cached builds are then redone.
TRAINED_TOY_MODELS_VERSION = 1
MANIFEST = 'trained_toy_models.json'
METRICS = 'metrics.json'
TRAINED_TOY_MODEL_FILES = {'yolo': 'yolov8n-toy-trained.pt', 'clip': 'clip-toy-trained'}
INFO_FILES = ('nuscenes_infos_train.pkl', 'nuscenes_infos_val.pkl')
_PACKAGES = ('torch', 'ultralytics', 'open_clip_torch')

# The benchmark world's look and class mix, another seed, half its train scenes: 200
# samples (1200 camera images) to train on and 20 for ultralytics' end-of-training check.
TRAINING_WORLD = dataclasses.replace(PRESETS['benchmark'], seed=1, train_scenes=40, val_scenes=4)


@dataclass(frozen=True)
class TrainedToyModelsSpec:
    """Everything the trained models depend on besides package versions and code.

    Args:
        world: the toy world they are trained on (train split; its val split is ultralytics'
            end-of-training check).
        yolo, clip: training settings.
        label_rules: which projected boxes are YOLO labels.
        crop_rules: which boxes are embedder training crops (stricter about occlusion: a
            crop of a mostly hidden object shows the object in front).
    """

    world: ToyWorldConfig = TRAINING_WORLD
    yolo: YoloTrainSettings = YoloTrainSettings()
    clip: ClipTrainSettings = ClipTrainSettings()
    label_rules: BoxRules = BoxRules(min_size=2.0, min_visible=0.25)
    crop_rules: BoxRules = BoxRules(min_size=2.0, min_visible=0.5)
    min_crop_size: int = 8  # the mining config's crops.min_size


def check_separate_worlds(training: ToyWorldConfig, evaluation: ToyWorldConfig) -> None:
    """Raise ``ValueError`` unless the two worlds differ in seed: scenes are drawn per
    (seed, scene index), so a training world with the benchmark's seed would hold the
    benchmark's own scenes."""
    if training.seed == evaluation.seed:
        raise ValueError(
            f'the training world has the evaluation world\'s seed ({training.seed}): its scenes would '
            'be the benchmark\'s own; choose another training seed'
        )


def default_cache_root() -> str:
    return os.environ.get('CM3D_CACHE') or os.path.join(os.path.expanduser('~'), '.cache', 'conceptminer3d')


def cache_payload(spec: TrainedToyModelsSpec) -> dict:
    """What the cache key hashes: the spec (world config with its seed, training settings,
    box rules), the versions of torch, ultralytics and open_clip, and the code version."""
    return dict(
        version=TRAINED_TOY_MODELS_VERSION,
        world=asdict(spec.world),
        yolo=spec.yolo.key(),
        clip=spec.clip.key(),
        label_rules=asdict(spec.label_rules),
        crop_rules=asdict(spec.crop_rules),
        min_crop_size=spec.min_crop_size,
        packages=package_versions(_PACKAGES, python=False),
    )


def cache_key(spec: TrainedToyModelsSpec) -> str:
    return content_key(cache_payload(spec))


def _complete(directory: str, key: str) -> Optional[dict]:
    try:
        with open(os.path.join(directory, MANIFEST)) as f:
            manifest = json.load(f)
    except (OSError, ValueError):
        return None
    files = manifest.get('files', {})
    if manifest.get('key') != key or not all(os.path.exists(os.path.join(directory, f)) for f in files.values()):
        return None
    return manifest


def ensure_toy_world(config: ToyWorldConfig, cache_root: Optional[str] = None, log: Callable = print) -> str:
    """The root of a converted toy world of ``config``, generated into
    ``<cache_root>/toy_worlds/<key>`` unless it is there already (generation is
    deterministic: the same config gives the same world)."""
    config.validate()
    root = os.path.join(cache_root or default_cache_root(), 'toy_worlds')
    final = os.path.join(root, f'{config.version}-seed{config.seed}-{content_key(asdict(config))}')
    if all(os.path.isfile(os.path.join(final, name)) for name in INFO_FILES):
        return final
    with publishing_directory(final) as publication:
        start = time.perf_counter()
        log(f'generating toy world (seed {config.seed}, {config.train_scenes}+{config.val_scenes} scenes) into {final}')
        build_toy_dataset(publication.path, config, overwrite=True, progress=False)
        if os.path.isdir(final) and not all(os.path.isfile(os.path.join(final, n)) for n in INFO_FILES):
            shutil.rmtree(final)  # an incomplete world (no info pickles) from an older run
    log(f'toy world ready in {time.perf_counter() - start:.0f} s')
    return final


def _paths(directory: str) -> Dict[str, str]:
    return {name: os.path.join(directory, f) for name, f in TRAINED_TOY_MODEL_FILES.items()}


def _size(path: str) -> int:
    if os.path.isfile(path):
        return os.path.getsize(path)
    return sum(os.path.getsize(os.path.join(d, f)) for d, _, files in os.walk(path) for f in files)


def build_trained_toy_models(
    spec: TrainedToyModelsSpec = TrainedToyModelsSpec(),
    cache_root: Optional[str] = None,
    log: Callable = print,
    verbose: bool = False,
) -> dict:
    """Train the toy detector and embedder for ``spec``, or reuse the cached ones.

    Returns:
        dict: ``dir`` (the cache directory), ``key``, ``reused`` (bool), ``paths``
        (``{'yolo': <dir>/yolov8n-toy-trained.pt, 'clip': <dir>/clip-toy-trained}``, the
        values of a mining config's ``detector.model`` and ``embedder.model_name``) and
        ``manifest`` (inputs, sizes, training times and data counts, as written to
        ``<dir>/trained_toy_models.json``).
    """
    cache_root = cache_root or default_cache_root()
    payload = cache_payload(spec)
    key = content_key(payload)
    final = os.path.join(cache_root, 'toy_mining_models', key)
    manifest = _complete(final, key)
    if manifest:
        return dict(dir=final, key=key, reused=True, paths=_paths(final), manifest=manifest)

    start = time.perf_counter()
    world = ensure_toy_world(spec.world, cache_root, log=log)
    world_seconds = time.perf_counter() - start
    with publishing_directory(final) as publication:
        staging = publication.path
        work = os.path.join(staging, '_work')
        paths = _paths(staging)
        # The detector: YOLO labels from the world's train split, its val split for
        # ultralytics' end-of-training validation.
        dataset = export_yolo_dataset(
            os.path.join(work, 'yolo_data'),
            {'train': [(world, INFO_FILES[0])], 'val': [(world, INFO_FILES[1])]},
            spec.label_rules,
        )
        log(f"yolo: training on {dataset['train']['images']} images / {dataset['train']['boxes']} boxes")
        t0 = time.perf_counter()
        yolo_val = train_yolo(dataset['yaml'], paths['yolo'], work, spec.yolo, verbose=verbose)
        yolo_seconds = time.perf_counter() - t0
        log(f'yolo: trained in {yolo_seconds:.0f} s')

        t0 = time.perf_counter()
        crops = collect_gt_crops([(world, INFO_FILES[0])], spec.crop_rules, spec.min_crop_size)
        log(f'clip: training on {len(crops)} crops {crops.counts()}')
        clip = train_clip(crops, paths['clip'], spec.clip, log=log)
        clip_seconds = time.perf_counter() - t0
        log(f'clip: trained in {clip_seconds:.0f} s')
        shutil.rmtree(work)

        manifest = dict(
            version=TRAINED_TOY_MODELS_VERSION,
            key=key,
            inputs=payload,
            files=TRAINED_TOY_MODEL_FILES,
            training_world=dict(root=world, seconds=round(world_seconds, 1)),
            yolo=dict(
                parameters=_yolo_parameters(paths['yolo']),
                bytes=_size(paths['yolo']),
                seconds=round(yolo_seconds, 1),
                dataset={k: v for k, v in dataset.items() if k != 'yaml'},
                training_world_val=yolo_val,
            ),
            clip=dict(bytes=_size(paths['clip']), **clip, seconds_with_data=round(clip_seconds, 1)),
            seconds=round(time.perf_counter() - start, 1),
        )
        write_json_atomic(manifest, os.path.join(staging, MANIFEST))
        if os.path.isdir(final) and not _complete(final, key):
            shutil.rmtree(final)  # a directory of this key without a valid manifest
    # Read back, so that a fresh build and a reused one return the same (JSON) values.
    reused = not publication.published
    return dict(dir=final, key=key, reused=reused, paths=_paths(final), manifest=_complete(final, key))


def _yolo_parameters(path: str) -> int:
    import torch

    checkpoint = torch.load(path, map_location='cpu', weights_only=False)
    model = checkpoint.get('ema') or checkpoint['model']
    return int(sum(p.numel() for p in model.parameters()))


def evaluate_trained_toy_models(
    models_dir: str,
    data_root: str,
    ann_file: str = INFO_FILES[1],
    spec: TrainedToyModelsSpec = TrainedToyModelsSpec(),
    num_threads: Optional[int] = None,
    log: Callable = print,
) -> dict:
    """The trained models' quality on the camera images of ``data_root/ann_file`` (the
    benchmark world's val split): the detector's 2D mAP50 by ultralytics' validator on a
    YOLO-format export of them (``spec.label_rules``), and the embedder's zero-shot class
    accuracy on their GT crops (``spec.crop_rules``), overall and per class.

    Written to ``<models_dir>/metrics.json`` and reused from there while the models and the
    info pickle (by content) are the same.
    """
    from conceptminer3d.mining.stages.embedding import OpenClipEmbedder

    paths = _paths(models_dir)
    ann_path = os.path.join(data_root, ann_file)
    identity = dict(
        data_root=os.path.abspath(data_root),
        ann_file=ann_file,
        ann_sha256=file_sha256(ann_path),
        models={
            name: file_sha256(p) if os.path.isfile(p) else file_sha256(os.path.join(p, 'open_clip_model.safetensors'))
            for name, p in paths.items()
        },
        label_rules=asdict(spec.label_rules),
        crop_rules=asdict(spec.crop_rules),
        imgsz=spec.yolo.imgsz,
    )
    metrics_path = os.path.join(models_dir, METRICS)
    try:
        with open(metrics_path) as f:
            cached = json.load(f)
        if cached.get('eval') == identity:
            return cached
    except (OSError, ValueError):
        pass

    with tempfile.TemporaryDirectory() as tmp:
        dataset = export_yolo_dataset(
            os.path.join(tmp, 'yolo_eval'), {'val': [(data_root, ann_file)]}, spec.label_rules
        )
        log(f"yolo: evaluating on {dataset['val']['images']} images / {dataset['val']['boxes']} boxes")
        yolo = evaluate_yolo(paths['yolo'], dataset['yaml'], imgsz=spec.yolo.imgsz, num_threads=num_threads)
        yolo['dataset'] = dataset['val']
    crops = collect_gt_crops([(data_root, ann_file)], spec.crop_rules, spec.min_crop_size)
    log(f'clip: zero-shot on {len(crops)} GT crops')
    embedder = OpenClipEmbedder(model_name=paths['clip'], pretrained=None)
    clip = zero_shot_accuracy(embedder, crops)
    metrics = dict(eval=identity, yolo=yolo, clip=clip)
    write_json_atomic(metrics, metrics_path)
    return metrics


def link_trained_toy_models(models_dir: str, out: str, copy: bool = False) -> str:
    """Make ``out`` (e.g. ``data/toy_models_trained``, where ``configs/mining/toy_trained.py``
    looks) a symbolic link to ``models_dir``, or with ``copy`` a copy of it. Replaces a link
    or an earlier copy there (recognised by its manifest), never other files."""
    out = os.path.abspath(out)
    if os.path.lexists(out) and not os.path.islink(out):
        if not os.path.isfile(os.path.join(out, MANIFEST)):
            raise FileExistsError(
                f'{out} exists and is not a trained toy models link or copy; choose another --out or remove it'
            )
    os.makedirs(os.path.dirname(out), exist_ok=True)
    tmp = f'{out}.tmp-{os.getpid()}'
    if copy:
        shutil.copytree(models_dir, tmp, symlinks=False)
    else:
        os.symlink(os.path.abspath(models_dir), tmp)
    if os.path.islink(out) and copy:
        os.unlink(out)  # rename() puts a directory over a directory only
    elif os.path.isdir(out) and not os.path.islink(out):
        shutil.rmtree(out)
    os.replace(tmp, out)  # atomic for a link replacing a link
    return out
