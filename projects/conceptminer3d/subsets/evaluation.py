"""How many of the rare objects a subset caught, measured on the train pickle's 3D labels: seconds,
no training (``tools/evaluate_selection.py``).

For every subset pickle under ``MINING_DIR/subsets/`` and each class (rarest first), for the
rare classes together and for the vocabulary's Target classes together:

- the 3D instances it holds (counted as ``NuScenesDataset`` keeps them: ``bbox_3d_isvalid``
  with ``use_valid_flag``, else ``num_lidar_pts > 0``), their recall (÷ the train set's), and
  the samples and scenes that hold the class;
- the same for ``draws`` random subsets of the same size and unit (samples, or whole scenes
  when the subset holds only whole scenes): mean and 2.5–97.5% interval, the subset's
  percentile in that distribution and its ratio to the mean;
- a label oracle for the same budget: the best subset the labels allow by the coverage
  objective (``SqrtCoverage`` over the 3D instances of the vocabulary's Target classes,
  rarity-weighted as the selection weighs concepts), beside the subset's own random half
  where its manifest says which samples those are; the subset's objective value as a share
  of the oracle's;
- the class-balance entropy of the selected instances (bits);
- where the caller knows the world's camera distractors (``decoys``, e.g. from a toy world's
  ``toy_world.json``): the Target slots whose sample holds no 3D box of the slot's concept,
  by the distractor that was there instead.

The boxes are counted in ``train_labels``; the tables and the plot are ``evaluation_display``'s.
"""

from __future__ import annotations

import json
import os
import re
from typing import Dict, List, Mapping, Optional, Sequence, Tuple

import numpy as np
import pyarrow.parquet as pq

from ..mining.contracts import FRAMES_FILE, GROUP_TARGET, MANIFEST_FILE
from ..mining.runtime.atomic_files import write_json_atomic
from ..mining.stages.frames import load_info_pickle
from .builder import SUBSET_DIR, SUBSET_MANIFEST, subset_manifest_path, subset_names, subset_paths
from .evidence import rarity_weights
from .selection import REASON_RANDOM, REASON_TARGET
from .train_labels import TrainLabels, label_counts

__all__ = [
    'NoLabelsError',
    'RARE_CLASSES',
    'SELECTION_EVAL_FILE',
    'evaluate_selection',
    'is_current',
    'mined_train_pickle',
]

SELECTION_EVAL_FILE = 'selection_eval.json'
RARE_CLASSES = 5  # "rare": this many of the train set's least frequent classes
_MINED_NAME = re.compile(r'^random(\d+)_target(\d+)(?:_|$)')


class NoLabelsError(ValueError):
    """The train pickle holds no 3D boxes (a test split, or a pickle made without annotations)."""


def _spread(values: np.ndarray) -> dict:
    return dict(
        mean=round(float(values.mean()), 3),
        low=round(float(np.percentile(values, 2.5)), 3),
        high=round(float(np.percentile(values, 97.5)), 3),
    )


def _percentile(value: float, draws: np.ndarray) -> float:
    """Share of the draws below ``value`` (ties count half), in percent."""
    return round(100.0 * (np.sum(draws < value) + 0.5 * np.sum(draws == value)) / len(draws), 1)


def _entropy_bits(instances: np.ndarray) -> float:
    total = instances.sum()
    p = instances[instances > 0] / total if total else np.zeros(0)
    return round(float(-(p * np.log2(p)).sum()), 4)


def _subset_rows(path: str, position: Mapping[str, int], train_pkl: str) -> np.ndarray:
    infos = load_info_pickle(path)
    tokens = [info['token'] for info in infos['data_list']]
    unknown = [t for t in tokens if t not in position]
    if unknown:
        raise ValueError(f'{path}: {len(unknown)} of its samples are not in {train_pkl} (a subset of another pickle)')
    return np.array(sorted({position[t] for t in tokens}), np.int64)


def _vocabulary(mining_dir: str, classes: Sequence[str]) -> Tuple[List[str], Dict[str, str]]:
    """The Target classes of the run's vocabulary (3D class names) and concept → 3D class."""
    path = os.path.join(mining_dir, MANIFEST_FILE)
    config = {}
    if os.path.isfile(path):
        with open(path) as f:
            config = json.load(f).get('config') or {}
    vocabulary = ((config.get('concepts') or {}).get('vocabulary')) or {}
    to_concept = dict(((config.get('concept_source') or {}).get('class_to_concept')) or {})
    class_of = {to_concept.get(c, c): c for c in classes}  # concept → 3D class, where there is one
    targets = [class_of[c] for c in vocabulary.get('target', []) if c in class_of]
    return sorted(set(targets), key=list(classes).index), class_of


def _summaries(
    train: TrainLabels, rows: np.ndarray, draws: List[np.ndarray], totals: np.ndarray, groups: Dict[str, List[int]]
) -> dict:
    """Per class and per group of classes: the subset's numbers against the random draws'."""
    mine = train.measure(rows)
    theirs = [train.measure(d) for d in draws]

    def entry(columns: List[int]) -> dict:
        out = {}
        for key in ('instances', 'samples', 'scenes'):
            value = float(mine[key][columns].sum())
            drawn = np.array([t[key][columns].sum() for t in theirs], np.float64)
            out[key] = dict(
                value=int(value),
                random=_spread(drawn),
                percentile=_percentile(value, drawn),
                ratio=round(value / drawn.mean(), 3) if drawn.mean() else None,
            )
        total = int(totals[columns].sum())
        out['recall'] = round(out['instances']['value'] / total, 4) if total else None
        return out

    return {name: entry(columns) for name, columns in groups.items()}


def _false_positives(
    mining_dir: str,
    name: str,
    rows: np.ndarray,
    tokens: Sequence[str],
    every: np.ndarray,
    classes: Sequence[str],
    class_of: Mapping[str, str],
    decoys: Mapping[str, Mapping[str, Sequence[str]]],
) -> Optional[dict]:
    """Target slots won on false evidence: the sample holds no box of the concept that won the
    slot (or, for a rule that names none, of any concept its Target crops name), and which
    distractor of that concept was there instead."""
    path = subset_manifest_path(mining_dir, name)
    if not os.path.isfile(path):
        return None
    with open(path) as f:
        selected = json.load(f).get('selected', [])
    counts = dict(slots=0, real=0, false_positive=0, poster=0, lookalike=0, other=0, unchecked=0)
    in_subset = set(tokens[i] for i in rows)
    column = {c: k for k, c in enumerate(classes)}
    position = {t: i for i, t in enumerate(tokens)}
    for entry in selected:
        if entry.get('reason') != REASON_TARGET or entry['sample_token'] not in in_subset:
            continue
        counts['slots'] += 1
        concepts = (
            [entry['concept']]
            if entry.get('concept')
            else [c['concept'] for c in entry.get('crops', []) if c['group'] == GROUP_TARGET]
        )
        named = {class_of.get(c) for c in concepts} & set(column)
        if not named:
            counts['unchecked'] += 1  # a concept with no 3D class: nothing to check it against
        elif every[position[entry['sample_token']], [column[c] for c in named]].any():
            counts['real'] += 1
        else:
            counts['false_positive'] += 1
            looks = decoys.get(entry['sample_token']) or {}
            kinds = set().union(*(looks.get(c, ()) for c in named))
            for kind in ('poster', 'lookalike'):
                counts[kind] += kind in kinds
            counts['other'] += not kinds
    return counts


def _random_half(mining_dir: str, name: str, tokens: Sequence[str]) -> Optional[np.ndarray]:
    path = subset_manifest_path(mining_dir, name)
    if not os.path.isfile(path):
        return None
    with open(path) as f:
        selected = json.load(f).get('selected', [])
    position = {t: i for i, t in enumerate(tokens)}
    return np.array(sorted(position[s['sample_token']] for s in selected if s['reason'] == REASON_RANDOM), np.int64)


def _subset_files(mining_dir: str, name: str) -> dict:
    path = subset_paths(mining_dir, name)[0]
    stat = os.stat(path)
    return dict(path=os.path.basename(path), size=stat.st_size, mtime_ns=stat.st_mtime_ns)


def is_current(evaluation: Mapping, mining_dir: str) -> bool:
    """Whether ``evaluation`` (a ``selection_eval.json``) measured the subsets now in ``mining_dir``."""
    names = subset_names(mining_dir)
    recorded = evaluation.get('subsets') or {}
    return sorted(recorded) == names and all(recorded[n].get('file') == _subset_files(mining_dir, n) for n in names)


def _subset_inputs(mining_dir: str) -> Optional[dict]:
    """What the subsets in ``mining_dir`` were built from (their manifest's ``inputs``), if built."""
    manifest = os.path.join(mining_dir, SUBSET_DIR, SUBSET_MANIFEST)
    if not os.path.isfile(manifest):
        return None
    with open(manifest) as f:
        return json.load(f).get('inputs') or {}


def mined_train_pickle(mining_dir: str) -> str:
    """The train pickle the subsets in ``mining_dir`` were built from (their manifest says)."""
    inputs = _subset_inputs(mining_dir)
    if inputs is None:
        manifest = os.path.join(mining_dir, SUBSET_DIR, SUBSET_MANIFEST)
        raise FileNotFoundError(f'{manifest} not found: give the train pickle that was mined (--ann-file)')
    return inputs['train_pkl']


def mined_dbinfos_pickle(mining_dir: str) -> Optional[str]:
    """The full GT database the subsets in ``mining_dir`` were filtered from, if any."""
    return (_subset_inputs(mining_dir) or {}).get('dbinfos_pkl')


def evaluate_selection(
    mining_dir: str,
    train_pkl: Optional[str] = None,
    draws: int = 1000,
    seed: int = 0,
    use_valid_flag: bool = True,
    rare_classes: int = RARE_CLASSES,
    decoys: Optional[Mapping[str, Mapping[str, Sequence[str]]]] = None,
    out_file: Optional[str] = SELECTION_EVAL_FILE,
    infos: Optional[Mapping] = None,
) -> dict:
    """Measure every subset in ``mining_dir/subsets/`` against the train pickle's 3D labels.

    Args:
        mining_dir (str): a mining work dir with ``subsets/`` and ``frames.parquet``.
        train_pkl (str, optional): the train info pickle that was mined; default: the one its
            subsets were built from (``subset_manifest.json``).
        draws (int): random subsets drawn per subset, for the distribution to compare with.
        seed (int): seed of the draws and of the oracle's ties.
        use_valid_flag (bool): count boxes as ``NuScenesDataset(use_valid_flag=...)`` keeps
            them (the stock nuScenes configs set it).
        rare_classes (int): how many of the least frequent classes make "rare".
        decoys (dict, optional): sample token → {3D class: kinds of distractor that look like
            it there ('poster', 'lookalike')}; with it, the Target slots' false positives.
        out_file (str, optional): written into ``mining_dir`` (atomically); None writes nothing.
        infos (dict, optional): ``train_pkl`` already loaded (not read again).

    Returns:
        dict: what ``selection_eval.json`` holds.

    Raises:
        NoLabelsError: the train pickle has no 3D boxes.
        FileNotFoundError: no subsets, or no train pickle.
    """
    names = subset_names(mining_dir)
    if not names:
        raise FileNotFoundError(
            f'no subset pickles in {os.path.join(mining_dir, SUBSET_DIR)}: build them first '
            '(tools/mine.py with subsets in its config, or tools/build_subsets.py)'
        )
    train_pkl = train_pkl or mined_train_pickle(mining_dir)
    infos = infos if infos is not None else load_info_pickle(train_pkl)
    tokens = [info['token'] for info in infos['data_list']]
    classes, kept, every = label_counts(infos, use_valid_flag)
    if not every.any():
        raise NoLabelsError(
            f'{train_pkl} holds no 3D boxes (no instances in any sample): the selection measure counts '
            'the rare objects a subset holds, so it needs a pickle with annotations (a train or val split, '
            'not test)'
        )
    position = {t: i for i, t in enumerate(tokens)}
    frames = pq.read_table(os.path.join(mining_dir, FRAMES_FILE), columns=['sample_token', 'scene_token'])
    scene_of_token = dict(zip(frames.column('sample_token').to_pylist(), frames.column('scene_token').to_pylist()))
    # A sample the frames do not name is a scene of its own: whole-scene draws then still work.
    scene_of = [scene_of_token.get(t) or f'sample:{t}' for t in tokens]

    totals = kept.sum(axis=0)
    present = [k for k in np.argsort(totals, kind='stable') if totals[k] > 0]
    order = [int(k) for k in np.argsort(totals, kind='stable')]  # rarest first
    rare = [int(k) for k in present[:rare_classes]]
    target_classes, class_of = _vocabulary(mining_dir, classes)
    target = [classes.index(c) for c in target_classes]
    objective_columns = target or rare
    # The selection weighs a concept by -ln(its share of the mined crops); the oracle weighs a
    # class by -ln(its share of the boxes), the same rule on the labels.
    label_weights = rarity_weights(c for k, c in enumerate(classes) for _ in range(int(totals[k])))
    weights = np.array([label_weights[classes[k]] for k in objective_columns])
    train = TrainLabels(kept, scene_of, objective_columns, weights)
    groups = {classes[k]: [k] for k in order}
    groups['rare'] = rare
    if target:
        groups['target'] = target

    result = dict(
        mining_dir=os.path.abspath(mining_dir),
        train_pkl=os.path.abspath(train_pkl),
        draws=draws,
        seed=seed,
        use_valid_flag=use_valid_flag,
        classes=[classes[k] for k in order],
        rare_classes=[classes[k] for k in rare],
        target_classes=target_classes,
        objective=dict(
            rule='sum over classes c of w_c * sqrt(3D instances of c in the subset), w_c = -ln(share of c)',
            classes=[classes[k] for k in objective_columns],
            weights={classes[k]: round(float(w), 4) for k, w in zip(objective_columns, weights)},
        ),
        train=dict(
            samples=len(tokens),
            scenes=len(train.scenes),
            instances={classes[k]: int(totals[k]) for k in order},
        ),
        subsets={},
    )
    for name in names:
        rows = _subset_rows(subset_paths(mining_dir, name)[0], position, train_pkl)
        unit = 'scene' if len(rows) < len(tokens) and train.whole_scenes(rows) else 'sample'
        # The same draws for every subset of one size and unit, whatever else is in the dir.
        rng = np.random.default_rng([seed, len(rows), int(unit == 'scene')])
        drawn = [train.draw(rng, len(rows), unit) for _ in range(draws)]
        mined = _MINED_NAME.match(name)
        fixed = _random_half(mining_dir, name, tokens) if mined else None
        split = 'random half of the subset + the best rest' if fixed is not None else 'the best subset of its size'
        fixed = fixed if fixed is not None else np.zeros(0, np.int64)
        oracle = train.oracle(len(rows) - len(fixed), unit, fixed, seed)
        value, oracle_value = train.value(rows), train.value(oracle)
        oracle_counts = train.measure(oracle)['instances']
        selected = train.measure(rows)['instances']
        entry = dict(
            file=_subset_files(mining_dir, name),
            unit=unit,
            samples=len(rows),
            scenes=int(len(np.unique(train.scene_id[rows]))),
            groups=_summaries(train, rows, drawn, totals, groups),
            entropy=dict(
                value=_entropy_bits(selected),
                random_mean=round(float(np.mean([_entropy_bits(train.measure(d)['instances']) for d in drawn])), 4),
            ),
            oracle=dict(
                split=split,
                samples=len(oracle),
                rare_instances=int(oracle_counts[rare].sum()),
                target_instances=int(oracle_counts[target].sum()) if target else None,
                value=round(oracle_value, 4),
                subset_value=round(value, 4),
                share_of_value=round(value / oracle_value, 4) if oracle_value else None,
            ),
            false_positives=(
                _false_positives(mining_dir, name, rows, tokens, every, classes, class_of, decoys)
                if decoys is not None
                else None
            ),
        )
        result['subsets'][name] = entry
    if out_file:
        write_json_atomic(result, os.path.join(mining_dir, out_file))
    return result
