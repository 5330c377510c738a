"""Which train samples go into a mined subset: "Random r% + Target t%".

Pure functions of the mining tables and the train pickle's sample list, seeded, so the
same inputs and seed always give the same subset.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Dict, List, Sequence

import numpy as np

from ..mining.contracts import GROUP_RARE, GROUP_TARGET

REASON_TARGET, REASON_RARE, REASON_FILL, REASON_RANDOM = 'target', 'rare_topup', 'fill_topup', 'random'


@dataclass(frozen=True)
class SubsetSpec:
    target_ratio: float = 0.1
    random_ratio: float = 0.1
    unit: str = 'sample'  # 'sample' or 'scene' (whole scenes, by scene token)
    seed: int = 0

    def __post_init__(self):
        if not (0 <= self.target_ratio <= 1 and 0 <= self.random_ratio <= 1
                and 0 < self.target_ratio + self.random_ratio <= 1):
            raise ValueError(f'ratios must be in [0, 1] with 0 < sum <= 1, got target={self.target_ratio}, '
                             f'random={self.random_ratio}')
        if self.unit not in ('sample', 'scene'):
            raise ValueError(f"unit must be 'sample' or 'scene', got {self.unit!r}")

    @property
    def name(self) -> str:
        return f'random{round(self.random_ratio * 100)}_target{round(self.target_ratio * 100)}'

    @property
    def baseline_name(self) -> str:
        return f'random{round((self.random_ratio + self.target_ratio) * 100)}'


@dataclass
class Selection:
    indices: List[int]  # positions in the train pickle, ascending
    reasons: Dict[int, str]
    shortfall: Dict[str, int] = field(default_factory=dict)  # target slots filled from Rare / the rest


def _draw(rng: np.random.Generator, pool: Sequence, k: int) -> List:
    pool = sorted(pool)
    k = min(k, len(pool))
    return [pool[i] for i in sorted(rng.choice(len(pool), size=k, replace=False))] if k else []


def select_mined(sample_groups: Dict[int, set], scene_of: Sequence[str], spec: SubsetSpec) -> Selection:
    """``sample_groups``: train position → set of crop groups found in that sample.

    Target slots: round(target_ratio·N) samples with a Target crop; a shortfall is topped up
    from samples with a Rare crop, then from the rest. Random slots: round(random_ratio·N)
    drawn uniformly from what remains. In scene mode the same rules pick whole scenes
    (a scene counts as Target/Rare if any of its samples is) until each quota of samples is
    reached."""
    n = len(scene_of)
    rng = np.random.default_rng(spec.seed)
    n_target, n_random = round(spec.target_ratio * n), round(spec.random_ratio * n)
    has = lambda i, g: g in sample_groups.get(i, ())  # noqa: E731
    if spec.unit == 'sample':
        units = {i: [i] for i in range(n)}
    else:
        units = {}
        for i, scene in enumerate(scene_of):
            if not scene:
                raise ValueError(f'sample {i} has no scene token; scene mode needs the devkit tables')
            units.setdefault(scene, []).append(i)
    tiers = [
        (REASON_TARGET, [u for u, idx in units.items() if any(has(i, GROUP_TARGET) for i in idx)]),
        (REASON_RARE, [u for u, idx in units.items() if any(has(i, GROUP_RARE) for i in idx)]),
        (REASON_FILL, list(units)),
    ]
    chosen: Dict[int, str] = {}
    taken_units: set = set()
    shortfall: Dict[str, int] = {}

    def take(pool, quota, reason):
        got = 0
        available = sorted(u for u in pool if u not in taken_units)
        order = [available[i] for i in rng.permutation(len(available))]
        for u in order:
            if got >= quota:
                break
            if spec.unit == 'scene' and got + len(units[u]) > quota and got > 0:
                continue  # a whole scene would overshoot: try a smaller one
            taken_units.add(u)
            for i in units[u]:
                chosen[i] = reason
            got += len(units[u])
        return got

    filled = 0
    for reason, pool in tiers:
        got = take(pool, n_target - filled, reason)
        if reason != REASON_TARGET and got:
            shortfall[reason] = got
        filled += got
        if filled >= n_target:
            break
    take(list(units), n_random, REASON_RANDOM)
    return Selection(sorted(chosen), chosen, shortfall)


def select_random(n: int, size: int, seed: int) -> List[int]:
    """The random baseline: ``size`` samples uniformly, same seed."""
    return _draw(np.random.default_rng(seed), range(n), size)
