"""Where and how the mining models run: device, precision and batch size, chosen per device.

Every model component takes ``device='auto'`` (CUDA when this process can see a GPU, else the
CPU), ``dtype='auto'`` (half precision on a GPU, float32 on the CPU) and ``batch_size=None``
(the component's default for that device). None of them changes which crops are found or
what they mean, so none of them is part of a cache key (see ``identity.result_identity``).
"""

from __future__ import annotations

from typing import Optional, Union

import torch

__all__ = ['resolve_device', 'resolve_dtype', 'batch_size_for', 'RUNTIME_ARGS']

# Component arguments that decide how fast a model runs or where its files are found, not what it outputs.
RUNTIME_ARGS = frozenset({'device', 'dtype', 'batch_size', 'num_threads', 'allow_download', 'cache_dir', 'models_dir'})


def resolve_device(device: Union[str, torch.device, None] = 'auto') -> torch.device:
    """``'auto'`` (or None): this process's current CUDA device when one is visible (under
    torchrun, the rank's own GPU: ``mmengine.dist.init_dist`` selects ``LOCAL_RANK``), else
    the CPU. A bare ``'cuda'`` means the current device too."""
    if isinstance(device, torch.device):
        return device
    if device in (None, 'auto'):
        device = 'cuda' if torch.cuda.is_available() else 'cpu'
    if device == 'cuda' and torch.cuda.is_available():
        return torch.device('cuda', torch.cuda.current_device())
    resolved = torch.device(device)
    if resolved.type == 'cuda' and not torch.cuda.is_available():
        raise RuntimeError(f"device {device!r}: this process sees no CUDA device; use device='auto' or 'cpu'")
    return resolved


def resolve_dtype(dtype: Union[str, torch.dtype], device: torch.device) -> torch.dtype:
    """``'auto'``: bfloat16 on a GPU that supports it (float16 otherwise), float32 on CPU,
    where half precision is slow and not what the models' numbers were checked with."""
    if isinstance(dtype, torch.dtype):
        return dtype
    if dtype == 'auto':
        if device.type == 'cuda':
            return torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float16
        return torch.float32
    resolved = getattr(torch, str(dtype), None)
    if not isinstance(resolved, torch.dtype):
        raise ValueError(f"dtype must be 'auto' or a torch dtype name, got {dtype!r}")
    return resolved


def batch_size_for(batch_size: Optional[int], device: torch.device, cpu: int, cuda: int) -> int:
    """``batch_size`` when given, else the component's default for ``device``'s type."""
    if batch_size is None:
        return cuda if device.type == 'cuda' else cpu
    if int(batch_size) < 1:
        raise ValueError(f'batch_size must be a positive integer or None, got {batch_size!r}')
    return int(batch_size)
