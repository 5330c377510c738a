"""Joint image/text embeddings (CLIP): crops and concept texts in one space.

Config example::

    embedder = dict(type='OpenClipEmbedder', model_name='ViT-B-32', pretrained='laion2b_s34b_b79k')
"""

from __future__ import annotations

import logging
from typing import Callable, List, Optional, Sequence, Tuple, Union

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image
from torchvision.transforms import CenterCrop, Normalize, Resize, ToTensor

from ...registry import EMBEDDERS
from ..models.devices import batch_size_for, resolve_device, resolve_dtype
from ..models.open_clip_models import resolve_open_clip_model

__all__ = ['OpenClipEmbedder']

logger = logging.getLogger('conceptminer3d.mining')


def _is_mode_conversion(step) -> bool:
    return type(step).__name__ == 'MaybeConvertMode'  # open_clip's: a no-op on tensors


@EMBEDDERS.register_module()
class OpenClipEmbedder:
    """An open_clip model that embeds images and texts, L2-normalised.

    Args:
        model_name: an open_clip architecture (``'ViT-B-32'``), a local directory holding
            ``open_clip_config.json`` and weights (also as ``'local-dir:<dir>'``), or
            ``'hf-hub:<org>/<repo>'`` (from the Hugging Face cache).
        pretrained: with an architecture name: a tag (``'laion2b_s34b_b79k'``, from the
            cache), a local checkpoint file, or None for random weights (timing runs). Ignored
            for directories and ``hf-hub:`` names. See ``open_clip_models.resolve_open_clip_model``.
        batch_size: images (or texts) per forward pass; None: 64 on the CPU, 512 on a GPU.
        device: torch device string, or ``'auto'`` (see ``devices.resolve_device``).
        dtype: ``'auto'`` (half precision on a GPU, float32 on the CPU; see
            ``devices.resolve_dtype``) or a torch dtype name. Embeddings are returned as
            float32 whatever the model computes in.
        crop_preprocessing: how ``encode_regions`` prepares crops. ``'tensor'``: cut from the
            decoded image and resized as tensors on ``device`` (each image uploaded once;
            resize, crop and normalisation as open_clip's transform does them, with torch's
            antialiased interpolation instead of PIL's). ``'pil'``: each crop through
            open_clip's PIL transform, as ``encode_images`` does. The two give embeddings whose
            cosine is above 0.999 (not equal bits), so the choice is part of the cache key.
        allow_download: fetch missing weights from the hub.
        cache_dir: Hugging Face cache to look in (default: ``HF_HUB_CACHE``).
        models_dir: where names resolve first (see ``model_loading.resolve_models_dir``).
    """

    default_batch_size = dict(cpu=64, cuda=512)

    def __init__(
        self,
        model_name: str = 'ViT-B-32',
        pretrained: Optional[str] = 'laion2b_s34b_b79k',
        batch_size: Optional[int] = None,
        device: str = 'auto',
        dtype: Union[str, torch.dtype] = 'auto',
        crop_preprocessing: str = 'tensor',
        allow_download: bool = False,
        cache_dir: Optional[str] = None,
        models_dir: Optional[str] = None,
    ):
        import open_clip

        if crop_preprocessing not in ('tensor', 'pil'):
            raise ValueError(f"crop_preprocessing must be 'tensor' or 'pil', got {crop_preprocessing!r}")
        self.crop_preprocessing = crop_preprocessing

        source = self.check_available(model_name, pretrained, allow_download, cache_dir, models_dir)
        self.source, self.device = source, resolve_device(device)
        self.batch_size = batch_size_for(batch_size, self.device, **self.default_batch_size)
        self.dtype = resolve_dtype(dtype, self.device)
        model, _, preprocess = open_clip.create_model_and_transforms(
            source.model_name, pretrained=source.pretrained, device=self.device, **source.preprocess_overrides
        )
        self.model = model.to(self.dtype).eval()
        self.preprocess: Callable[[Image.Image], torch.Tensor] = preprocess
        # torchvision's Resize and CenterCrop take tensors as they take PIL images; Normalize
        # needs floats in [0, 1], which ToTensor makes from a PIL image.
        self._geometry = [
            t for t in preprocess.transforms if not isinstance(t, (Normalize, ToTensor)) and not _is_mode_conversion(t)
        ]
        if crop_preprocessing == 'tensor' and not all(isinstance(t, (Resize, CenterCrop)) for t in self._geometry):
            # open_clip's own steps ('longest' / non-square resize modes) read PIL sizes only.
            logger.warning(
                '%s: its transform %s needs PIL images; crops are preprocessed with PIL', model_name, preprocess
            )
            self.crop_preprocessing = 'pil'
        (normalize,) = [t for t in preprocess.transforms if isinstance(t, Normalize)]
        self._mean = torch.tensor(normalize.mean, device=self.device).view(3, 1, 1)
        self._std = torch.tensor(normalize.std, device=self.device).view(3, 1, 1)
        self.tokenizer = open_clip.get_tokenizer(source.model_name)
        # Architectures keep their output width in different places (text_projection,
        # visual.output_dim, a timm head): one tiny text pass asks the model itself.
        self._embedding_dim = int(self.encode_texts(['']).shape[1])

    @classmethod
    def check_available(
        cls,
        model_name: str = 'ViT-B-32',
        pretrained: Optional[str] = 'laion2b_s34b_b79k',
        allow_download: bool = False,
        cache_dir: Optional[str] = None,
        models_dir: Optional[str] = None,
        **_other_args,
    ):
        """The resolved local source; raises ``ModelUnavailableError`` if it cannot be had
        offline."""
        return resolve_open_clip_model(
            model_name,
            pretrained,
            allow_download=allow_download,
            cache_dir=cache_dir,
            config_key='embedder',
            models_dir=models_dir,
        )

    @property
    def embedding_dim(self) -> int:
        return self._embedding_dim

    @torch.inference_mode()
    def encode_images(self, images: Sequence[Image.Image]) -> np.ndarray:
        """(n, embedding_dim) float32, unit L2 norm; one forward pass per ``batch_size``."""
        chunks: List[np.ndarray] = []
        for start in range(0, len(images), self.batch_size):
            pixels = torch.stack(
                [self.preprocess(image.convert('RGB')) for image in images[start : start + self.batch_size]]
            )
            features = self.model.encode_image(pixels.to(self.device, self.dtype))
            chunks.append(F.normalize(features.float(), dim=-1).cpu().numpy())
        return self._concat(chunks)

    @torch.inference_mode()
    def encode_regions(
        self, images: Sequence[np.ndarray], regions: Sequence[Tuple[int, Tuple[int, int, int, int]]]
    ) -> np.ndarray:
        """Embeddings of image regions: ``regions[i] = (image index, (x1, y1, x2, y2))`` into
        ``images`` (RGB ``uint8`` arrays (H, W, 3)). With ``crop_preprocessing='tensor'`` each
        image is uploaded to the device once and its crops are cut, resized and normalised
        there; returns (len(regions), embedding_dim) float32, unit L2 norm."""
        if self.crop_preprocessing == 'pil':
            return self.encode_images([Image.fromarray(images[i]).crop(box) for i, box in regions])
        on_device = {}
        chunks: List[np.ndarray] = []
        for start in range(0, len(regions), self.batch_size):
            pixels = []
            for i, (x1, y1, x2, y2) in regions[start : start + self.batch_size]:
                if i not in on_device:
                    on_device[i] = torch.from_numpy(np.ascontiguousarray(images[i])).to(self.device).permute(2, 0, 1)
                crop = on_device[i][:, y1:y2, x1:x2]
                for step in self._geometry:
                    crop = step(crop)
                pixels.append((crop.float().div_(255) - self._mean) / self._std)
            features = self.model.encode_image(torch.stack(pixels).to(self.dtype))
            chunks.append(F.normalize(features.float(), dim=-1).cpu().numpy())
        return self._concat(chunks)

    @torch.inference_mode()
    def encode_texts(self, texts: Sequence[str]) -> np.ndarray:
        """(n, embedding_dim) float32, unit L2 norm; one forward pass per ``batch_size``."""
        chunks: List[np.ndarray] = []
        for start in range(0, len(texts), self.batch_size):
            tokens = self.tokenizer(list(texts[start : start + self.batch_size]))
            features = self.model.encode_text(tokens.to(self.device))
            chunks.append(F.normalize(features.float(), dim=-1).cpu().numpy())
        return self._concat(chunks)

    def _concat(self, chunks: List[np.ndarray]) -> np.ndarray:
        if not chunks:
            return np.zeros((0, self._embedding_dim), np.float32)
        return np.concatenate(chunks).astype(np.float32, copy=False)
