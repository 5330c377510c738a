"""The arms of the benchmark: which training set, by world, names which config of this repo.

An arm is a training set (or a way of sampling one); the configs of an arm differ from the
``full`` arm's only in that. Adding an arm is one line in ``ARMS``.
"""

from __future__ import annotations

import os
from typing import Dict, Optional

__all__ = [
    'ARMS',
    'BASELINE_ARM',
    'GROUND_TRUTH_ARMS',
    'WORLDS',
    'arm_config',
    'arm_of_config',
    'default_config_dir',
    'world_of_config',
]

WORLDS = ('toy', 'nuscenes')
BASELINE_ARM = 'full'  # ratios are taken to this arm's mean

# arm -> world -> config file under configs/
ARMS: Dict[str, Dict[str, str]] = {
    'full': dict(toy='centerpoint_full_toy.py', nuscenes='centerpoint_full.py'),
    'random20': dict(toy='centerpoint_random20_toy.py', nuscenes='centerpoint_random20.py'),
    'mined20': dict(toy='centerpoint_mined20_toy.py', nuscenes='centerpoint_mined20.py'),
    'mined20_rare_sampler': dict(
        toy='centerpoint_mined20_rare_sampler_toy.py', nuscenes='centerpoint_mined20_rare_sampler.py'
    ),
    'mined20_uniform': dict(toy='centerpoint_mined20_uniform_toy.py', nuscenes='centerpoint_mined20_uniform.py'),
    'mined20_annotations': dict(
        toy='centerpoint_mined20_annotations_toy.py', nuscenes='centerpoint_mined20_annotations.py'
    ),
    'coreset20': dict(toy='centerpoint_coreset20_toy.py', nuscenes='centerpoint_coreset20.py'),
    'full_rare_sampler': dict(toy='centerpoint_full_rare_sampler_toy.py', nuscenes='centerpoint_full_rare_sampler.py'),
}
# Arms whose concepts come from the 3D labels, not from mining models: --mining-config leaves them alone.
GROUND_TRUTH_ARMS = frozenset({'mined20_annotations'})


def default_config_dir() -> str:
    """``configs/`` of the checkout the package is installed from (``pip install -e .``)."""
    package = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    return os.path.join(os.path.dirname(os.path.dirname(package)), 'configs')


def arm_config(arm: str, world: str, config_dir: Optional[str] = None) -> str:
    """The config file of ``arm`` in ``world``; raises ``ValueError`` naming the choices."""
    if world not in WORLDS:
        raise ValueError(f'unknown world {world!r}; choose one of {", ".join(WORLDS)}')
    if arm not in ARMS:
        raise ValueError(
            f'unknown arm {arm!r}; known arms: {", ".join(ARMS)} (add one to ARMS in conceptminer3d/study/arms.py)'
        )
    if world not in ARMS[arm]:
        raise ValueError(f'arm {arm!r} has no config for the {world} world')
    config_dir = config_dir or default_config_dir()
    path = os.path.join(config_dir, ARMS[arm][world])
    if not os.path.isfile(path):
        raise FileNotFoundError(
            f'config of arm {arm!r} not found: {path} (pass --config-dir, the checkout\'s configs/ directory)'
        )
    return path


def _lookup(config_file: str) -> Optional[tuple]:
    name = os.path.basename(config_file)
    for arm, by_world in ARMS.items():
        for world, config in by_world.items():
            if config == name:
                return arm, world
    return None


def arm_of_config(config_file: str) -> Optional[str]:
    """The arm whose config has this file name (a work dir keeps a copy of its config under
    the same name), or None."""
    found = _lookup(config_file)
    return found[0] if found else None


def world_of_config(config_file: str) -> Optional[str]:
    found = _lookup(config_file)
    return found[1] if found else None
