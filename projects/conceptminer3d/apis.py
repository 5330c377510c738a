"""End-to-end entry points: what ``tools/mine.py`` and ``DataMiningHook`` call.

They sit above the packages they join (``mining`` writes the tables, ``subsets`` reads them),
as ``mmdet.apis`` sits above mmdet's models and datasets: imports run from here down, and
neither package imports the other's entry points or this module.
"""

from __future__ import annotations

import copy
import logging
import os
from typing import Optional

from mmengine.config import Config

from .mining.contracts import MANIFEST_FILE, write_json_atomic
from .mining.frames import resolve_ann_file
from .registry import CONCEPT_SOURCES, build_component
from .subsets import SubsetSpec, build_subsets

__all__ = ['build_subsets_from_config', 'load_mining_config', 'run_mining']

logger = logging.getLogger('conceptminer3d.mining')


def load_mining_config(config, cfg_options: Optional[dict] = None) -> Config:
    """A mining config from a file or a ``Config``, with ``cfg_options`` merged in.

    Args:
        config (str | Config): a config file (``configs/mining/*.py``) or a loaded config.
        cfg_options (dict, optional): ``{'dotted.key': value}`` overrides, as
            ``--cfg-options`` gives them.

    Returns:
        Config: a new object; a ``Config`` passed in is copied, never changed.
    """
    cfg = copy.deepcopy(config) if isinstance(config, Config) else Config.fromfile(config)
    if cfg_options:
        cfg.merge_from_dict(cfg_options)
    return cfg


def run_mining(
    config, data_root: str, ann_file: str, work_dir: str, cfg_options: Optional[dict] = None, progress: bool = True
) -> dict:
    """Run the config's concept source, then build the subsets if the config asks for them.

    The concept source (``CONCEPT_SOURCES``) is the config's ``concept_source``, built with the
    whole config and these arguments; a config without one runs ``MiningPipeline`` (the 2D
    models). ``AnnotationConcepts`` names the 3D ground-truth boxes instead
    (``configs/mining/annotations.py``). Both write the tables of ``mining/contracts.py``.

    Args:
        config (str | Config): see ``load_mining_config``.
        data_root (str): dataset root (holds ``samples/`` and the ``v1.0-*`` tables).
        ann_file (str): v2 info pickle, absolute or relative to ``data_root``.
        work_dir (str): where the tables, the cache, the manifest and ``subsets/`` go.
        cfg_options (dict, optional): see ``load_mining_config``.
        progress (bool): show progress bars.

    Returns:
        dict: the manifest, also written to ``work_dir/manifest.json``; with a ``subsets``
        entry when the config has ``subsets`` settings.
    """
    cfg = load_mining_config(config, cfg_options)
    source = build_component(
        CONCEPT_SOURCES,
        cfg.get('concept_source') or dict(type='MiningPipeline'),
        default_args=dict(cfg=cfg, data_root=data_root, ann_file=ann_file, work_dir=work_dir, progress=progress),
    )
    manifest = source.run()
    if cfg.get('subsets'):
        manifest['subsets'] = build_subsets_from_config(cfg, data_root, ann_file, work_dir)
        write_json_atomic(manifest, os.path.join(work_dir, MANIFEST_FILE))
    return manifest


def build_subsets_from_config(cfg: Config, data_root: str, ann_file: str, work_dir: str) -> dict:
    """Subset pickles from the mining outputs in ``work_dir``, as ``cfg.subsets`` describes.

    Args:
        cfg (Config): a mining config with a ``subsets`` dict (``SubsetSpec`` fields, plus
            ``dbinfos_file`` relative to ``data_root``).
        data_root (str): dataset root.
        ann_file (str): the train info pickle that was mined.
        work_dir (str): the mining work dir; the pickles go to ``work_dir/subsets/``.

    Returns:
        dict: the subset summary, without the list of selected samples.
    """
    settings = dict(cfg.subsets)
    dbinfos = os.path.join(data_root, settings.pop('dbinfos_file', 'nuscenes_dbinfos_train.pkl'))
    if not os.path.isfile(dbinfos):
        logger.warning('no GT database at %s: subsets get no dbinfos', dbinfos)
        dbinfos = None
    summary = build_subsets(
        work_dir, resolve_ann_file(data_root, ann_file), SubsetSpec(**settings), dbinfos_pkl=dbinfos
    )
    return {k: v for k, v in summary.items() if k != 'selected'}
