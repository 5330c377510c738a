"""Captions for object crops from vision-language models (Hugging Face transformers).

Generation is greedy and batched; a caption is the generated text only (never the prompt),
verbatim except for surrounding whitespace.

Config examples::

    captioner = dict(type='Qwen2VLCaptioner', model='models/Qwen2-VL-2B-Instruct')
    captioner = dict(type='BlipCaptioner', model='models/blip-image-captioning-large')
"""

from __future__ import annotations

from typing import List, Optional, Sequence, Union

import torch
from PIL import Image

from ...registry import CAPTIONERS
from ..models.devices import batch_size_for, resolve_device, resolve_dtype
from ..models.hf_models import resolve_hf_model
from .concepts import NUSCENES_CLASSES

__all__ = ['TransformersCaptioner', 'Qwen2VLCaptioner', 'BlipCaptioner', 'DEFAULT_QWEN2VL_PROMPT']

DEFAULT_QWEN2VL_PROMPT = (
    'What is the main object in this image? Describe it in one short sentence, then say which '
    f'nuScenes class it belongs to: {", ".join(NUSCENES_CLASSES)}, or others.'
)


class TransformersCaptioner:
    """Batching, model resolution and greedy decoding shared by the captioners.

    Subclasses load ``self.processor`` / ``self.model`` in ``_load`` and turn one batch of
    images into model inputs in ``_inputs``, returning the inputs and the number of leading
    output tokens that are prompt. Each subclass gives every argument its default and its batch
    sizes per device (``default_batch_size``): the mining pipeline batches crops by
    ``self.batch_size``.

    Args:
        model (str): a local model directory, or a hub repo id found in the Hugging Face cache.
        prompt (str, optional): the text each crop is captioned with (see the subclass).
        max_new_tokens (int): caption length limit, in tokens.
        batch_size (int, optional): crops per ``generate`` call; None: ``default_batch_size``
            for the device.
        device (str): torch device string, or ``'auto'`` (see ``devices.resolve_device``).
        dtype (str | torch.dtype): ``'auto'`` (see ``devices.resolve_dtype``) or a torch dtype name.
        allow_download (bool): fetch a repo id missing from the cache.
        cache_dir (str, optional): Hugging Face cache to look in.
        models_dir (str, optional): where names resolve first (``model_loading.resolve_models_dir``).
    """

    default_model: str = ''
    default_batch_size = dict(cpu=8, cuda=32)

    def __init__(
        self,
        model: str,
        prompt: Optional[str],
        max_new_tokens: int,
        batch_size: Optional[int],
        device: str,
        dtype: Union[str, torch.dtype],
        allow_download: bool,
        cache_dir: Optional[str],
        models_dir: Optional[str] = None,
    ):
        self.model_path = self.check_available(model, allow_download, cache_dir, models_dir)
        self.prompt, self.max_new_tokens = prompt, max_new_tokens
        self.device = resolve_device(device)
        self.batch_size = batch_size_for(batch_size, self.device, **self.default_batch_size)
        self.dtype = resolve_dtype(dtype, self.device)
        self._load()
        self.model.to(self.device).eval()
        # Installed on the model(s) rather than passed to generate(): BLIP's generate() adds
        # its own eos/pad arguments, and transformers warns when both ways are used at once.
        for generator in self._generators():
            generator.generation_config = self._greedy(generator.generation_config)

    @classmethod
    def check_available(
        cls,
        model: Optional[str] = None,
        allow_download: bool = False,
        cache_dir: Optional[str] = None,
        models_dir: Optional[str] = None,
        **_other_args,
    ) -> str:
        """The local model directory; raises ``ModelUnavailableError`` if it cannot be had
        offline."""
        return resolve_hf_model(
            model or cls.default_model,
            allow_download=allow_download,
            cache_dir=cache_dir,
            config_key='captioner.model',
            example_repo=cls.default_model,
            models_dir=models_dir,
        )

    def _load(self) -> None:
        raise NotImplementedError

    def _inputs(self, images: List[Image.Image]):
        raise NotImplementedError

    def _generators(self) -> list:
        """The modules whose ``generate`` runs (their generation configs are used)."""
        return [self.model]

    def _greedy(self, config):
        # The checkpoint's own generation config (eos/pad ids, ...), made greedy: its
        # sampling settings (Qwen ships top_k/top_p/temperature) would otherwise be honoured
        # or warned about.
        config = config.__class__.from_dict(config.to_dict())
        config.do_sample, config.num_beams = False, 1
        config.temperature = config.top_p = config.top_k = None
        config.max_new_tokens = self.max_new_tokens
        if config.pad_token_id is None:
            config.pad_token_id = self.processor.tokenizer.pad_token_id
        return config

    @torch.inference_mode()
    def caption(self, images: Sequence[Image.Image]) -> List[str]:
        """One caption per image, in input order; one ``generate`` call per ``batch_size``."""
        captions: List[str] = []
        for start in range(0, len(images), self.batch_size):
            batch = [image.convert('RGB') for image in images[start : start + self.batch_size]]
            inputs, prompt_length = self._inputs(batch)
            inputs = inputs.to(self.device)
            if 'pixel_values' in inputs:
                inputs['pixel_values'] = inputs['pixel_values'].to(self.dtype)
            output = self.model.generate(**inputs)
            texts = self.processor.batch_decode(output[:, prompt_length:], skip_special_tokens=True)
            captions.extend(text.strip() for text in texts)
        return captions


@CAPTIONERS.register_module()
class Qwen2VLCaptioner(TransformersCaptioner):
    """Qwen2-VL instruct models: the crop and ``prompt`` in one user turn of the chat template.

    Prompts of a batch differ in length (a crop's image tokens depend on its size), so they
    are padded on the left: the generated tokens then start at the same column for every row.

    Args:
        model: a local model directory, or a hub repo id found in the Hugging Face cache.
        prompt: the question asked about each crop.
        max_new_tokens: caption length limit, in tokens.
        batch_size: crops per ``generate`` call; None: 8 on the CPU, 32 on a GPU.
        device: torch device string, or ``'auto'``.
        dtype: ``'auto'`` (see ``devices.resolve_dtype``) or a torch dtype name.
        min_pixels / max_pixels: crops are resized (aspect kept) to hold between these many
            pixels; this sets the number of image tokens (one per 28x28 pixels). None keeps
            the processor's own values. The defaults give small crops at least 16 tokens and
            cap large ones at 256.
        allow_download: fetch a repo id missing from the cache.
        cache_dir: Hugging Face cache to look in.
        models_dir: where names resolve first (``model_loading.resolve_models_dir``).
    """

    default_model = 'Qwen/Qwen2-VL-2B-Instruct'

    def __init__(
        self,
        model: str = 'Qwen/Qwen2-VL-2B-Instruct',
        prompt: str = DEFAULT_QWEN2VL_PROMPT,
        max_new_tokens: int = 64,
        batch_size: Optional[int] = None,
        device: str = 'auto',
        dtype: Union[str, torch.dtype] = 'auto',
        min_pixels: Optional[int] = 112 * 112,
        max_pixels: Optional[int] = 448 * 448,
        allow_download: bool = False,
        cache_dir: Optional[str] = None,
        models_dir: Optional[str] = None,
    ):
        self.min_pixels, self.max_pixels = min_pixels, max_pixels
        super().__init__(
            model, prompt, max_new_tokens, batch_size, device, dtype, allow_download, cache_dir, models_dir
        )

    def _load(self) -> None:
        from transformers import AutoModelForImageTextToText, AutoProcessor

        self.processor = AutoProcessor.from_pretrained(self.model_path, local_files_only=True)
        self.processor.tokenizer.padding_side = 'left'
        size = dict(self.processor.image_processor.size)
        if self.min_pixels is not None:
            size['shortest_edge'] = self.min_pixels
        if self.max_pixels is not None:
            size['longest_edge'] = self.max_pixels
        self.image_size = size
        self.model = AutoModelForImageTextToText.from_pretrained(
            self.model_path, local_files_only=True, dtype=self.dtype
        )
        # Every crop is asked the same question: render the chat template once.
        messages = [{'role': 'user', 'content': [{'type': 'image'}, {'type': 'text', 'text': self.prompt}]}]
        self.chat_prompt = self.processor.apply_chat_template(messages, add_generation_prompt=True, tokenize=False)

    def _inputs(self, images: List[Image.Image]):
        inputs = self.processor(
            text=[self.chat_prompt] * len(images),
            images=images,
            size=self.image_size,
            padding=True,
            padding_side='left',
            return_tensors='pt',
        )
        return inputs, inputs['input_ids'].shape[1]


@CAPTIONERS.register_module()
class BlipCaptioner(TransformersCaptioner):
    """BLIP image captioning, conditioned on a text prefix (``prompt``).

    BLIP's ``generate`` returns its start token and the prefix (without the prefix's final
    [SEP]) before the new tokens; those are dropped, so a caption does not repeat the prefix.

    Args:
        model: a local model directory, or a hub repo id found in the Hugging Face cache.
        prompt: the caption prefix (``'a photo of'``); None or '' for unconditional captions.
        max_new_tokens: caption length limit, in tokens.
        batch_size: crops per ``generate`` call; None: 16 on the CPU, 64 on a GPU.
        device / dtype / allow_download / cache_dir / models_dir: as for ``Qwen2VLCaptioner``.
    """

    default_model = 'Salesforce/blip-image-captioning-large'
    default_batch_size = dict(cpu=16, cuda=64)

    def __init__(
        self,
        model: str = 'Salesforce/blip-image-captioning-large',
        prompt: Optional[str] = 'a photo of',
        max_new_tokens: int = 30,
        batch_size: Optional[int] = None,
        device: str = 'auto',
        dtype: Union[str, torch.dtype] = 'auto',
        allow_download: bool = False,
        cache_dir: Optional[str] = None,
        models_dir: Optional[str] = None,
    ):
        super().__init__(
            model, prompt, max_new_tokens, batch_size, device, dtype, allow_download, cache_dir, models_dir
        )

    def _load(self) -> None:
        from transformers import BlipForConditionalGeneration, BlipProcessor

        self.processor = BlipProcessor.from_pretrained(self.model_path, local_files_only=True)
        self.model = BlipForConditionalGeneration.from_pretrained(
            self.model_path, local_files_only=True, dtype=self.dtype
        )

    def _generators(self) -> list:
        # BlipForConditionalGeneration.generate() encodes the image, then calls its text
        # decoder's generate(), which reads the decoder's own generation config.
        return [self.model, self.model.text_decoder]

    def _inputs(self, images: List[Image.Image]):
        if self.prompt:
            # The same prefix for every image: no padding, equal lengths.
            inputs = self.processor(images=images, text=[self.prompt] * len(images), return_tensors='pt')
            return inputs, inputs['input_ids'].shape[1] - 1
        # Unconditional: generation starts from BLIP's start token alone.
        return self.processor(images=images, return_tensors='pt'), 1
