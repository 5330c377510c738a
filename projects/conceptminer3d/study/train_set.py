"""What an arm trains on: the info pickle(s) its train dataset reads, and their 3D instances per class.

Counted as ``NuScenesDataset`` keeps boxes for training: with ``use_valid_flag`` a box counts
when ``bbox_3d_isvalid``, otherwise when ``num_lidar_pts > 0``; labels outside the config's
classes are dropped. Counts are of the pickle, before CBGS or a sampler repeats samples.
"""

from __future__ import annotations

import os
import pickle
from collections import Counter
from typing import Dict, List, Mapping, Optional, Sequence

from ..subsets import subset_paths
from ..subsets.train_labels import instance_kept

__all__ = ['class_names', 'count_instances', 'train_datasets', 'train_set_stats']


def train_datasets(cfg: Mapping) -> List[Mapping]:
    """The leaf dataset configs of ``train_dataloader.dataset``, through wrappers such as
    CBGS (``dataset=``) or concatenation (``datasets=``)."""
    stack, leaves = [cfg['train_dataloader']['dataset']], []
    while stack:
        node = stack.pop()
        if isinstance(node.get('dataset'), Mapping):
            stack.append(node['dataset'])
        elif isinstance(node.get('datasets'), Sequence):
            stack.extend(reversed(list(node['datasets'])))
        else:
            leaves.append(node)
    return leaves


def _ann_file(dataset: Mapping) -> str:
    # A SubsetNuScenesDataset named by mining_dir + subset replaces its ann_file with that subset's pickle.
    if dataset.get('subset') and dataset.get('mining_dir'):
        return os.path.abspath(subset_paths(dataset['mining_dir'], dataset['subset'])[0])
    # as mmengine's BaseDataset resolves it
    ann_file, data_root = dataset['ann_file'], dataset.get('data_root')
    return ann_file if os.path.isabs(ann_file) or not data_root else os.path.join(data_root, ann_file)


def class_names(cfg: Mapping) -> Optional[List[str]]:
    """The classes the config trains, from its train dataset's ``metainfo`` or ``class_names``."""
    for dataset in train_datasets(cfg):
        classes = (dataset.get('metainfo') or {}).get('classes')
        if classes:
            return list(classes)
    return list(cfg['class_names']) if cfg.get('class_names') else None


def count_instances(
    ann_file: str, classes: Optional[Sequence[str]] = None, use_valid_flag: bool = False
) -> Dict[str, object]:
    """``dict(num_samples=int, instances={class: int})`` of a v2 nuScenes info pickle."""
    with open(ann_file, 'rb') as f:
        infos = pickle.load(f)
    if not isinstance(infos, Mapping) or 'data_list' not in infos:
        raise ValueError(f'{ann_file} is not a v2 info pickle (no data_list)')
    categories = (infos.get('metainfo') or {}).get('categories') or {}
    label_names = {int(i): name for name, i in categories.items()}
    counts: Counter = Counter()
    for info in infos['data_list']:
        for instance in info.get('instances', []):
            name = label_names.get(int(instance.get('bbox_label_3d', -1)))
            if instance_kept(instance, use_valid_flag) and name is not None:
                counts[name] += 1
    classes = list(classes) if classes is not None else [label_names[i] for i in sorted(label_names)]
    return dict(num_samples=len(infos['data_list']), instances={c: int(counts[c]) for c in classes})


def train_set_stats(cfg: Mapping) -> dict:
    """Samples and instances per class of everything the config's train dataset reads.

    Returns ``dict(ann_files=[...], num_samples=int, instances={class: int})``, or with
    ``num_samples=None`` and ``missing=[...]`` when a pickle is not on this machine (a run
    collected from elsewhere).
    """
    classes = class_names(cfg)
    stats = dict(ann_files=[], num_samples=0, instances={c: 0 for c in classes or []})
    for dataset in train_datasets(cfg):
        path = _ann_file(dataset)
        stats['ann_files'].append(path)
        if not os.path.isfile(path):
            stats.setdefault('missing', []).append(path)
            continue
        counted = count_instances(path, classes, bool(dataset.get('use_valid_flag', False)))
        stats['num_samples'] += counted['num_samples']
        for name, n in counted['instances'].items():
            stats['instances'][name] = stats['instances'].get(name, 0) + n
    if stats.get('missing'):
        stats['num_samples'], stats['instances'] = None, None
    return stats
