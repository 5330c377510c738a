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
``configs/mining/toy.py`` names the same files. ``build_random_qwen2_vl_2b`` writes the default
captioner's full architecture with random weights, for timing it without its download.

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
from conceptminer3d.mining.stages.captioning import DEFAULT_QWEN2VL_PROMPT

__all__ = [
    'TOY_MODEL_FILES',
    'TOY_MODELS_VERSION',
    'QWEN2_VL_2B_ARCHITECTURE',
    'build_random_qwen2_vl_2b',
    'build_toy_blip',
    'build_toy_clip',
    'build_toy_models',
    'build_toy_qwen2_vl',
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

# Words the toy language models know (their captions are strings of these).
_WORDS = (
    'a an the of in on with and is this it there photo picture image object close up '
    'parked moving road street sidewalk lane near far left right front back side large '
    'small red blue white black grey yellow orange green car truck bus trailer barrier '
    'motorcycle bicycle pedestrian person traffic cone construction vehicle excavator '
    'crane stroller wheelchair animal dog debris others class belongs nuscenes'
).split()
_NUSCENES = ('car truck construction_vehicle bus trailer barrier motorcycle bicycle pedestrian traffic_cone').split()


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


# --------------------------------------------------------------------------- Qwen2-VL
QWEN_SPECIAL_TOKENS = (
    '<|endoftext|>',
    '<|im_start|>',
    '<|im_end|>',
    '<|vision_start|>',
    '<|vision_end|>',
    '<|image_pad|>',
    '<|video_pad|>',
)
# The chat template of Qwen/Qwen2-VL-2B-Instruct (chat_template.json), verbatim.
QWEN2VL_CHAT_TEMPLATE = (
    "{% set image_count = namespace(value=0) %}{% set video_count = namespace(value=0) %}"
    "{% for message in messages %}{% if loop.first and message['role'] != 'system' %}"
    "<|im_start|>system\nYou are a helpful assistant.<|im_end|>\n{% endif %}"
    "<|im_start|>{{ message['role'] }}\n{% if message['content'] is string %}"
    "{{ message['content'] }}<|im_end|>\n{% else %}{% for content in message['content'] %}"
    "{% if content['type'] == 'image' or 'image' in content or 'image_url' in content %}"
    "{% set image_count.value = image_count.value + 1 %}{% if add_vision_id %}"
    "Picture {{ image_count.value }}: {% endif %}<|vision_start|><|image_pad|><|vision_end|>"
    "{% elif content['type'] == 'video' or 'video' in content %}"
    "{% set video_count.value = video_count.value + 1 %}{% if add_vision_id %}"
    "Video {{ video_count.value }}: {% endif %}<|vision_start|><|video_pad|><|vision_end|>"
    "{% elif 'text' in content %}{{ content['text'] }}{% endif %}{% endfor %}<|im_end|>\n"
    "{% endif %}{% endfor %}{% if add_generation_prompt %}<|im_start|>assistant\n{% endif %}"
)


def _qwen_tokenizer():
    """A byte-level BPE tokenizer trained on a few sentences, with Qwen's special tokens."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import PreTrainedTokenizerFast

    corpus = [DEFAULT_QWEN2VL_PROMPT, 'You are a helpful assistant.', ' '.join(_WORDS), ' '.join(_NUSCENES)] * 4 + [
        f'this is a {w}' for w in _WORDS + _NUSCENES
    ]
    bpe = Tokenizer(models.BPE())
    bpe.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    bpe.decoder = decoders.ByteLevel()
    bpe.train_from_iterator(
        corpus,
        trainers.BpeTrainer(
            vocab_size=640,
            special_tokens=list(QWEN_SPECIAL_TOKENS),
            show_progress=False,
            initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        ),
    )
    tokenizer = PreTrainedTokenizerFast(
        tokenizer_object=bpe,
        eos_token='<|im_end|>',
        pad_token='<|endoftext|>',
        additional_special_tokens=list(QWEN_SPECIAL_TOKENS[1:]),
        padding_side='left',
        model_max_length=32768,
        clean_up_tokenization_spaces=False,
    )
    tokenizer.chat_template = QWEN2VL_CHAT_TEMPLATE
    return tokenizer


def _keep_word_outputs(lm_head: torch.nn.Linear, tokenizer, keep_ids) -> None:
    """Zero the output rows of all tokens but the toy words (and ``keep_ids``): a random model
    then writes strings of driving-scene words instead of byte soup, which keeps toy captions
    readable and gives the text encoder and concept scoring something word-like."""
    words = set(_WORDS) | set(_NUSCENES)
    keep = torch.zeros(lm_head.weight.shape[0], dtype=torch.bool)
    for token, index in tokenizer.get_vocab().items():
        if token.startswith('Ġ') and token[1:] in words:  # 'Ġ' is byte-level BPE's space
            keep[index] = True
    keep[list(keep_ids)] = True
    with torch.no_grad():
        lm_head.weight[~keep] = 0


# Architectures for ``_build_qwen2_vl``: the language model (head_dim / 2 = sum of the mrope
# sections) and the vision tower.
_TOY_QWEN2_VL = dict(
    text=dict(
        hidden_size=32,
        intermediate_size=64,
        num_hidden_layers=2,
        num_attention_heads=2,
        num_key_value_heads=1,
        max_position_embeddings=4096,
        tie_word_embeddings=False,
        mrope_section=[2, 3, 3],
    ),
    vision=dict(depth=2, embed_dim=32, num_heads=2, mlp_ratio=2),
)
# Qwen/Qwen2-VL-2B-Instruct's published config.json: a Qwen2-1.5B language model and a
# 32-block ViT (about 2.2 B parameters together). Random weights cost what the real ones do.
QWEN2_VL_2B_ARCHITECTURE = dict(
    text=dict(
        hidden_size=1536,
        intermediate_size=8960,
        num_hidden_layers=28,
        num_attention_heads=12,
        num_key_value_heads=2,
        max_position_embeddings=32768,
        tie_word_embeddings=True,
        vocab_size=151936,
        mrope_section=[16, 24, 24],
    ),
    vision=dict(depth=32, embed_dim=1280, num_heads=16, mlp_ratio=4),
)


def _build_qwen2_vl(directory: str, seed: int, architecture: dict, dtype: torch.dtype, keep_ids) -> None:
    """A random Qwen2-VL of ``architecture`` with the toy tokenizer and Qwen's processor and
    chat template, saved with ``save_pretrained``. Only the toy words and ``keep_ids`` (names
    of special tokens) can be generated."""
    from transformers import Qwen2VLConfig, Qwen2VLForConditionalGeneration, Qwen2VLImageProcessor, Qwen2VLProcessor
    from transformers.models.qwen2_vl.video_processing_qwen2_vl import Qwen2VLVideoProcessor

    tokenizer = _qwen_tokenizer()
    ids = {token: tokenizer.convert_tokens_to_ids(token) for token in QWEN_SPECIAL_TOKENS}
    processor = Qwen2VLProcessor(
        image_processor=Qwen2VLImageProcessor(min_pixels=56 * 56, max_pixels=28 * 28 * 256),
        tokenizer=tokenizer,
        video_processor=Qwen2VLVideoProcessor(),
        chat_template=QWEN2VL_CHAT_TEMPLATE,
    )
    text = dict(architecture['text'])
    mrope_section = text.pop('mrope_section')
    text.setdefault('vocab_size', len(tokenizer))
    config = Qwen2VLConfig(
        text_config=dict(
            text,
            rope_parameters={'rope_type': 'default', 'rope_theta': 1e6, 'mrope_section': mrope_section},
            bos_token_id=ids['<|endoftext|>'],
            eos_token_id=ids['<|im_end|>'],
            pad_token_id=ids['<|endoftext|>'],
        ),
        vision_config=dict(
            architecture['vision'],
            hidden_size=text['hidden_size'],
            patch_size=14,
            spatial_merge_size=2,
            temporal_patch_size=2,
        ),
        image_token_id=ids['<|image_pad|>'],
        video_token_id=ids['<|video_pad|>'],
        vision_start_token_id=ids['<|vision_start|>'],
        vision_end_token_id=ids['<|vision_end|>'],
        tie_word_embeddings=text['tie_word_embeddings'],
    )
    torch.manual_seed(seed)
    model = Qwen2VLForConditionalGeneration(config).eval()
    _keep_word_outputs(model.lm_head, tokenizer, keep_ids=[ids[name] for name in keep_ids])
    model.generation_config.do_sample = False
    model.to(dtype).save_pretrained(directory)
    processor.save_pretrained(directory)


def build_toy_qwen2_vl(directory: str, seed: int = 0) -> None:
    """A tiny Qwen2-VL and its processor, saved with ``save_pretrained`` in ``directory``."""
    _build_qwen2_vl(directory, seed, _TOY_QWEN2_VL, torch.float32, keep_ids=['<|im_end|>'])


def build_random_qwen2_vl_2b(directory: str, seed: int = 0) -> str:
    """Qwen2-VL-2B-Instruct's architecture with random weights (saved in bfloat16: 4.2 GiB),
    for timing the default captioner without its download: ``captioner.model`` may name
    ``directory``. Its captions never end early (the end token cannot be generated), so every
    caption is ``max_new_tokens`` long: the slowest case. The tokenizer is the toy one: the
    output layer still scores all 151,936 tokens, and the prompt splits into somewhat more
    tokens than Qwen's own tokenizer makes of it (a slightly longer prefill)."""
    if not os.path.isfile(os.path.join(directory, 'config.json')):
        with publishing_directory(directory) as publication, torch.random.fork_rng(devices=[]):
            _build_qwen2_vl(publication.path, seed, QWEN2_VL_2B_ARCHITECTURE, torch.bfloat16, keep_ids=[])
    return os.path.abspath(directory)


# --------------------------------------------------------------------------- BLIP
def build_toy_blip(directory: str, seed: int = 0) -> None:
    """A tiny BLIP captioner and its processor, saved with ``save_pretrained``."""
    from transformers import BertTokenizer, BlipConfig, BlipForConditionalGeneration, BlipImageProcessor, BlipProcessor

    # A WordPiece vocabulary of whole words only: unknown words become [UNK] (dropped when
    # decoding), so the random decoder can only write words. [DEC] is BLIP's start token.
    specials = ['[PAD]', '[UNK]', '[CLS]', '[SEP]', '[MASK]']
    words = sorted(set(_WORDS) | {w.replace('_', ' ') for w in _NUSCENES} - set(specials))
    words = sorted({part for w in words for part in w.split()})
    vocab = {token: i for i, token in enumerate(specials + words + ['[DEC]'])}
    tokenizer = BertTokenizer(vocab=vocab, do_lower_case=True, model_max_length=512, bos_token='[DEC]')
    processor = BlipProcessor(image_processor=BlipImageProcessor(size={'height': 64, 'width': 64}), tokenizer=tokenizer)
    # initializer_range 0.2 (BLIP's vision default is 1e-10): with near-zero image features the
    # decoder would ignore the image and give every crop the same caption.
    config = BlipConfig(
        text_config=dict(
            vocab_size=len(vocab),
            hidden_size=32,
            encoder_hidden_size=32,
            intermediate_size=64,
            num_hidden_layers=2,
            num_attention_heads=2,
            max_position_embeddings=64,
            initializer_range=0.2,
            bos_token_id=vocab['[DEC]'],
            pad_token_id=vocab['[PAD]'],
            sep_token_id=vocab['[SEP]'],
            eos_token_id=vocab['[SEP]'],
        ),
        vision_config=dict(
            hidden_size=32,
            intermediate_size=64,
            num_hidden_layers=2,
            num_attention_heads=2,
            image_size=64,
            patch_size=16,
            initializer_range=0.2,
        ),
        projection_dim=32,
    )
    torch.manual_seed(seed)
    model = BlipForConditionalGeneration(config).eval()
    model.save_pretrained(directory)
    processor.save_pretrained(directory)


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
