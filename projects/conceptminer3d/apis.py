"""End-to-end entry points: what ``tools/mine.py`` and ``DataMiningHook`` call.

They sit above the packages they join (``mining`` writes the tables, ``subsets`` reads them),
as ``mmdet.apis`` sits above mmdet's models and datasets: imports run from here down, and
neither package imports the other's entry points or this module.
"""

from __future__ import annotations

import copy
import dataclasses
import json
import logging
import os
from typing import Optional

from mmengine.config import Config

from .mining.contracts import MANIFEST_FILE, MINING_TABLE_FILES
from .mining.fingerprint import run_fingerprint
from .mining.runtime.atomic_files import write_json_atomic
from .mining.runtime.executors import LocalExecutor, build_executor
from .mining.runtime.writer_lock import writer_lock
from .mining.stages.frames import resolve_ann_file
from .registry import CONCEPT_SOURCES, build_component
from .subsets import SUBSET_DIR, SubsetSpec, build_subsets

__all__ = [
    'build_subsets_from_config',
    'completed_mining',
    'current_subsets',
    'load_mining_config',
    'rebuild_subsets',
    'run_mining',
    'subset_spec',
]

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


def subset_spec(cfg: Config) -> SubsetSpec:
    """The ``SubsetSpec`` of a mining config's ``subsets`` (its other keys, such as
    ``dbinfos_file``, are not part of the selection)."""
    fields = {f.name for f in dataclasses.fields(SubsetSpec)}
    return SubsetSpec(**{k: v for k, v in dict(cfg.subsets).items() if k in fields})


def run_mining(
    config,
    data_root: str,
    ann_file: str,
    work_dir: str,
    cfg_options: Optional[dict] = None,
    progress: bool = True,
    executor: Optional[LocalExecutor] = None,
    if_busy: str = 'refuse',
    wait_timeout_s: Optional[float] = None,
) -> Optional[dict]:
    """Run the config's concept source, then build the subsets if the config asks for them.

    The concept source (``CONCEPT_SOURCES``) is the config's ``concept_source``, built with the
    whole config and these arguments; a config without one runs ``MiningPipeline`` (the 2D
    models). ``AnnotationConcepts`` names the 3D ground-truth boxes instead
    (``configs/mining/annotations.py``). Both write the tables of ``mining/contracts.py``.

    One writer at a time (``mining/runtime/writer_lock.py``): the job holds ``work_dir``'s lock while it
    writes (rank 0 for the ranks of a torchrun job). A run that waited for another writer and
    finds its finished outputs for this config reuses them, building only missing subsets.

    Args:
        config (str | Config): see ``load_mining_config``.
        data_root (str): dataset root (holds ``samples/`` and the ``v1.0-*`` tables).
        ann_file (str): v2 info pickle, absolute or relative to ``data_root``.
        work_dir (str): where the tables, the cache, the manifest and ``subsets/`` go.
        cfg_options (dict, optional): see ``load_mining_config``.
        progress (bool): show progress bars.
        executor (LocalExecutor, optional): how the per-image stages are scheduled; default:
            across the ranks of an initialised ``torch.distributed`` job, else in this process.
        if_busy (str): another process writes into ``work_dir``: ``'refuse'`` stops at once
            naming it (``MiningDirBusyError``), ``'wait'`` waits for it.
        wait_timeout_s (float, optional): the longest wait; default ``writer_lock.WAIT_TIMEOUT_S``.

    Returns:
        dict: the manifest, also written to ``work_dir/manifest.json``; with a ``subsets``
        entry when the config has ``subsets`` settings. None on every rank but rank 0.
    """
    cfg = load_mining_config(config, cfg_options)
    executor = executor or build_executor(work_dir)
    # Built first: a bad setting stops the run before anything is written.
    source = build_component(
        CONCEPT_SOURCES,
        cfg.get('concept_source') or dict(type='MiningPipeline'),
        default_args=dict(
            cfg=cfg, data_root=data_root, ann_file=ann_file, work_dir=work_dir, progress=progress, executor=executor
        ),
    )
    os.makedirs(work_dir, exist_ok=True)
    if not executor.is_main:  # rank 0 holds the lock for the job and says whether to mine
        if executor.share(_WRITER_DECISION, None) == 'mine':
            _mine(source, cfg, data_root, ann_file, work_dir)
        else:
            executor.finish(_WRITER_DECISION)  # read: rank 0 may remove the coordination files
        return None
    with writer_lock(work_dir, if_busy, wait_timeout_s) as lock:
        finished = completed_mining(cfg, data_root, ann_file, work_dir) if lock.waited else None
        executor.share(_WRITER_DECISION, lambda: 'mine' if finished is None else 'reuse')
        if finished is None:
            executor.begin()
            return _mine(source, cfg, data_root, ann_file, work_dir)
        executor.finish(_WRITER_DECISION)  # every rank has read the decision
        executor.close()
        logger.info('%s: reusing the finished run of the writer awaited', work_dir)
        if cfg.get('subsets') and current_subsets(cfg, data_root, ann_file, work_dir) is None:
            finished['subsets'] = rebuild_subsets(cfg, data_root, ann_file, work_dir)  # the lock is ours
        return finished


_WRITER_DECISION = 'writer_decision'


def _mine(source, cfg: Config, data_root: str, ann_file: str, work_dir: str) -> Optional[dict]:
    manifest = source.run()
    if manifest is None:  # a helper rank: rank 0 runs the global stages and writes everything
        return None
    manifest['fingerprint'] = run_fingerprint(cfg, resolve_ann_file(data_root, ann_file))
    write_json_atomic(manifest, os.path.join(work_dir, MANIFEST_FILE))
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
    dbinfos = os.path.join(data_root, cfg.subsets.get('dbinfos_file', 'nuscenes_dbinfos_train.pkl'))
    if not os.path.isfile(dbinfos):
        logger.warning('no GT database at %s: subsets get no dbinfos', dbinfos)
        dbinfos = None
    summary = build_subsets(work_dir, resolve_ann_file(data_root, ann_file), subset_spec(cfg), dbinfos_pkl=dbinfos)
    return {k: v for k, v in summary.items() if k != 'selected'}


def _read_manifest(work_dir: str) -> Optional[dict]:
    path = os.path.join(work_dir, MANIFEST_FILE)
    if not os.path.isfile(path):
        return None
    with open(path) as f:
        return json.load(f)


def completed_mining(config, data_root: str, ann_file: str, work_dir: str) -> Optional[dict]:
    """The manifest of a finished run in ``work_dir`` that the config would reproduce (same
    fingerprint, ``mining.fingerprint.run_fingerprint``, and every table on disk), else None. Loads
    no model and reads no table."""
    cfg = load_mining_config(config)
    manifest = _read_manifest(work_dir)
    if manifest is None:
        return None
    if manifest.get('fingerprint') != run_fingerprint(cfg, resolve_ann_file(data_root, ann_file)):
        return None
    if not all(os.path.isfile(os.path.join(work_dir, name)) for name in MINING_TABLE_FILES):
        return None
    return manifest


def current_subsets(config, data_root: str, ann_file: str, work_dir: str) -> Optional[dict]:
    """The subset summary in ``work_dir``'s manifest when it was built with the config's
    ``subsets`` settings from the same train pickle and its files are all there, else None."""
    cfg = load_mining_config(config)
    manifest = _read_manifest(work_dir)
    if not (cfg.get('subsets') and manifest):
        return None
    subsets = manifest.get('subsets') or {}
    if subsets.get('spec') != dataclasses.asdict(subset_spec(cfg)):
        return None
    if subsets.get('inputs', {}).get('train_pkl') != os.path.abspath(resolve_ann_file(data_root, ann_file)):
        return None
    outputs = [os.path.join(work_dir, SUBSET_DIR, name) for name in subsets.get('outputs', {}).values()]
    return subsets if outputs and all(map(os.path.isfile, outputs)) else None


def rebuild_subsets(config, data_root: str, ann_file: str, work_dir: str) -> dict:
    """Build the config's subsets from the finished run in ``work_dir`` (no model is loaded)
    and record them in its manifest, as ``run_mining`` does after mining (holding the writer
    lock; a caller that holds it already, such as the hook, keeps it)."""
    cfg = load_mining_config(config)
    with writer_lock(work_dir):
        manifest = _read_manifest(work_dir)
        manifest['subsets'] = build_subsets_from_config(cfg, data_root, ann_file, work_dir)
        write_json_atomic(manifest, os.path.join(work_dir, MANIFEST_FILE))
        return manifest['subsets']
