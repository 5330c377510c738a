"""How many rare objects each subset of a mining run caught, from the train pickle's 3D labels
(no training): per class, rarest first, against random subsets of the same size and unit and
against the best subset the labels allow.

    python tools/evaluate_selection.py MINING_DIR [--data-root DIR --ann-file PKL] [--draws 1000]

Writes MINING_DIR/selection_eval.json and MINING_DIR/selection_eval.png, prints the tables, and
rebuilds MINING_DIR/report/ (when there is one) so that its summary shows the same table. On a
toy world (its toy_world.json beside the pickles) it also counts the Target slots that went to a
camera distractor. Defaults: subsets.evaluation.evaluate_selection.
"""

import argparse
import inspect
import os

from conceptminer3d.cli import run_tool
from conceptminer3d.mining.runtime.writer_lock import add_writer_arguments, tool_writer_lock
from conceptminer3d.mining.stages.frames import load_info_pickle, resolve_ann_file
from conceptminer3d.report import REPORT_DIR, build_report
from conceptminer3d.subsets.evaluation import evaluate_selection, mined_train_pickle
from conceptminer3d.subsets.evaluation_display import format_selection_table, plot_selection_eval
from conceptminer3d_toy.world.distractors import sample_decoys

DEFAULTS = {k: v.default for k, v in inspect.signature(evaluate_selection).parameters.items()}


def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument('mining_dir', help='a tools/mine.py work dir with subsets/')
    p.add_argument('--data-root', help='dataset root; with --ann-file names the train pickle that was mined')
    p.add_argument('--ann-file', help='train info pickle (absolute, or relative to --data-root); '
                   "default: the one the subsets were built from")  # fmt: skip
    p.add_argument('--draws', type=int, default=DEFAULTS['draws'], help='random subsets per subset')
    p.add_argument('--seed', type=int, default=DEFAULTS['seed'], help='seed of the random draws')
    p.add_argument('--rare-classes', type=int, default=DEFAULTS['rare_classes'], help='least frequent classes = rare')
    p.add_argument('--no-valid-flag', action='store_true', help='count boxes with lidar points, not bbox_3d_isvalid')
    p.add_argument('--no-report', action='store_true', help='do not rebuild MINING_DIR/report/')
    add_writer_arguments(p)
    args = p.parse_args()
    if args.ann_file:
        train_pkl = resolve_ann_file(args.data_root or '', args.ann_file)
    else:
        train_pkl = mined_train_pickle(args.mining_dir)
    infos = load_info_pickle(train_pkl)
    # A toy world keeps the truth about its camera distractors beside its pickles.
    decoys = sample_decoys(args.data_root or os.path.dirname(train_pkl), infos)
    with tool_writer_lock(args.mining_dir, args):
        result = evaluate_selection(
            args.mining_dir,
            train_pkl,
            draws=args.draws,
            seed=args.seed,
            use_valid_flag=not args.no_valid_flag,
            rare_classes=args.rare_classes,
            decoys=decoys or None,
            infos=infos,
        )
        plot = plot_selection_eval(result, os.path.join(args.mining_dir, 'selection_eval.png'))
        print(format_selection_table(result))
        print(f'\nwrote {os.path.join(args.mining_dir, "selection_eval.json")} and {plot}')
        if not args.no_report and os.path.isfile(os.path.join(args.mining_dir, REPORT_DIR, 'index.html')):
            print(f'report: {build_report(args.mining_dir, progress=False)["path"]}')


if __name__ == '__main__':
    run_tool(main)
