"""``tools/benchmark.py``: does training on the mined 20% beat training on a random 20%?

Train and validate every arm × seed, or collect runs already trained, then write
``benchmark.json``, ``benchmark.png`` and print the tables.
"""

from __future__ import annotations

import argparse
import os
import sys
from typing import Callable, List, Optional

from mmengine.config import DictAction

from ..mining.runtime.atomic_files import write_json_atomic
from .arms import ARMS, BASELINE_ARM, WORLDS, arm_config, world_of_config
from .metric_log import MetricsNotFoundError
from .plot import plot_summary
from .report import format_report
from .runs import find_runs
from .runs import full_train_set as collected_full_train_set
from .schedule import Schedule
from .summary import summarize
from .training import StudySpec, full_train_set, iteration_matched, run_study

__all__ = ['main', 'parse_args']

DEFAULT_ARMS = ['full', 'random20', 'mined20']
QUICK_ITERS = 2  # --quick: a plumbing check, not a measurement
RESULT_JSON, RESULT_PLOT = 'benchmark.json', 'benchmark.png'
ITERATION_MATCHED_PLOT = 'benchmark_iteration_matched.png'


def parse_args(argv: Optional[List[str]] = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(
        prog='benchmark.py',
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
        epilog='examples:\n'
        '  tools/benchmark.py --quick --work-dir work_dirs/benchmark_quick\n'
        '  tools/benchmark.py --world toy --seeds 0 1 2 --iters 200 --work-dir work_dirs/benchmark_toy\n'
        '  tools/benchmark.py --world nuscenes --epochs 20 --work-dir work_dirs/benchmark_nus\n'
        '  tools/benchmark.py --collect work_dirs/centerpoint_full work_dirs/centerpoint_mined20 '
        '--work-dir work_dirs/table',
    )
    p.add_argument(
        '--arms',
        nargs='+',
        default=None,
        metavar='ARM',
        help=f'arms to train (default: {" ".join(DEFAULT_ARMS)}; known: {", ".join(ARMS)})',
    )
    p.add_argument('--seeds', nargs='+', type=int, default=None, help='randomness.seed of each run (default 0 1 2)')
    length = p.add_mutually_exclusive_group()
    length.add_argument(
        '--iters',
        type=int,
        help='iteration-matched: every arm trains this many iterations (default for the toy world: the configs\' 200)',
    )
    length.add_argument(
        '--epochs',
        type=int,
        help='epoch-matched: every arm trains this many epochs over its own '
        'train set (default for nuscenes: the configs\' 20)',
    )
    p.add_argument(
        '--iteration-matched',
        nargs='+',
        metavar='ARM',
        help='with --epochs: then train these arms for as many iterations as full trained, for a second, '
        'iteration-matched table (full\'s epoch-matched runs stand for full in it)',
    )
    p.add_argument(
        '--val-interval',
        type=int,
        help='also validate every this many iterations (epochs with --epochs): the learning curve of each run',
    )
    p.add_argument('--world', choices=WORLDS, default='toy')
    p.add_argument(
        '--work-dir',
        help='study root: runs go to DIR/<arm>/seed<k>/, and the table to DIR/'
        f'{RESULT_JSON} and {RESULT_PLOT} (with --collect: where the table goes; '
        'default the first collected dir)',
    )
    p.add_argument(
        '--collect',
        nargs='+',
        metavar='WORK_DIR',
        help='build the table from runs already trained: run work dirs or directories holding them',
    )
    p.add_argument(
        '--quick',
        action='store_true',
        help='every arm end to end on a tiny toy world, a few iterations, one seed: a plumbing check',
    )
    p.add_argument('--toy-models', help='with --quick: toy mining models directory to use (built if missing)')
    p.add_argument('--config-dir', help='where the arms\' configs are (default: the checkout\'s configs/)')
    p.add_argument('--data-root', help='move every arm\'s data paths under this dataset root')
    p.add_argument('--mining-dir', help='mine into DIR/<mining dir name> instead of the configs\' mining work dirs')
    p.add_argument('--mining-config', help='mine with this config instead of the configs\' (not the annotation arm)')
    p.add_argument(
        '--fixed-subsets',
        action='store_true',
        help='every seed trains on the subsets of subset seed 0 (default: seed k draws subset seed k)',
    )
    p.add_argument('--cfg-options', nargs='+', action=DictAction, help='override keys of every arm: key=value')
    return p.parse_args(argv)


def _write_outputs(summary: dict, out_dir: str) -> None:
    os.makedirs(out_dir, exist_ok=True)
    summary['outputs'] = dict(json=os.path.join(out_dir, RESULT_JSON), plot=os.path.join(out_dir, RESULT_PLOT))
    second = summary.get('iteration_matched')
    if second:
        summary['outputs']['iteration_matched_plot'] = os.path.join(out_dir, ITERATION_MATCHED_PLOT)
        plot_summary(second, summary['outputs']['iteration_matched_plot'])
    write_json_atomic(summary, summary['outputs']['json'])
    plot_summary(summary, summary['outputs']['plot'])
    print(format_report(summary))
    if second:
        print('\n' + format_report(second))
    print(f'\nwrote {", ".join(summary["outputs"].values())}')


def _collect(args) -> dict:
    results = find_runs(args.collect)
    if args.arms:
        found = sorted({r.arm for r in results})
        unknown = sorted(set(args.arms) - set(found))
        if unknown:
            raise ValueError(f'no collected run of arm(s) {", ".join(unknown)}; found {", ".join(found)}')
        results = [r for r in results if r.arm in args.arms]
    worlds = {world_of_config(r.config) for r in results if r.config} - {None}
    summary = summarize(
        results,
        collected_full_train_set(results, BASELINE_ARM),
        args.arms,
        meta=dict(
            mode='collect',
            world=worlds.pop() if len(worlds) == 1 else None,
            sources=[os.path.abspath(p) for p in args.collect],
        ),
    )
    _write_outputs(summary, args.work_dir or args.collect[0])
    return summary


def _train(args, argv: List[str], prepare_quick: Optional[Callable]) -> dict:
    if not args.work_dir:
        raise ValueError('--work-dir is needed to train (runs go to DIR/<arm>/seed<k>/)')
    arms = args.arms or DEFAULT_ARMS
    if len(set(arms)) != len(arms):
        raise ValueError(f'an arm is named twice in --arms {" ".join(arms)}')
    for arm in arms:  # unknown arms and missing configs fail before anything is built
        arm_config(arm, args.world, args.config_dir)
    if args.quick and args.world != 'toy':
        raise ValueError('--quick runs on the toy world')
    if args.quick and prepare_quick is None:
        raise ValueError('--quick needs the toy world and models: run it through tools/benchmark.py')
    if args.iteration_matched and not args.epochs:
        raise ValueError('--iteration-matched follows an epoch-matched study: give --epochs')
    if args.iteration_matched:
        for arm in args.iteration_matched:
            arm_config(arm, args.world, args.config_dir)
    schedule = (
        Schedule('iters', args.iters, args.val_interval)
        if args.iters
        else Schedule('epochs', args.epochs, args.val_interval)
        if args.epochs
        else Schedule('iters', QUICK_ITERS)
        if args.quick
        else None
    )
    quick = prepare_quick(args.work_dir, args.toy_models) if args.quick else None
    spec = StudySpec(
        arms=arms,
        seeds=args.seeds or ([0] if args.quick else [0, 1, 2]),
        world=args.world,
        work_dir=args.work_dir,
        schedule=schedule,
        config_dir=args.config_dir,
        data_root=args.data_root,
        mining_dir=args.mining_dir,
        mining_config=args.mining_config,
        vary_subsets=not args.fixed_subsets,
        cfg_options=args.cfg_options,
        quick=quick,
    )
    announce = lambda arm, seed, s: print(f'>>> {arm} seed {seed}: {s}', flush=True)  # noqa: E731
    results = run_study(spec, on_run=announce)
    full_train = full_train_set(spec, results, BASELINE_ARM)
    meta = dict(mode='train', world=args.world, quick=bool(args.quick), command=' '.join(['tools/benchmark.py', *argv]))
    summary = summarize(results, full_train, arms, meta=meta)
    if args.iteration_matched:
        second = iteration_matched(spec, results, args.iteration_matched)
        runs = [r for r in results if r.arm == BASELINE_ARM] + run_study(second, on_run=announce)
        table = summarize(runs, full_train, [BASELINE_ARM, *second.arms], meta=meta)
        # full's runs are its epoch-matched ones: the same number of iterations as every other arm here
        table.update(schedule=second.schedule.to_dict(), matched='iteration')
        summary['iteration_matched'] = table
    _write_outputs(summary, args.work_dir)
    return summary


def main(argv: Optional[List[str]] = None, prepare_quick: Optional[Callable] = None) -> dict:
    """The study's command line. ``prepare_quick(work_dir, toy_models)`` sets up ``--quick``'s
    tiny world and models (``conceptminer3d_toy.quick.prepare_quick``: the toy package is the
    tool's to bring, the product never imports it)."""
    argv = list(sys.argv[1:] if argv is None else argv)
    args = parse_args(argv)
    try:
        if args.collect:
            if args.quick or args.iters or args.epochs or args.seeds:
                raise ValueError('--collect reads finished runs: --quick, --iters, --epochs and --seeds do not apply')
            return _collect(args)
        return _train(args, argv, prepare_quick)
    # Mistakes in the command or the directories; a run that fails while training raises
    # RunFailedError (not caught) so that its traceback is kept.
    except (ValueError, FileNotFoundError, FileExistsError, MetricsNotFoundError) as exc:
        print(f'benchmark.py: error: {exc}', file=sys.stderr)
        raise SystemExit(2) from None
