"""SubsetCBGSDataset: CBGS that tolerates classes absent from a (small) subset.

mmdet3d 1.4.0's CBGSDataset._get_sample_indices computes ``frac / share`` for every class
and raises ZeroDivisionError when a class has no sample, which a 20% subset of a
long-tailed set easily hits. Here absent classes are left out and the target share is
``1 / (number of present classes)``; with every class present the result is the stock one
(same RNG calls, in the same order).
"""

from __future__ import annotations

from typing import List

import numpy as np
from mmdet3d.datasets import CBGSDataset
from mmdet3d.registry import DATASETS
from mmengine.dataset import BaseDataset


@DATASETS.register_module()
class SubsetCBGSDataset(CBGSDataset):
    """mmdet3d's CBGSDataset, with the classes a subset lacks left out of the balancing.

    Args:
        dataset (dict | BaseDataset): the dataset to balance, usually a
            ``SubsetNuScenesDataset`` config.
        lazy_init (bool): defer loading the annotations and drawing the indices to
            ``full_init``. Defaults to False.
    """

    def _get_sample_indices(self, dataset: BaseDataset) -> List[int]:
        class_sample_idxs = {cat_id: [] for cat_id in range(len(self.metainfo['classes']))}
        for idx in range(len(dataset)):
            for cat_id in dataset.get_cat_ids(idx):
                if cat_id != -1:  # -1: a class the config does not train on
                    class_sample_idxs[cat_id].append(idx)
        present = {k: v for k, v in class_sample_idxs.items() if v}
        duplicated_samples = sum(len(v) for v in present.values())
        frac = 1.0 / len(present) if present else 0.0
        sample_indices = []
        for cls_inds in present.values():
            ratio = frac / (len(cls_inds) / duplicated_samples)
            sample_indices += np.random.choice(cls_inds, int(len(cls_inds) * ratio)).tolist()
        return sample_indices
