"""The train pickle's 3D labels as the selection measure counts them: which boxes training keeps,
the boxes of each class per sample, and ``TrainLabels`` (random draws and the label oracle over
them).

Apart from ``evaluation`` because the study counts boxes the same way (``study.train_set``)
without measuring any subset.
"""

from __future__ import annotations

from typing import Dict, List, Mapping, Sequence, Tuple

import numpy as np

from .coverage import SqrtCoverage, sqrt_coverage_value

__all__ = ['TrainLabels', 'instance_kept', 'label_counts']


def instance_kept(instance: Mapping, use_valid_flag: bool) -> bool:
    """Whether ``NuScenesDataset`` keeps a box for training (its ``parse_ann_info``)."""
    if use_valid_flag:
        return bool(instance.get('bbox_3d_isvalid'))
    return instance.get('num_lidar_pts', 0) > 0


def label_counts(infos: Mapping, use_valid_flag: bool = True) -> Tuple[List[str], np.ndarray, np.ndarray]:
    """Per train sample, its 3D boxes per class.

    Returns:
        (classes in label order, (n, C) counts of the boxes training keeps, (n, C) counts of
        every annotated box, with or without lidar points: what the cameras could show).
    """
    categories = (infos.get('metainfo') or {}).get('categories') or {}
    classes = [name for name, _ in sorted(categories.items(), key=lambda item: item[1])]
    column = {int(label): k for k, (_, label) in enumerate(sorted(categories.items(), key=lambda item: item[1]))}
    kept = np.zeros((len(infos['data_list']), len(classes)), np.int64)
    every = np.zeros_like(kept)
    for i, info in enumerate(infos['data_list']):
        for instance in info.get('instances') or []:
            k = column.get(int(instance.get('bbox_label_3d', -1)))
            if k is not None:
                every[i, k] += 1
                kept[i, k] += instance_kept(instance, use_valid_flag)
    return classes, kept, every


class TrainLabels:
    """The train set as the measure sees it: boxes per sample, scenes, and the label objective."""

    def __init__(self, kept: np.ndarray, scene_of: Sequence[str], objective_columns: List[int], weights: np.ndarray):
        self.kept = kept
        self.n, self.num_classes = kept.shape
        _, self.scene_id = np.unique(np.asarray(scene_of, dtype=object), return_inverse=True)
        order = np.argsort(self.scene_id, kind='stable')
        bounds = np.flatnonzero(np.diff(self.scene_id[order])) + 1
        self.scenes = np.split(order, bounds) if self.n else []
        self.objective_columns = objective_columns
        self.weights = weights

    def measure(self, rows: np.ndarray) -> Dict[str, np.ndarray]:
        """Per class: instances, samples holding it and scenes holding it, among ``rows``."""
        held = self.kept[rows]
        has = held > 0
        pairs = np.unique((self.scene_id[rows][:, None] * self.num_classes + np.arange(self.num_classes))[has])
        return dict(
            instances=held.sum(axis=0),
            samples=has.sum(axis=0),
            scenes=np.bincount(pairs % self.num_classes, minlength=self.num_classes),
        )

    def value(self, rows: np.ndarray) -> float:
        return sqrt_coverage_value(self.kept[rows][:, self.objective_columns].sum(axis=0), self.weights)

    def whole_scenes(self, rows: np.ndarray) -> bool:
        chosen = np.zeros(self.n, bool)
        chosen[rows] = True
        return all(chosen[s].all() or not chosen[s].any() for s in self.scenes)

    def draw(self, rng: np.random.Generator, size: int, unit: str) -> np.ndarray:
        """A uniform random subset of ``size`` samples, or of whole scenes up to ``size`` (a
        scene that would overshoot is passed over once one is taken, as the subsets' scene mode
        does)."""
        if unit == 'sample':
            return rng.choice(self.n, size=size, replace=False)
        taken, got = [], 0
        for s in rng.permutation(len(self.scenes)):
            if got >= size:
                break
            if got and got + len(self.scenes[s]) > size:
                continue
            taken.append(self.scenes[s])
            got += len(self.scenes[s])
        return np.concatenate(taken) if taken else np.zeros(0, np.int64)

    def oracle(self, budget: int, unit: str, fixed: np.ndarray, seed: int) -> np.ndarray:
        """The greedy best ``budget`` samples (or whole scenes) by the label objective, chosen
        beside the ``fixed`` samples."""
        members = [np.array([i]) for i in range(self.n)] if unit == 'sample' else self.scenes
        is_fixed = np.zeros(self.n, bool)
        is_fixed[fixed] = True
        free = [m for m in members if not is_fixed[m].any()]
        columns = self.objective_columns
        evidence = np.array([self.kept[m][:, columns].sum(axis=0) for m in free], np.float64).reshape(-1, len(columns))
        fit = SqrtCoverage(budget, self.weights, overshoot_first=unit == 'scene').fit(
            evidence,
            costs=np.array([len(m) for m in free], np.float64),
            tie_order=np.random.default_rng(seed).permutation(len(free)),
            initial_totals=self.kept[fixed][:, columns].sum(axis=0),
        )
        return np.concatenate([fixed, *(free[k] for k in fit.ranking_)]).astype(np.int64)
