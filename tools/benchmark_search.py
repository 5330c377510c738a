"""Crop search at scale, and how right it is on a mining run.

    python tools/benchmark_search.py [--sizes 100000 3000000] [--queries 50] [--k 100] [--out results.json]
    python tools/benchmark_search.py --precision WORK_DIR --labels ANNOTATION_WORK_DIR [--query-classes ...]

The first form times the exact search and the approximate indexes (faiss IVF, the default
approximate index; faiss HNSW, hnswlib and usearch for comparison) on synthetic unit embeddings
memory-mapped from disk: build seconds, query latency one query at a time, recall@k against the
exact search, and each method's peak RSS. HNSW libraries run at 100 k rows and below only.

The second form measures precision@20 of text queries ('a photo of a <class>') and of crop-id
queries (each class's first crop found by the text query that lies on a box of that class)
against the 3D labels projected into the cameras (a run of configs/mining/annotations.py on the
same data), and whether the approximate index returns the exact top 20.

Timings belong here, never in tests. Run on an idle machine.
"""

import argparse
import json

from conceptminer3d.cli import run_tool
from conceptminer3d.search.evaluation import search_precision
from conceptminer3d_benchmarks.search_speed import run_search_benchmark

_CLASSES = ['bicycle', 'motorcycle', 'construction_vehicle', 'bus', 'trailer', 'truck', 'pedestrian', 'car']


def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument('--sizes', type=int, nargs='+', default=[100_000, 3_000_000])
    p.add_argument('--queries', type=int, default=50)
    p.add_argument('--k', type=int, default=100)
    p.add_argument('--data-dir', default='work_dirs/benchmark_search')
    p.add_argument('--precision', metavar='WORK_DIR', help='measure precision@20 on this mining run instead')
    p.add_argument('--labels', metavar='ANNOTATION_WORK_DIR', help='the annotation-source run of the same data')
    p.add_argument('--query-classes', nargs='+', default=_CLASSES)
    p.add_argument('--out', help='write the results as JSON here')
    args = p.parse_args()
    if args.precision:
        if not args.labels:
            p.error('--precision needs --labels (a run of configs/mining/annotations.py on the same data)')
        results = search_precision(args.precision, args.labels, args.query_classes)
        for row in results:
            print(row)
    else:
        results = run_search_benchmark(
            args.sizes, data_dir=args.data_dir, n_queries=args.queries, k=args.k, verbose=True
        )
        print(
            f'\n{"n":>9} {"method":<11}{"build s":>9}{"query ms":>10}{"max ms":>9}{"recall@k":>10}'
            f'{"peak MB":>9}{"added MB":>10}'
        )
        for r in results:
            print(
                f'{r["n"]:>9} {r["method"]:<11}{r["build_s"]:>9.1f}{r["query_ms_median"]:>10.2f}'
                f'{r["query_ms_max"]:>9.1f}{r["recall_at_k"]:>10.3f}{r["peak_rss_mb"]:>9}{r["added_rss_mb"]:>10}'
            )
    if args.out:
        with open(args.out, 'w') as f:
            json.dump(results, f, indent=1)


if __name__ == '__main__':
    run_tool(main)
