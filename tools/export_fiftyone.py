"""Open a mining run in FiftyOne, and bring what you tag there back as a subset.

    python tools/export_fiftyone.py WORK_DIR [--name NAME] [--subset NAME ...] [--overwrite]
    python tools/export_fiftyone.py --import-tags TAG --work-dir WORK_DIR [--name NAME] [--overwrite]

The export writes a grouped dataset (one group per sample token, one slice per camera, images in
place) with the run's boxes, concepts, groups, outlier scores and captions, which subsets hold
each sample and why, a crop similarity index from the run's own embeddings, and a saved view
per subset and per Target concept. Then, in Python: `fiftyone.launch_app(
fiftyone.load_dataset(NAME))`. --import-tags writes the samples tagged TAG (on any camera, or on
any of their boxes) as WORK_DIR/subsets/nuscenes_infos_train_TAG.pkl, with its GT database, for
the same training configs (SubsetNuScenesDataset(mining_dir=WORK_DIR, subset=TAG)).

FiftyOne is an optional install: `make fiftyone`. By default it starts its own database
(FIFTYONE_DATABASE_DIR, default ~/.fiftyone); --database-uri uses a running MongoDB instead.
Defaults: curation.fiftyone_dataset.export_mining_run.
"""

import argparse
import json
import time

from conceptminer3d.cli import run_tool
from conceptminer3d.curation import export_mining_run, import_tagged_subset
from conceptminer3d.mining.runtime.writer_lock import add_writer_arguments, tool_writer_lock


def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument('work_dir', nargs='?', help='a tools/mine.py work dir')
    p.add_argument('--work-dir', dest='work_dir_option', help='the same, for --import-tags')
    p.add_argument('--name', help='dataset name; default conceptminer3d-<WORK_DIR name>')
    p.add_argument('--subset', nargs='+', help='subsets to mark and save views of; default all in WORK_DIR/subsets')
    p.add_argument('--overwrite', action='store_true', help='replace the dataset (or, with --import-tags, the subset)')
    p.add_argument('--import-tags', metavar='TAG', help='write the samples tagged TAG as subset TAG instead')
    p.add_argument('--database-uri', help="a running MongoDB (mongodb://host:port) instead of FiftyOne's own")
    p.add_argument('--no-progress', action='store_true')
    add_writer_arguments(p)  # --import-tags writes a subset into WORK_DIR
    args = p.parse_args()
    work_dir = args.work_dir or args.work_dir_option
    if not work_dir:
        p.error('give the mining work dir (WORK_DIR or --work-dir)')
    start = time.perf_counter()
    if args.import_tags:
        with tool_writer_lock(work_dir, args):
            manifest = import_tagged_subset(
                work_dir, args.import_tags, args.name, overwrite=args.overwrite, database_uri=args.database_uri
            )
        print(json.dumps({k: v for k, v in manifest.items() if k != 'selected'}, indent=1))
    else:
        summary = export_mining_run(
            work_dir,
            args.name,
            args.subset,
            overwrite=args.overwrite,
            database_uri=args.database_uri,
            progress=not args.no_progress,
        )
        print(json.dumps(summary, indent=1))
    print(f'done in {time.perf_counter() - start:.1f} s')


if __name__ == '__main__':
    run_tool(main)
