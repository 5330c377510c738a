"""A training subset mined from a search: the samples most like the queries, plus a random share.

With one query a sample ranks by its best crop (the largest cosine of any of its crops). With
several, the samples are chosen by the same coverage objective as the mined subsets
(:class:`~conceptminer3d.subsets.SqrtCoverage`, one feature per query): a query's evidence in a
sample is the summed cosine of the sample's crops among the query's ``match_pool`` best crops,
so the slots spread over the queries instead of going to whichever query matches most crops.
Samples the objective cannot tell apart (no evidence left) are filled by best-crop rank.
"""

from __future__ import annotations

import os
from typing import Optional, Sequence

import numpy as np
import pyarrow.parquet as pq
from scipy import sparse

from ..mining.contracts import CROPS_FILE
from ..mining.stages.frames import load_info_pickle
from ..subsets.baselines import select_random
from ..subsets.coverage import SqrtCoverage
from ..subsets.evaluation import mined_train_pickle
from ..subsets.listed import check_subset_name, write_listed_subset
from ..subsets.selection import REASON_RANDOM
from .crop_search import MiningRunEmbeddings
from .index import ExactCropIndex, top_k_rows

__all__ = ['REASON_QUERY', 'write_query_subset']

REASON_QUERY = 'query'
# A query's matches, per sample the subset takes by query.
_MATCHES_PER_SLOT = 10


def _best_per_sample(similarities: np.ndarray, sample_of_crop: np.ndarray, n_samples: int) -> np.ndarray:
    """(n_queries, n_samples): the best cosine of any crop of each sample (-inf for none)."""
    best = np.full((similarities.shape[0], n_samples), -np.inf, np.float32)
    known = sample_of_crop >= 0
    for q in range(similarities.shape[0]):
        np.maximum.at(best[q], sample_of_crop[known], similarities[q, known])
    return best


def _coverage_evidence(similarities: np.ndarray, sample_of_crop: np.ndarray, n_samples: int, match_pool: int):
    """(n_samples, n_queries) sparse: summed cosine of each sample's crops among each query's matches."""
    rows, cols, values = [], [], []
    for q in range(similarities.shape[0]):
        scores = np.where(sample_of_crop >= 0, similarities[q], -np.inf)
        matches = top_k_rows(scores, match_pool)
        matches = matches[np.isfinite(scores[matches]) & (scores[matches] > 0)]
        rows.append(sample_of_crop[matches])
        cols.append(np.full(matches.size, q))
        values.append(scores[matches].astype(np.float64))
    return sparse.csr_matrix(
        (np.concatenate(values), (np.concatenate(rows), np.concatenate(cols))), shape=(n_samples, similarities.shape[0])
    )


def write_query_subset(
    work_dir: str,
    name: str,
    queries: Sequence[str],
    samples: int,
    random_share: float = 0.0,
    seed: int = 0,
    train_pkl: Optional[str] = None,
    overwrite: bool = False,
    run: Optional[MiningRunEmbeddings] = None,
) -> dict:
    """Write subset ``name`` of ``samples`` train samples chosen by ``queries`` (and chance).

    Args:
        work_dir (str): a finished mining run of the 2D models, with subsets built (their
            manifest names the train pickle) or ``train_pkl`` given.
        name (str): the subset's name (``subsets/nuscenes_infos_train_<name>.pkl``).
        queries (list[str]): as for :func:`~.crop_search.search_mining_run`.
        samples (int): samples in the subset.
        random_share (float): the share of ``samples`` drawn uniformly from the rest, in [0, 1).
        seed (int): seed of the random share (the same seed, the same subset).
        train_pkl (str, optional): the train pickle that was mined.
        overwrite (bool): replace an existing subset of that name.

    Returns:
        dict: the subset's manifest (its ``source`` records the queries).
    """
    check_subset_name(name, work_dir, overwrite)
    if not 0 <= random_share < 1:
        raise ValueError(f'the random share must be in [0, 1), got {random_share}')
    run = run or MiningRunEmbeddings.open(work_dir)
    parsed, vectors = run.embed(queries)
    train_pkl = train_pkl or mined_train_pickle(work_dir)
    infos = load_info_pickle(train_pkl)
    data_list = infos['data_list']
    n = len(data_list)
    if not 1 <= samples <= n:
        raise ValueError(f'--samples must be in [1, {n}] (the train set has {n} samples), got {samples}')
    position = {info['token']: i for i, info in enumerate(data_list)}
    tokens = pq.read_table(os.path.join(work_dir, CROPS_FILE), columns=['sample_token']).column('sample_token')
    sample_of_crop = np.array([position.get(t, -1) for t in tokens.to_pylist()], np.int64)

    similarities = ExactCropIndex(run.embeddings).similarities(vectors)
    best = _best_per_sample(similarities, sample_of_crop, n)
    # every sample, best crop first; samples without crops last, in train order
    by_best_crop = top_k_rows(best.max(axis=0), n)
    with_crops = by_best_crop[np.isfinite(best.max(axis=0)[by_best_crop])]
    n_query = samples - int(round(random_share * samples))
    if len(parsed) == 1:
        chosen = list(with_crops[:n_query])
    else:
        evidence = _coverage_evidence(similarities, sample_of_crop, n, _MATCHES_PER_SLOT * n_query)
        coverage = SqrtCoverage(budget=n_query, weights=np.ones(len(parsed))).fit(evidence, tie_order=by_best_crop)
        chosen = list(coverage.ranking_)
        taken = set(chosen)
        chosen += [u for u in with_crops if u not in taken][: n_query - len(chosen)]
    # A sample is credited to the query it ranks highest for: cosines of different queries
    # are not on one scale, ranks are.
    rank = np.empty(best.shape, np.int64)
    rank[np.arange(len(parsed))[:, None], np.argsort(-best, axis=1, kind='stable')] = np.arange(n)
    selected = []
    for u in chosen:
        q = int(rank[:, u].argmin())
        selected.append(
            dict(
                sample_token=data_list[u]['token'],
                reason=REASON_QUERY,
                concept=parsed[q].value,
                score=round(float(best[q, u]), 4),
            )
        )
    rest = sorted(set(range(n)) - set(int(u) for u in chosen))
    for u in select_random(len(rest), samples - len(chosen), seed):
        selected.append(dict(sample_token=data_list[rest[u]]['token'], reason=REASON_RANDOM))
    source = dict(
        search=dict(
            queries=[dict(kind=q.kind, value=q.value) for q in parsed],
            samples=samples,
            random_share=random_share,
            seed=seed,
        )
    )
    return write_listed_subset(work_dir, name, selected, source, train_pkl=train_pkl, overwrite=overwrite, infos=infos)
