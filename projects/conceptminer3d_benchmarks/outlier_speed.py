"""The outlier stage's speed and recall on synthetic embeddings (``tools/benchmark_mining.py``),
through the call the mining pipeline makes."""

from __future__ import annotations

import time

from conceptminer3d.mining.outliers.scoring import combine_outlier_flags, score_outliers
from conceptminer3d.registry import OUTLIER_DETECTORS

from .synthetic import make_synthetic_embeddings

__all__ = ['run_outlier_benchmark']


def run_outlier_benchmark(
    sizes=(10_000, 100_000, 1_000_000),
    dim: int = 512,
    seed: int = 0,
    contamination: float = 0.1,
    outlier_fraction: float = 0.05,
    detectors=None,
    verbose: bool = False,
) -> list[dict]:
    """Time the outlier detectors on synthetic embeddings and measure their recall.

    For every size, one data set is generated (not timed) and each detector is timed
    through :func:`~conceptminer3d.mining.outliers.scoring.score_outliers`, the call the mining
    pipeline makes: fitting plus scoring and flagging every crop.

    Args:
        sizes: numbers of crops to benchmark.
        dim: embedding size.
        seed: seed of the synthetic data.
        contamination: ``contamination`` of every detector (fraction flagged).
        outlier_fraction: fraction of planted outliers; keep it below ``contamination``
            so that a perfect detector reaches recall 1.
        detectors: detector configs (``dict(type=...)``, built from ``OUTLIER_DETECTORS``)
            to run; defaults to the three detectors with their default arguments.
        verbose: print each row as it is measured.

    Returns:
        One dict per (size, detector): ``n``, ``dim``, ``detector``, ``seconds`` (wall
        clock), ``cpu_seconds`` (all threads of this process; shows how much of the wall
        time other load on the machine took), ``crops_per_s``, ``recall`` (planted
        outliers flagged), ``precision`` (flagged crops that are planted outliers) and
        ``n_flagged``.
    """
    if detectors is None:
        detectors = [
            dict(type='IsolationForestOutliers'),
            dict(type='LocalOutlierFactorOutliers'),
            dict(type='KnnDistanceOutliers'),
        ]
    rows = []
    for n_samples in sizes:
        X, is_outlier = make_synthetic_embeddings(n_samples, dim=dim, outlier_fraction=outlier_fraction, seed=seed)
        # each detector alone, then all of them in one call, as the pipeline runs them (the
        # neighbour detectors share one search there)
        runs = [{c['type']: c} for c in detectors] + ([{c['type']: c for c in detectors}] if len(detectors) > 1 else [])
        for configs in runs:
            built = {name: OUTLIER_DETECTORS.build(dict(c, contamination=contamination)) for name, c in configs.items()}
            start, cpu_start = time.perf_counter(), time.process_time()
            flagged = combine_outlier_flags(score_outliers(built, X)[1])
            seconds = time.perf_counter() - start
            cpu_seconds = time.process_time() - cpu_start
            n_flagged = int(flagged.sum())
            n_true = int((flagged & is_outlier).sum())
            row = dict(
                n=n_samples,
                dim=dim,
                detector=next(iter(configs)) if len(configs) == 1 else 'all, one call (union)',
                seconds=round(seconds, 3),
                cpu_seconds=round(cpu_seconds, 3),
                crops_per_s=round(n_samples / seconds, 1),
                recall=round(n_true / max(int(is_outlier.sum()), 1), 4),
                precision=round(n_true / max(n_flagged, 1), 4),
                n_flagged=n_flagged,
            )
            rows.append(row)
            if verbose:
                print(row, flush=True)
        del X
    return rows
