"""The toy captioners of ``random_init``: a tiny Qwen2-VL and a tiny BLIP with random weights,
whose tokenizers know a few driving-scene words, and ``build_random_qwen2_vl_2b``, which writes
the default captioner's full architecture with random weights, for timing it without its download.

tokenizers and transformers are imported inside the builder that needs them: each takes seconds
to import, and most callers build nothing.
"""

from __future__ import annotations

import os

import torch

from conceptminer3d.mining.runtime.atomic_files import publishing_directory
from conceptminer3d.mining.stages.captioning import DEFAULT_QWEN2VL_PROMPT

__all__ = [
    'QWEN2_VL_2B_ARCHITECTURE',
    'build_random_qwen2_vl_2b',
    'build_toy_blip',
    'build_toy_qwen2_vl',
]

# Words the toy language models know (their captions are strings of these).
_WORDS = (
    'a an the of in on with and is this it there photo picture image object close up '
    'parked moving road street sidewalk lane near far left right front back side large '
    'small red blue white black grey yellow orange green car truck bus trailer barrier '
    'motorcycle bicycle pedestrian person traffic cone construction vehicle excavator '
    'crane stroller wheelchair animal dog debris others class belongs nuscenes'
).split()
_NUSCENES = ('car truck construction_vehicle bus trailer barrier motorcycle bicycle pedestrian traffic_cone').split()


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
