"""RareConceptSampler: oversample training samples whose camera crops were mined as
Target or Rare concepts.

How it relates to CBGS: CBGS (mmdet3d's CBGSDataset) rebalances by the *3D ground-truth
class* of each sample, expanding the dataset once with the global numpy RNG. This sampler
rebalances by the *mined concept groups* of each sample's camera crops, so it also
oversamples things that have no 3D label of their own (strollers, debris, odd vehicles);
it keeps a fixed epoch length, reseeds every epoch (``seed + epoch``) and shards across
ranks like mmengine's DefaultSampler. Use it instead of CBGS, not on top of it
(``configs/centerpoint_mined20_rare_sampler*.py``).
"""

from __future__ import annotations

import math
import os
from typing import Dict, Iterator, Optional

import pyarrow.parquet as pq
import torch
from mmdet3d.registry import DATA_SAMPLERS
from mmengine.dist import get_dist_info, sync_random_seed
from torch.utils.data import Sampler

from ..mining.contracts import CONCEPTS_FILE

DEFAULT_GROUP_WEIGHTS = dict(Target=4.0, Rare=2.0, Common=1.0)


def sample_weights_from_concepts(concepts_file: str, group_weights: Dict[str, float]) -> Dict[str, float]:
    """sample token → the largest group weight among its captioned crops."""
    table = pq.read_table(concepts_file, columns=['sample_token', 'group'])
    weights: Dict[str, float] = {}
    for token, group in zip(table.column('sample_token').to_pylist(), table.column('group').to_pylist()):
        weights[token] = max(weights.get(token, 0.0), float(group_weights.get(group, 1.0)))
    return weights


@DATA_SAMPLERS.register_module()
class RareConceptSampler(Sampler):
    """Weighted sampling with replacement, per-sample weights from the mining outputs.

    Args:
        dataset: the training dataset (its samples must carry the nuScenes sample ``token``).
        mining_dir: work dir of ``tools/mine.py`` (reads ``concepts.parquet``); default: the
            dataset's own ``mining_dir`` (``SubsetNuScenesDataset``).
        group_weights: weight of a sample whose best crop group is this group; groups left
            out keep ``DEFAULT_GROUP_WEIGHTS`` (the one place those defaults are written).
        default_weight: weight of samples absent from the mining outputs.
        num_samples: indices per epoch over all ranks (default: ``len(dataset)``); fixed.
        seed: base seed; ``None`` draws one and syncs it across ranks.
    """

    def __init__(
        self,
        dataset,
        mining_dir: Optional[str] = None,
        group_weights: Optional[Dict[str, float]] = None,
        default_weight: float = 1.0,
        num_samples: Optional[int] = None,
        seed: Optional[int] = None,
    ):
        mining_dir = mining_dir or getattr(dataset, 'mining_dir', None)
        if not mining_dir:
            raise ValueError(
                'RareConceptSampler: give mining_dir, or a dataset built with one '
                '(SubsetNuScenesDataset(mining_dir=...))'
            )
        concepts_file = os.path.join(mining_dir, CONCEPTS_FILE)
        if not os.path.isfile(concepts_file):
            raise FileNotFoundError(
                f'RareConceptSampler: no mining outputs at {concepts_file} (run tools/mine.py first)'
            )
        group_weights = dict(DEFAULT_GROUP_WEIGHTS, **(group_weights or {}))
        if min(list(group_weights.values()) + [default_weight]) <= 0:
            raise ValueError('sampling weights must be positive')
        self.rank, self.world_size = get_dist_info()
        self.seed = sync_random_seed() if seed is None else int(seed)
        self.epoch = 0
        self.dataset, self.concepts_file = dataset, concepts_file
        self.group_weights, self.default_weight = group_weights, default_weight
        self.reload_weights()
        total = int(num_samples or len(dataset))
        self.num_samples = math.ceil(total / self.world_size)  # per rank
        self.total_size = self.num_samples * self.world_size

    def reload_weights(self) -> None:
        """Weights for the dataset's current samples from the current mining outputs: after
        ``DataMiningHook`` re-mined and the dataset reloaded its pickle."""
        by_token = sample_weights_from_concepts(self.concepts_file, self.group_weights)
        tokens = [self.dataset.get_data_info(i)['token'] for i in range(len(self.dataset))]
        self.weights = torch.tensor([by_token.get(t, self.default_weight) for t in tokens], dtype=torch.double)
        self.num_mined = sum(t in by_token for t in tokens)

    def __iter__(self) -> Iterator[int]:
        generator = torch.Generator()
        generator.manual_seed(self.seed + self.epoch)
        indices = torch.multinomial(self.weights, self.total_size, replacement=True, generator=generator)
        return iter(indices[self.rank : self.total_size : self.world_size].tolist())

    def __len__(self) -> int:
        return self.num_samples

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch
