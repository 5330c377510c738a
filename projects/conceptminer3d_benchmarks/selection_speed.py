"""The subset stage at nuScenes train's size (``tools/benchmark_selection.py``): ``build_subsets``
of each spec in a process of its own, on a synthetic mining dir (``synthetic.make_synthetic_mining_dir``)."""

from __future__ import annotations

import dataclasses
import json
import subprocess
import sys
import time

from .child_process import die_with_parent

__all__ = ['run_selection_benchmark']


def run_selection_benchmark(mining_dir: str, train_pkl: str, specs) -> list[dict]:
    """``build_subsets`` of each ``SubsetSpec`` in a process of its own (reading the tables,
    selecting, the random baseline, the coreset when there are embeddings, writing the
    pickles and the manifest): wall time and peak resident memory."""
    rows = []
    for spec in specs:
        code = (
            'import sys, time, json, resource\n'
            'from conceptminer3d.subsets import SubsetSpec, build_subsets\n'
            f'spec = SubsetSpec(**{dataclasses.asdict(spec)!r})\n'
            'start = time.perf_counter()\n'
            f'manifest = build_subsets({mining_dir!r}, {train_pkl!r}, spec)\n'
            'print(json.dumps(dict(seconds=time.perf_counter() - start, selected=manifest["num_selected"],'
            ' target=manifest["reasons"].get("target", 0),'
            ' peak_kib=resource.getrusage(resource.RUSAGE_SELF).ru_maxrss)))\n'
        )
        start = time.perf_counter()
        out = subprocess.run([sys.executable, '-c', code], check=True, capture_output=True, text=True,
                             preexec_fn=die_with_parent).stdout  # fmt: skip
        wall = time.perf_counter() - start
        inner = json.loads(out.strip().splitlines()[-1])
        rows.append(
            dict(
                subset=spec.name,
                unit=spec.unit,
                process_s=round(wall, 2),
                build_subsets_s=round(inner['seconds'], 2),
                selected=inner['selected'],
                target_slots=inner['target'],
                peak_rss_mb=round(inner['peak_kib'] / 1024, 1),
            )
        )
    return rows
