"""Crop search at scale: build time, query latency, recall@k and peak memory of the exact
search and the approximate indexes, on synthetic unit embeddings (``tools/benchmark_search.py``).

The embeddings are written once per size to a ``.npy`` file and memory-mapped, as a mining run's
``embeddings.npy`` is; queries are held-out rows of the same distribution, searched one at a
time. Each (size, method) runs in a fresh process, so its peak RSS is its own. The exact search
gives the reference top-k for recall.
"""

from __future__ import annotations

import concurrent.futures
import multiprocessing
import os
import statistics
import time
from typing import Optional, Sequence

import numpy as np

from conceptminer3d.mining.runtime.atomic_files import write_npy_atomic
from conceptminer3d.search.index import BLOCK_ROWS, ExactCropIndex, IvfCropIndex

from .synthetic import make_synthetic_embeddings

__all__ = ['SEARCH_METHODS', 'run_search_benchmark', 'write_synthetic_embeddings']

SEARCH_METHODS = ('exact', 'faiss-ivf', 'faiss-hnsw', 'hnswlib', 'usearch')


def write_synthetic_embeddings(path: str, n_rows: int, n_queries: int, dim: int = 512, seed: int = 0) -> np.ndarray:
    """Write ``n_rows`` synthetic unit embeddings to ``path`` (``.npy``) and return ``n_queries``
    held-out rows of the same distribution (one draw of ``n_rows + n_queries``, so the file is
    the same for the same arguments and is reused when it is there)."""
    meta = f'{path}.queries.npy'
    if os.path.isfile(path) and os.path.isfile(meta) and np.load(path, mmap_mode='r').shape == (n_rows, dim):
        return np.load(meta)
    rows, _ = make_synthetic_embeddings(n_rows + n_queries, dim=dim, outlier_fraction=0.0, seed=seed)
    queries = rows[n_rows:].copy()
    np.save(meta, queries)
    write_npy_atomic(rows[:n_rows], path)  # last: the pair is reused only once both are there
    return queries


def _rss_mb(field: str) -> float:
    """``VmRSS`` (now) or ``VmHWM`` (peak) of this process, in MB. Not ``ru_maxrss``: a spawned
    process inherits its parent's through fork and exec."""
    with open('/proc/self/status') as f:
        for line in f:
            if line.startswith(field + ':'):
                return int(line.split()[1]) / 1024
    raise RuntimeError(f'no {field} in /proc/self/status')


def _build(method: str, embeddings: np.ndarray, threads: int):
    """(search function (query (d,), k) -> rows, build options)."""
    n, dim = embeddings.shape
    if method == 'exact':
        index = ExactCropIndex(embeddings)
        return (lambda q, k: index.search(q[None], k)[0]), {}
    if method == 'faiss-ivf':
        index = IvfCropIndex(threads=threads).fit(embeddings)
        return (lambda q, k: index.search(q[None], k)[0][0]), index.options_
    blocks = [np.ascontiguousarray(embeddings[s : s + BLOCK_ROWS], np.float32) for s in range(0, n, BLOCK_ROWS)]
    if method == 'faiss-hnsw':
        import faiss

        faiss.omp_set_num_threads(threads)
        index = faiss.IndexHNSWFlat(dim, 32, faiss.METRIC_INNER_PRODUCT)
        index.hnsw.efConstruction, index.hnsw.efSearch = 80, 256
        for block in blocks:
            index.add(block)
        return (lambda q, k: index.search(q[None], k)[1][0]), dict(M=32, ef_construction=80, ef_search=256)
    if method == 'hnswlib':
        import hnswlib

        index = hnswlib.Index(space='ip', dim=dim)
        index.init_index(max_elements=n, M=16, ef_construction=100, random_seed=0)
        index.set_num_threads(threads)
        for start, block in zip(range(0, n, BLOCK_ROWS), blocks):
            index.add_items(block, np.arange(start, start + len(block)))
        index.set_ef(256)
        return (lambda q, k: index.knn_query(q[None], k)[0][0]), dict(M=16, ef_construction=100, ef=256)
    if method == 'usearch':
        from usearch.index import Index

        index = Index(ndim=dim, metric='ip', dtype='f32', connectivity=16, expansion_add=128, expansion_search=256)
        for start, block in zip(range(0, n, BLOCK_ROWS), blocks):
            index.add(np.arange(start, start + len(block)), block, threads=threads)
        return (lambda q, k: index.search(q, k).keys), dict(connectivity=16, expansion_add=128, expansion_search=256)
    raise ValueError(f'unknown method {method!r}: one of {SEARCH_METHODS}')


def _measure(method: str, path: str, queries: np.ndarray, k: int, threads: int, reference: Optional[np.ndarray]):
    embeddings = np.load(path, mmap_mode='r')
    rss_before = _rss_mb('VmRSS')  # the interpreter and its imports
    start = time.perf_counter()
    search, options = _build(method, embeddings, threads)
    build_s = time.perf_counter() - start
    latencies, found = [], []
    for query in queries:
        start = time.perf_counter()
        found.append(np.asarray(search(query, k), np.int64))
        latencies.append(time.perf_counter() - start)
    peak_mb = _rss_mb('VmHWM')
    recall = None
    if reference is not None:
        recall = float(np.mean([len(set(f.tolist()) & set(r.tolist())) / k for f, r in zip(found, reference)]))
    return dict(
        method=method,
        n=int(embeddings.shape[0]),
        dim=int(embeddings.shape[1]),
        options=options,
        build_s=round(build_s, 2),
        query_ms_median=round(1000 * statistics.median(latencies), 2),
        query_ms_max=round(1000 * max(latencies), 2),
        recall_at_k=None if recall is None else round(recall, 4),
        k=k,
        queries=len(queries),
        peak_rss_mb=round(peak_mb),
        added_rss_mb=round(peak_mb - rss_before),
        found=np.stack(found),
    )


def run_search_benchmark(
    sizes: Sequence[int] = (100_000, 3_000_000),
    methods_by_size: Optional[dict] = None,
    data_dir: str = 'work_dirs/benchmark_search',
    n_queries: int = 50,
    k: int = 100,
    dim: int = 512,
    threads: Optional[int] = None,
    verbose: bool = False,
) -> list:
    """Measure every method at every size; the exact search runs first and is the reference.

    Args:
        sizes: rows of synthetic embeddings.
        methods_by_size: size -> methods (default: all at 100 k and below, exact and faiss-ivf
            above: HNSW builds grow faster than linearly and already take 16–43 s at 100 k on
            2 cores; they were not measured at millions of rows).
        data_dir: where the embeddings are written (6 GB at 3 M × 512) and kept for reruns.
        n_queries, k: held-out queries, searched one at a time, and neighbours per query.
        threads: threads each method may use; default all cores.

    Returns:
        one dict per (size, method): build seconds, median and max query milliseconds,
        recall@k against the exact search, peak RSS of its process and what the method added to
        the interpreter's (MB; memory-mapped rows it read count).
    """
    threads = threads or os.cpu_count()
    os.makedirs(data_dir, exist_ok=True)
    rows = []
    context = multiprocessing.get_context('spawn')
    for n in sizes:
        methods = (methods_by_size or {}).get(n) or (SEARCH_METHODS if n <= 100_000 else ('exact', 'faiss-ivf'))
        path = os.path.join(data_dir, f'synthetic_{n}x{dim}.npy')
        queries = write_synthetic_embeddings(path, n, n_queries, dim)
        reference = None
        for method in ['exact', *[m for m in methods if m != 'exact']]:
            with concurrent.futures.ProcessPoolExecutor(max_workers=1, mp_context=context) as pool:
                row = pool.submit(_measure, method, path, queries, k, threads, reference).result()
            found = row.pop('found')
            if method == 'exact':
                reference = found
                row['recall_at_k'] = 1.0
            if method in methods:
                rows.append(row)
                if verbose:
                    print(row, flush=True)
    return rows
