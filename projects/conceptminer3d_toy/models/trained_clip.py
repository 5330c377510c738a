"""A small open_clip model trained contrastively on a toy world's GT crops, and its zero-shot
class accuracy.

Each crop is paired with a short text naming its class ("a photo of a bicycle", "a
bicycle", ...). A batch holds many crops of one class, so the usual CLIP loss, which takes
every other pair of the batch as a negative, would push a bicycle away from "a bicycle" of
the next row. The loss here is CLIP's symmetric cross-entropy with the class as the unit:
each crop against one text per class (image → text), and each class's text against the
batch's crops, all crops of that class being positives (text → image). Texts that name
concepts of the mining vocabulary absent from the toy world (``negative_concepts``) are
scored as further wrong answers, so that the text tower has seen them and the images learn
not to match them. Crops are drawn class-balanced, so the rare classes get as many steps as
cars.

The model is saved as a directory with ``open_clip_config.json`` and safetensors weights,
which ``OpenClipEmbedder`` loads by path like any open_clip hub model; the preprocessing
used in training is the one that config gives the embedder.
"""

from __future__ import annotations

import copy
import json
import os
import time
from dataclasses import asdict, dataclass
from typing import Dict, Optional, Sequence, Tuple

import numpy as np
import torch
import torch.nn.functional as F

from conceptminer3d.mining.stages.concepts import ConceptVocabulary

from .trained_data import CLASSES, GtCrops

__all__ = ['ClipTrainSettings', 'TRAINED_CLIP_CONFIG', 'train_clip', 'zero_shot_accuracy']

# A ModifiedResNet image tower (``layers`` as a list selects it in open_clip): convolutions
# learn the toy world's colours and shapes from a few thousand crops far sooner than a ViT
# of the same size. Texts are a handful of tokens, hence the short context.
TRAINED_CLIP_CONFIG = {
    'embed_dim': 64,
    'vision_cfg': {'image_size': 64, 'layers': [1, 1, 1, 1], 'width': 16},
    # vocab_size of open_clip's bundled BPE tokenizer.
    'text_cfg': {'context_length': 16, 'vocab_size': 49408, 'width': 64, 'heads': 4, 'layers': 2},
}
# 'squash': the whole box, whatever its shape, as the detector cut it (the default 'shortest'
# resize would centre-crop a standing pedestrian to its torso).
TRAINED_CLIP_PREPROCESS = {'interpolation': 'bicubic', 'resize_mode': 'squash'}
TEMPLATES = ('a photo of a {}', 'a {}', 'a picture of a {}', 'an image of a {}', 'a {} in a street scene')


@dataclass(frozen=True)
class ClipTrainSettings:
    """Contrastive training settings (part of the trained models' cache key).

    Args:
        epochs: passes of ``len(crops)`` class-balanced draws.
        batch_size: crops per step.
        lr, weight_decay, warmup_steps: AdamW with linear warm-up, then cosine decay to 0.
        max_padding: each crop is cut with a random padding in [0, max_padding] of its box
            per side (the pipeline pads detections by 0.05).
        negative_concepts: texts with no crops, scored as wrong answers for every crop.
        seed: sampling, augmentation and initialisation.
        num_threads: torch threads while training; None: all cores. Not part of the key.
    """

    epochs: int = 10
    batch_size: int = 128
    lr: float = 2e-3
    weight_decay: float = 0.05
    warmup_steps: int = 50
    max_padding: float = 0.15
    negative_concepts: Tuple[str, ...] = ('traffic_light', 'traffic_sign')
    seed: int = 0
    num_threads: Optional[int] = None

    def key(self) -> dict:
        out = asdict(self)
        del out['num_threads']
        return out


def _preprocess_cfg() -> dict:
    from open_clip.constants import OPENAI_DATASET_MEAN, OPENAI_DATASET_STD

    return {
        'size': TRAINED_CLIP_CONFIG['vision_cfg']['image_size'],
        'mean': list(OPENAI_DATASET_MEAN),
        'std': list(OPENAI_DATASET_STD),
        **TRAINED_CLIP_PREPROCESS,
    }


def _texts(names: Sequence[str], rng: np.random.Generator) -> list:
    return [TEMPLATES[int(rng.integers(len(TEMPLATES)))].format(name.replace('_', ' ')) for name in names]


def _class_level_clip_loss(
    image_emb: torch.Tensor, text_emb: torch.Tensor, labels: torch.Tensor, logit_scale: torch.Tensor
) -> torch.Tensor:
    """Symmetric InfoNCE with classes as the unit; ``text_emb`` rows are the classes (then
    the negative concepts), ``labels`` index them."""
    logits = logit_scale * image_emb @ text_emb.t()  # (batch, texts)
    image_to_text = F.cross_entropy(logits, labels)
    log_p = F.log_softmax(logits, dim=0)  # over the batch's crops, per text
    present = labels.unique()
    positives = (labels[:, None] == present[None, :]).float()  # (batch, present classes)
    text_to_image = -((log_p[:, present] * positives).sum(0) / positives.sum(0)).mean()
    return (image_to_text + text_to_image) / 2


def train_clip(crops: GtCrops, out_dir: str, settings: ClipTrainSettings = ClipTrainSettings(), log=None) -> dict:
    """Train the ``TRAINED_CLIP_CONFIG`` model on ``crops`` and save it in ``out_dir``.

    Returns:
        dict: parameters, steps, seconds and the last epoch's mean loss.
    """
    import open_clip
    from open_clip.transform import PreprocessCfg, image_transform_v2
    from safetensors.torch import save_file

    if not len(crops):
        raise ValueError('no GT crops to train the embedder on')
    rng = np.random.default_rng(settings.seed)
    preprocess_cfg = _preprocess_cfg()
    preprocess = image_transform_v2(PreprocessCfg(**preprocess_cfg), is_train=False)
    tokenizer = open_clip.get_tokenizer('ViT-B-32', context_length=TRAINED_CLIP_CONFIG['text_cfg']['context_length'])
    names = list(CLASSES) + [c for c in settings.negative_concepts if c not in CLASSES]

    counts = np.bincount(crops.labels, minlength=len(CLASSES)).astype(np.float64)
    weights = 1.0 / counts[crops.labels]
    weights /= weights.sum()
    steps_per_epoch = max(1, len(crops) // settings.batch_size)
    total_steps = steps_per_epoch * settings.epochs

    before = torch.get_num_threads()
    torch.set_num_threads(settings.num_threads or os.cpu_count() or 1)
    start = time.perf_counter()
    try:
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(settings.seed)
            model = open_clip.CLIP(**copy.deepcopy(TRAINED_CLIP_CONFIG)).train()
            optimizer = torch.optim.AdamW(model.parameters(), lr=settings.lr, weight_decay=settings.weight_decay)
            schedule = torch.optim.lr_scheduler.LambdaLR(
                optimizer,
                lambda step: min(
                    (step + 1) / settings.warmup_steps, 0.5 * (1 + np.cos(np.pi * min(step, total_steps) / total_steps))
                ),
            )
            epoch_losses = []
            for epoch in range(settings.epochs):
                losses = []
                for _ in range(steps_per_epoch):
                    idx = rng.choice(len(crops), size=settings.batch_size, p=weights)
                    pixels = torch.stack([preprocess(_augment(crops, int(i), settings.max_padding, rng)) for i in idx])
                    labels = torch.as_tensor(crops.labels[idx])
                    image_emb = F.normalize(model.encode_image(pixels), dim=-1)
                    text_emb = F.normalize(model.encode_text(tokenizer(_texts(names, rng))), dim=-1)
                    loss = _class_level_clip_loss(image_emb, text_emb, labels, model.logit_scale.exp().clamp(max=100))
                    optimizer.zero_grad()
                    loss.backward()
                    optimizer.step()
                    schedule.step()
                    losses.append(float(loss.detach()))
                epoch_losses.append(float(np.mean(losses)))
                if log:
                    log(f'clip epoch {epoch + 1}/{settings.epochs}: loss {epoch_losses[-1]:.3f}')
            _calibrate_batch_norm(model, crops, preprocess, settings.batch_size, rng)
    finally:
        torch.set_num_threads(before)
    seconds = time.perf_counter() - start

    model.eval()
    os.makedirs(out_dir, exist_ok=True)
    with open(os.path.join(out_dir, 'open_clip_config.json'), 'w') as f:
        json.dump(
            {
                'model_cfg': TRAINED_CLIP_CONFIG,
                'preprocess_cfg': {k: v for k, v in preprocess_cfg.items() if k != 'size'},
            },
            f,
            indent=2,
        )
    save_file(
        {k: v.detach().contiguous() for k, v in model.state_dict().items()},
        os.path.join(out_dir, 'open_clip_model.safetensors'),
    )
    return dict(
        parameters=int(sum(p.numel() for p in model.parameters())),
        crops=len(crops),
        crops_per_class=crops.counts(),
        steps=total_steps,
        seconds=round(seconds, 1),
        loss_per_epoch=[round(v, 4) for v in epoch_losses],
    )


@torch.no_grad()
def _calibrate_batch_norm(
    model, crops: GtCrops, preprocess, batch_size: int, rng: np.random.Generator, max_batches: int = 16
) -> None:
    """Set the image tower's BatchNorm statistics to plain averages over (up to
    ``max_batches``) batches of unaugmented crops in their natural class mix: after a few
    hundred steps, the running averages still carry their initial values and the
    class-balanced draws, and the model in eval mode would not be the model trained."""
    norms = [m for m in model.visual.modules() if isinstance(m, torch.nn.modules.batchnorm._BatchNorm)]
    if not norms:
        return
    for norm in norms:
        norm.reset_running_stats()
        norm.momentum = None  # cumulative average
    order = rng.permutation(len(crops))[: batch_size * max_batches]
    model.visual.train()
    for start in range(0, len(order), batch_size):
        batch = order[start : start + batch_size]
        model.visual(torch.stack([preprocess(crops.cut(int(i), 0.05)) for i in batch]))
    for norm in norms:
        norm.momentum = 0.1


def _augment(crops: GtCrops, i: int, max_padding: float, rng: np.random.Generator):
    """Crop ``i`` with a random padding per side and a random horizontal flip."""
    from PIL import Image

    image = crops.images[i]
    x1, y1, x2, y2 = crops.boxes[i]
    w, h = x2 - x1, y2 - y1
    pad = rng.uniform(0, max_padding, 4)
    box = (
        max(0, int(np.floor(x1 - pad[0] * w))),
        max(0, int(np.floor(y1 - pad[1] * h))),
        min(image.width, int(np.ceil(x2 + pad[2] * w))),
        min(image.height, int(np.ceil(y2 + pad[3] * h))),
    )
    out = image.crop(box)
    return out.transpose(Image.FLIP_LEFT_RIGHT) if rng.random() < 0.5 else out


def zero_shot_accuracy(embedder, crops: GtCrops, padding: float = 0.05) -> Dict[str, object]:
    """Zero-shot classification of GT crops: argmax over the ten classes' prompts, written as
    the mining vocabulary writes them ("a photo of a {class}").

    Args:
        embedder: an ``OpenClipEmbedder`` (or anything with ``encode_images``/``encode_texts``).
        crops: the GT crops, cut again with ``padding`` as the pipeline cuts detections.

    Returns:
        dict: ``accuracy`` (over crops), ``balanced_accuracy`` (mean over classes with
        crops), ``chance`` (1 / number of classes), ``per_class`` (class → accuracy, crops).
    """
    prompts = ConceptVocabulary(concepts=CLASSES, target=(), common=()).prompts()
    text_emb = embedder.encode_texts(prompts)
    image_emb = embedder.encode_images([crops.cut(i, padding) for i in range(len(crops))])
    predicted = np.argmax(image_emb @ text_emb.T, axis=1) if len(crops) else np.zeros(0, np.int64)
    correct = predicted == crops.labels
    per_class = {}
    for i, name in enumerate(CLASSES):
        mask = crops.labels == i
        if mask.any():
            per_class[name] = dict(accuracy=float(correct[mask].mean()), crops=int(mask.sum()))
    return dict(
        accuracy=float(correct.mean()) if len(crops) else float('nan'),
        balanced_accuracy=float(np.mean([v['accuracy'] for v in per_class.values()])) if per_class else float('nan'),
        chance=1.0 / len(CLASSES),
        crops=len(crops),
        per_class=per_class,
    )
