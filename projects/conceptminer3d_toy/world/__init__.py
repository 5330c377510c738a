"""A small, deterministic world in the real nuScenes on-disk format (see ``generator.py``)."""

from __future__ import annotations

import os
import shutil

from conceptminer3d.mining.runtime.atomic_files import publishing_directory

from .config import PRESETS, ToyWorldConfig
from .generator import generate_toy_world

__all__ = ['PRESETS', 'ToyWorldConfig', 'generate_toy_world', 'build_toy_dataset']


def build_toy_dataset(
    out_dir: str, config: ToyWorldConfig, convert: bool = True, overwrite: bool = False, progress: bool = True
) -> dict:
    """Generate the world and (optionally) convert it with mmdet3d's converter.

    Everything is written to ``<out_dir>.partial`` and moved into place at the end, so
    ``out_dir`` is either a complete dataset or absent.
    """
    config.validate()
    out_dir = os.path.abspath(out_dir)
    if os.path.exists(out_dir) and os.listdir(out_dir) and not overwrite:
        raise FileExistsError(f'{out_dir} exists and is not empty; pass overwrite=True (--overwrite) to replace it')
    with publishing_directory(out_dir) as publication:
        counts = generate_toy_world(publication.path, config, progress=progress)
        if convert:
            from conceptminer3d.datasets.nuscenes_conversion import convert_nuscenes

            convert_nuscenes(publication.path, config.version)
        if os.path.exists(out_dir):  # checked above: empty, or to be overwritten
            shutil.rmtree(out_dir)
    return counts
