"""Whether a finished run can be reused: the fingerprint of what its tables depend on."""

from __future__ import annotations

from ..registry import CAPTIONERS, DETECTORS_2D, EMBEDDERS
from .models.identity import result_identity
from .models.model_loading import component_config
from .runtime.hashing import content_key, file_sha256
from .runtime.run_record import plain_config

__all__ = ['run_fingerprint']

_MODEL_REGISTRIES = dict(detector=DETECTORS_2D, embedder=EMBEDDERS, captioner=CAPTIONERS)


def run_fingerprint(cfg, ann_file_path: str) -> str:
    """What a run's tables depend on, without loading a model: the mining config without its
    runtime settings (devices, batch sizes, threads, the models dir) and subset settings, each
    model by its identity (``identity.result_identity``: the weights' content and the options,
    as the caches key it, however its path is spelled), and the info pickle's content. Equal
    fingerprints let a caller reuse a finished run; the images are taken as unchanged
    (``tools/mine.py`` re-checks them).

    Raises:
        ModelUnavailableError: a model of the config is not on this machine.
    """
    config = plain_config(cfg)
    for key in ('subsets', 'num_threads', 'frame_batch_size', 'decode_workers', 'models_dir'):
        config.pop(key, None)
    for key, registry in _MODEL_REGISTRIES.items():
        if config.get(key) is not None:
            config[key] = result_identity(registry, component_config(cfg, key))
    return content_key(dict(config=config, ann_file=file_sha256(ann_file_path)))
