"""Build mined subsets from existing mining outputs (the last stage of tools/mine.py, alone).

    python tools/build_subsets.py MINING_WORK_DIR --train-pkl PKL [--dbinfos PKL]
        [--target-ratio R] [--random-ratio R] [--unit sample|scene] [--seed N]
        [--selection ranked|uniform] [--concept-quota | --no-concept-quota]

Writes the mined subset, its random baseline and its coreset (k-center greedy, same size).

Options left out take SubsetSpec's defaults (projects/conceptminer3d/subsets/selection.py).
"""

import argparse
import dataclasses
import json

from conceptminer3d.cli import run_tool
from conceptminer3d.mining.runtime.writer_lock import add_writer_arguments, tool_writer_lock
from conceptminer3d.subsets import SubsetSpec, build_subsets
from conceptminer3d.subsets.selection import SELECTIONS, UNITS

CHOICES = dict(unit=UNITS, selection=SELECTIONS)


def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument('mining_dir', help='work dir of tools/mine.py (holds concepts.parquet)')
    p.add_argument('--train-pkl', required=True, help='the train info pickle that was mined')
    p.add_argument('--dbinfos', help='GT database to filter (nuscenes_dbinfos_train.pkl)')
    p.add_argument('--out-dir', help='default: MINING_WORK_DIR/subsets')
    add_writer_arguments(p)
    for field in dataclasses.fields(SubsetSpec):
        flag = '--' + field.name.replace('_', '-')
        if isinstance(field.default, bool):  # type=bool would read every non-empty string, 'False' too, as True
            p.add_argument(
                flag, action=argparse.BooleanOptionalAction, default=field.default, help=f'default: {field.default}'
            )
        else:
            p.add_argument(
                flag,
                type=type(field.default),
                default=field.default,
                choices=CHOICES.get(field.name),
                help=f'default: {field.default}',
            )
    args = p.parse_args()
    spec = SubsetSpec(**{field.name: getattr(args, field.name) for field in dataclasses.fields(SubsetSpec)})
    with tool_writer_lock(args.mining_dir, args):
        manifest = build_subsets(args.mining_dir, args.train_pkl, spec, args.dbinfos, args.out_dir)
    print(json.dumps({k: v for k, v in manifest.items() if k != 'selected'}, indent=1))


if __name__ == '__main__':
    run_tool(main)
