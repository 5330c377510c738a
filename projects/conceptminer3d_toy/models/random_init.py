"""Tiny random-initialised stand-ins for the miner's models, built offline and saved in the
real formats, so tests and demos run the same loading and inference code as real weights.

* YOLO: YOLOv8n (``yolov8n.yaml``) with COCO class names, saved as an ultralytics ``.pt``.
* CLIP: a small open_clip ViT in a directory with ``open_clip_config.json`` (loaded through
  open_clip's ``local-dir:`` path); the BPE tokenizer ships inside open_clip.
* Qwen2-VL: a ~0.1 M-parameter Qwen2-VL with its processor and a byte-level BPE tokenizer,
  trained here, that carries Qwen's special tokens and chat template.
* BLIP: a tiny BLIP captioner with its processor and a word-level WordPiece vocabulary.

Their outputs are meaningless but deterministic, image-dependent, and shaped like the real
ones. ``build_toy_models(out_dir)`` writes all four and returns their paths;
``configs/mining/toy.py`` names the same files. YOLO and CLIP are built here, the two captioners
in ``random_init_captioners``.

ultralytics, open_clip, tokenizers and transformers are imported inside the builder that
needs them: each takes seconds to import, and most callers build nothing.
"""

from __future__ import annotations

import copy
import json
import os
import shutil
from typing import Dict

import numpy as np
import torch

from conceptminer3d.mining.runtime.atomic_files import publishing_directory, write_text_atomic

from .random_init_captioners import build_toy_blip, build_toy_qwen2_vl

__all__ = [
    'TOY_MODEL_FILES',
    'TOY_MODELS_VERSION',
    'build_toy_clip',
    'build_toy_models',
    'build_toy_yolo',
]

# Bump when what the builders write changes: existing builds are then rebuilt.
TOY_MODELS_VERSION = 2
MANIFEST = 'toy_models.json'
TOY_MODEL_FILES = {
    'yolo': 'yolov8n-toy.pt',
    'clip': 'clip-toy',
    'qwen2_vl': 'qwen2-vl-toy',
    'blip': 'blip-toy',
}


def _synthetic_scenes(rng: np.random.Generator, count: int, size: int) -> np.ndarray:
    """(count, size, size, 3) uint8: flat backgrounds with coloured boxes, like the toy
    world's camera images."""
    images = np.empty((count, size, size, 3), np.uint8)
    for image in images:
        image[:] = rng.integers(0, 256, 3)
        image[size // 2 :] = rng.integers(0, 256, 3)  # a 'road' below the horizon
        for _ in range(int(rng.integers(3, 8))):
            h, w = rng.integers(size // 16, size // 2, 2)
            y, x = rng.integers(0, size - h), rng.integers(0, size - w)
            image[y : y + h, x : x + w] = rng.integers(0, 256, 3)
    return images


# --------------------------------------------------------------------------- YOLO
def build_toy_yolo(path: str, seed: int = 0) -> None:
    """YOLOv8n with random weights, saved as an ultralytics checkpoint at ``path``."""
    import yaml
    from ultralytics import YOLO
    from ultralytics.utils import ROOT

    torch.manual_seed(seed)
    model = YOLO('yolov8n.yaml', task='detect', verbose=False).model
    with open(ROOT / 'cfg' / 'datasets' / 'coco.yaml') as f:
        model.names = dict(yaml.safe_load(f)['names'])

    # With PyTorch's default init the activations shrink layer by layer and vanish before the
    # head: every image would get the same boxes and scores, which tests nothing. Setting the
    # BatchNorm statistics from synthetic scenes keeps every layer at unit scale, so the
    # output depends on the image. The class-score prior (ultralytics' bias init) stays.
    scenes = _synthetic_scenes(np.random.default_rng(seed), 8, 256)
    batch = torch.from_numpy(scenes).permute(0, 3, 1, 2).float() / 255
    for module in model.modules():
        if isinstance(module, torch.nn.BatchNorm2d):
            module.reset_running_stats()
            module.momentum = None  # cumulative average over the calibration pass
    model.train()
    with torch.no_grad():
        model(batch)
    for module in model.modules():
        if isinstance(module, torch.nn.BatchNorm2d):
            module.momentum = 0.03  # ultralytics' value, should anyone train it
    model.eval()

    # The fields ultralytics' load_checkpoint reads; no date, so rebuilds are identical.
    checkpoint = {'model': copy.deepcopy(model).half(), 'ema': None, 'train_args': {}, 'epoch': -1, 'optimizer': None}
    torch.save(checkpoint, path)


# --------------------------------------------------------------------------- open_clip
TOY_CLIP_CONFIG = {
    'embed_dim': 64,
    'vision_cfg': {'image_size': 64, 'layers': 2, 'width': 64, 'head_width': 32, 'patch_size': 16},
    # vocab_size and context_length of open_clip's bundled BPE tokenizer.
    'text_cfg': {'context_length': 77, 'vocab_size': 49408, 'width': 32, 'heads': 2, 'layers': 2},
}


def build_toy_clip(directory: str, seed: int = 0) -> None:
    """A small open_clip CLIP in ``directory`` (``open_clip_config.json`` + safetensors)."""
    import open_clip
    from open_clip.constants import OPENAI_DATASET_MEAN, OPENAI_DATASET_STD
    from safetensors.torch import save_file

    os.makedirs(directory, exist_ok=True)
    torch.manual_seed(seed)
    model = open_clip.CLIP(**copy.deepcopy(TOY_CLIP_CONFIG))
    config = {
        'model_cfg': TOY_CLIP_CONFIG,
        'preprocess_cfg': {
            'mean': list(OPENAI_DATASET_MEAN),
            'std': list(OPENAI_DATASET_STD),
            'interpolation': 'bicubic',
            'resize_mode': 'shortest',
        },
    }
    with open(os.path.join(directory, 'open_clip_config.json'), 'w') as f:
        json.dump(config, f, indent=2)
    state = {k: v.detach().contiguous() for k, v in model.state_dict().items()}
    save_file(state, os.path.join(directory, 'open_clip_model.safetensors'))


# --------------------------------------------------------------------------- all of them
_BUILDERS = {'yolo': build_toy_yolo, 'clip': build_toy_clip, 'qwen2_vl': build_toy_qwen2_vl, 'blip': build_toy_blip}


def _complete_build(out_dir: str, seed: int):
    """The paths of a finished build of this seed and version in ``out_dir``, else None."""
    try:
        with open(os.path.join(out_dir, MANIFEST)) as f:
            manifest = json.load(f)
    except (OSError, ValueError):
        return None
    if manifest.get('seed') != seed or manifest.get('version') != TOY_MODELS_VERSION:
        return None
    paths = {key: os.path.join(out_dir, name) for key, name in manifest['files'].items()}
    return paths if all(os.path.exists(p) for p in paths.values()) else None


def build_toy_models(out_dir: str, seed: int = 0) -> Dict[str, str]:
    """Write the four toy models into ``out_dir``; return their paths.

    Returns:
        ``{'yolo': <dir>/yolov8n-toy.pt, 'clip': <dir>/clip-toy, 'qwen2_vl':
        <dir>/qwen2-vl-toy, 'blip': <dir>/blip-toy}`` (absolute paths): the values a mining
        config gives as ``detector.model``, ``embedder.model_name``, and ``captioner.model``
        (``configs/mining/toy.py`` expects them under its ``toy_models`` directory).

    A complete build of the same seed (and builder version) is reused as it is. Otherwise
    everything is built in a temporary sibling directory and renamed into place, so
    ``out_dir`` never holds a half-written set. The same seed gives the same weights.
    """
    out_dir = os.path.abspath(out_dir)
    existing = _complete_build(out_dir, seed)
    if existing:
        return existing
    known = set(TOY_MODEL_FILES.values()) | {MANIFEST}
    if os.path.isdir(out_dir) and not set(os.listdir(out_dir)) <= known:
        # Replacing it below would delete files that are not ours.
        raise FileExistsError(f'{out_dir} holds files other than toy models; choose an empty or new directory')
    with publishing_directory(out_dir) as publication:
        # Seeded inside a forked RNG: building models must not reset the caller's RNG stream.
        with torch.random.fork_rng(devices=[]):
            for key, build in _BUILDERS.items():
                build(os.path.join(publication.path, TOY_MODEL_FILES[key]), seed)
        manifest = {'version': TOY_MODELS_VERSION, 'seed': seed, 'files': TOY_MODEL_FILES}
        write_text_atomic(json.dumps(manifest, indent=2), os.path.join(publication.path, MANIFEST))
        if os.path.exists(out_dir) and _complete_build(out_dir, seed) is None:
            shutil.rmtree(out_dir)  # an incomplete or outdated toy build (checked above)
    built = _complete_build(out_dir, seed)  # ours, or the same build another process finished first
    if built is None:
        raise RuntimeError(f'{out_dir}: another process left an incomplete toy model build there')
    return built
