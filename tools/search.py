"""Find the crops of a mining run most like a text, an example crop or an image, and mine a subset
from them.

    python tools/search.py WORK_DIR QUERY... [--top K] [--cameras CAM ...] [--any] [--index approximate] [--out DIR]
    python tools/search.py WORK_DIR QUERY... --to-subset NAME --samples N [--random-share R] [--seed S]

A QUERY is a crop id of the run (sample_token/CAMERA/crop_index), an image file, or a text
prompt ("tractor on the road": written into the vocabulary's template, 'a photo of a {}', unless
it already starts so). Texts and images are embedded with the run's own embedder. Several queries
score a crop by the mean of their cosines, or with --any by the max. Prints the top K and writes
DIR/search.parquet and DIR/index.html (thumbnails; a click opens the camera image; default DIR:
WORK_DIR/search). --index approximate builds a faiss index once per run (cached in
WORK_DIR/cache/search_index/) instead of the exact search streamed over the embeddings.

--to-subset writes WORK_DIR/subsets/nuscenes_infos_train_NAME.pkl with its GT database: the N
train samples with the best-matching crops (several queries share the slots by the coverage
objective), R of them drawn at random instead; subset_manifest_NAME.json records the queries.
Train it with SubsetNuScenesDataset(mining_dir=WORK_DIR, subset=NAME), as the mined subsets.
"""

import argparse
import contextlib
import inspect
import os
import time

from conceptminer3d.cli import run_tool
from conceptminer3d.mining.runtime.writer_lock import add_writer_arguments, tool_writer_lock
from conceptminer3d.search import (
    INDEX_KINDS,
    MiningRunEmbeddings,
    search_mining_run,
    write_query_subset,
    write_search_results,
)

DEFAULTS = {
    k: v.default
    for function in (search_mining_run, write_query_subset)
    for k, v in inspect.signature(function).parameters.items()
}


def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument('work_dir', help='a tools/mine.py work dir')
    p.add_argument('queries', nargs='+', metavar='QUERY', help='text prompt, crop id or image file')
    p.add_argument('--top', type=int, default=DEFAULTS['top'], help='crops to show (default %(default)s)')
    p.add_argument('--cameras', nargs='+', help='only crops from these cameras')
    p.add_argument('--any', action='store_true', help='several queries: a crop like any of them (max, not mean)')
    p.add_argument('--index', choices=INDEX_KINDS, default=DEFAULTS['index'])
    p.add_argument('--out', help='results folder (default WORK_DIR/search)')
    p.add_argument('--to-subset', metavar='NAME', help='write the best-matching samples as subset NAME')
    p.add_argument('--samples', type=int, help='with --to-subset: samples in the subset')
    p.add_argument(
        '--random-share', type=float, default=DEFAULTS['random_share'], help='with --to-subset: share drawn at random'
    )
    p.add_argument('--seed', type=int, default=DEFAULTS['seed'], help='with --to-subset: seed of the random share')
    p.add_argument('--overwrite', action='store_true', help='with --to-subset: replace the subset')
    p.add_argument('--no-progress', action='store_true')
    add_writer_arguments(p)
    args = p.parse_args()
    if args.to_subset and not args.samples:
        p.error('--to-subset needs --samples N')
    start = time.perf_counter()
    out_dir = args.out or os.path.join(args.work_dir, 'search')
    # Results, a subset or a cached index go into the run's dir: one writer at a time there.
    # A search that writes elsewhere holds no lock, so a read-only shared run can be searched.
    inside = os.path.realpath(out_dir).startswith(os.path.realpath(args.work_dir) + os.sep)
    writes_into_run = inside or args.to_subset or args.index == 'approximate'
    with tool_writer_lock(args.work_dir, args) if writes_into_run else contextlib.nullcontext():
        run = MiningRunEmbeddings.open(args.work_dir)
        results, queries, index = search_mining_run(
            args.work_dir, args.queries, args.top, args.cameras, 'max' if args.any else 'mean', args.index, run=run
        )
        written = write_search_results(out_dir, results, queries, args.work_dir, progress=not args.no_progress)
        subset = None
        if args.to_subset:
            subset = write_query_subset(
                args.work_dir,
                args.to_subset,
                args.queries,
                args.samples,
                args.random_share,
                args.seed,
                overwrite=args.overwrite,
                run=run,
            )
    print(
        f'{"rank":>4} {"score":>6}  {"sample_token":<34} {"camera":<16} {"box":<20} {"class":<12} {"concept":<22} group'
    )
    for r in results.itertuples(index=False):
        box = f'{int(r.x1)},{int(r.y1)},{int(r.x2)},{int(r.y2)}'
        print(
            f'{r.rank:>4} {r.score:>6.3f}  {r.sample_token:<34} {r.camera:<16} {box:<20} '
            f'{r.yolo_class:<12} {r.top_concept or "-":<22} {r.group or "-"}'
        )
    if index:
        print(
            f'approximate index {index["key"]} ({"built" if index["built"] else "loaded"} in {index["seconds"]:.1f} s)'
        )
    print(f'wrote {written["table"]} and {written["page"]}')
    if subset:
        print(f'subset {args.to_subset}: {subset["num_selected"]} samples {subset["reasons"]} -> {subset["outputs"]}')
    print(f'done in {time.perf_counter() - start:.1f} s')


if __name__ == '__main__':
    run_tool(main)
