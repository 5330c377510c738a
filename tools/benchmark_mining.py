"""Mining throughput: per-stage items/s on the toy world, the per-image stage and the whole
`tools/mine.py` process against bare model compute (with the process's peak memory) and
against a process that runs only the two models (`tools/benchmark_bare_models.py`), and the
outlier stage on synthetic embeddings at 10k/100k/1M crops.

    python tools/benchmark_mining.py [--config configs/mining/toy.py] [--samples 8] [--device cuda]
        [--outlier-sizes 10000 100000 1000000] [--cfg-options k=v ...] [--out results.json]

Timings belong here, never in tests. Run on an idle machine.
"""

import argparse
import json
import os

from conceptminer3d.apis import load_mining_config
from conceptminer3d.cli import run_tool
from conceptminer3d.launch import DictAction
from conceptminer3d_benchmarks.mining_speed import run_pipeline_benchmark
from conceptminer3d_benchmarks.outlier_speed import run_outlier_benchmark


def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument('--config', default='configs/mining/toy.py')
    p.add_argument('--data-root', default='data/toy_nuscenes')
    p.add_argument('--ann-file', default='nuscenes_infos_val.pkl')
    p.add_argument('--samples', type=int, default=8, help='samples (x cameras) for the pipeline benchmark')
    p.add_argument('--work-dir', default='work_dirs/benchmark_mining')
    p.add_argument('--device', help="run every model here (e.g. cuda, cpu); default: each component's own ('auto')")
    p.add_argument('--outlier-sizes', type=int, nargs='*', default=[10_000, 100_000, 1_000_000])
    p.add_argument('--outlier-dim', type=int, default=512)
    p.add_argument('--cfg-options', nargs='+', action=DictAction, help='override mining config keys: key=value')
    p.add_argument('--out', help='write all results as JSON here')
    args = p.parse_args()

    results = {}
    cfg = load_mining_config(args.config, args.cfg_options)
    cfg.subsets = None
    if args.device:
        for component in ('detector', 'embedder', 'captioner'):
            if cfg.get(component) is not None:
                cfg[component].device = args.device
    tools = os.path.dirname(os.path.abspath(__file__))
    pipe = run_pipeline_benchmark(
        cfg,
        args.data_root,
        args.ann_file,
        args.samples,
        args.work_dir,
        mine_tool=os.path.join(tools, 'mine.py'),
        bare_script=os.path.join(tools, 'benchmark_bare_models.py'),
    )
    results['pipeline'] = dict(config=args.config, **pipe)
    print(f'\n== {args.config}: {pipe["frames"]} frames, {pipe["crops"]} crops, {pipe["torch_threads"]} torch threads')
    print(f'{"stage":<22}{"items":>8}{"seconds":>10}{"items/s":>10}')
    for name, s in pipe['stages'].items():
        print(f'{name:<22}{s["items"]:>8}{s["seconds"]:>10.2f}{s["items_per_s"] or 0:>10.1f}')
    print(
        f'bare model compute (detect {pipe["bare_detect_s"]:.2f} s + embed {pipe["bare_embed_s"]:.2f} s) = '
        f'{pipe["bare_model_s"]:.2f} s; pipeline detect+embed {pipe["pipeline_detect_embed_s"]:.2f} s; '
        f'overhead {pipe["overhead_pct"]:+.1f}%'
    )
    print(
        f'whole tools/mine.py process {pipe["process_s"]:.2f} s ({pipe["process_overhead_pct"]:+.1f}% over bare '
        'compute; imports, model loading, outliers, captions and writing included); '
        f'peak RSS {pipe["peak_rss_mb"]:.0f} MB'
    )
    print(
        f'bare script process (detection and embedding alone, imports and building included: '
        f'tools/benchmark_bare_models.py) {pipe["bare_script_s"]:.2f} s ({pipe["bare_script_overhead_pct"]:+.1f}% over '
        f'bare compute); tools/mine.py {pipe["process_vs_bare_script_pct"]:+.1f}% over it. Its model calls alone, '
        f'its PIL crop preprocessing included: {pipe["bare_script_model_s"]:.2f} s'
    )
    projection = pipe['nuscenes_train_projection']
    print(
        f'projected to nuScenes train ({projection["images"]:,} images, at this run\'s crops per image and '
        f'captioned share): {projection["total_hours"]:.1f} h, bound by {projection["bound_by"]}; '
        + ', '.join(f'{name} {h:.1f} h' for name, h in projection['hours'].items())
    )

    if args.outlier_sizes:
        rows = run_outlier_benchmark(sizes=tuple(args.outlier_sizes), dim=args.outlier_dim)
        results['outliers'] = rows
        print(f'\n== outlier stage, synthetic {args.outlier_dim}-d embeddings')
        print(f'{"n":>9} {"detector":<28}{"seconds":>9}{"crops/s":>11}{"recall":>8}')
        for r in rows:
            print(f'{r["n"]:>9} {r["detector"]:<28}{r["seconds"]:>9.2f}{r["crops_per_s"]:>11.0f}{r["recall"]:>8.3f}')
    if args.out:
        os.makedirs(os.path.dirname(os.path.abspath(args.out)), exist_ok=True)
        with open(args.out, 'w') as f:
            json.dump(results, f, indent=1)


if __name__ == '__main__':
    run_tool(main)
