"""Search over a toy mining run: text, crop-id and image queries against brute-force cosines of
the run's own embeddings, the cached approximate index against the exact search, the results
page, a subset mined from a query that SubsetNuScenesDataset loads, and bad input as one line."""

import json
import os
import pickle
import shutil
import subprocess
import sys

import numpy as np
import pyarrow.parquet as pq
import pytest
from PIL import Image

from conceptminer3d.mining.stages.embedding import OpenClipEmbedder
from conceptminer3d.search import (
    IvfCropIndex,
    MiningRunEmbeddings,
    load_or_build_index,
    search_mining_run,
    write_query_subset,
    write_search_results,
)
from conceptminer3d.search.queries import prompt_text
from conceptminer3d.subsets import subset_membership, subset_paths

from helpers import REPO, copy_run_with_subsets

TRAIN = 'nuscenes_infos_train.pkl'
TOOL = os.path.join(REPO, 'tools', 'search.py')


@pytest.fixture(scope='module')
def run_dir(train_mining, toy_world, tmp_path_factory):
    """The toy mining run (two cameras) with the default subsets built."""
    return copy_run_with_subsets(train_mining, toy_world[0], str(tmp_path_factory.mktemp('search_run')))


def _run(run_dir):
    crops = pq.read_table(os.path.join(run_dir, 'crops.parquet')).to_pandas()
    embeddings = np.load(os.path.join(run_dir, 'embeddings.npy'))
    with open(os.path.join(run_dir, 'manifest.json')) as f:
        manifest = json.load(f)
    return crops, embeddings, manifest


def _brute_force(embeddings, vectors, top, combine=np.mean):
    scores = combine(vectors.astype(np.float64) @ embeddings.T.astype(np.float64), axis=0)
    return np.lexsort((np.arange(scores.size), -scores))[:top], scores


def _assert_top(results, expected, scores):
    """The results are the brute-force top (rows whose scores tie to float32 rounding may swap)."""
    np.testing.assert_allclose(results.score, scores[expected], rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(scores[results.row], results.score, rtol=1e-5, atol=1e-6)
    assert results.row.is_unique


def test_a_crop_finds_itself_first_then_its_nearest_crops(run_dir):
    crops, embeddings, _ = _run(run_dir)
    assert len(crops) > 50
    crop_id = crops.crop_id.iloc[17]
    results, queries, index = search_mining_run(run_dir, [crop_id], top=10)
    expected, scores = _brute_force(embeddings, embeddings[17:18], 10)
    assert queries[0].kind == 'crop' and index is None
    assert results.crop_id.iloc[0] == crop_id and results.score.iloc[0] == pytest.approx(1.0, abs=1e-5)
    _assert_top(results, expected, scores)
    assert list(results.crop_id) == list(crops.crop_id.iloc[results.row])
    assert list(results[['x1', 'y1', 'x2', 'y2']].to_numpy().ravel()) == list(
        crops[['x1', 'y1', 'x2', 'y2']].iloc[results.row].to_numpy().ravel()
    )


def test_text_and_image_queries_use_the_runs_embedder_and_combine(run_dir, tmp_path):
    crops, embeddings, manifest = _run(run_dir)
    embedder = OpenClipEmbedder(**{k: v for k, v in manifest['config']['embedder'].items() if k != 'type'})
    text = embedder.encode_texts(['a photo of a traffic cone'])
    frame = pq.read_table(os.path.join(run_dir, 'frames.parquet')).to_pandas().img_path.iloc[0]
    image = embedder.encode_images([Image.open(frame)])
    crop_row = 5

    results, queries, _ = search_mining_run(run_dir, ['traffic_cone', frame, crops.crop_id.iloc[crop_row]], top=15)
    assert [q.kind for q in queries] == ['text', 'image', 'crop']
    vectors = np.concatenate([text, image, embeddings[crop_row : crop_row + 1]])
    expected, scores = _brute_force(embeddings, vectors, 15)
    _assert_top(results, expected, scores)

    any_of, _, _ = search_mining_run(run_dir, ['traffic_cone', frame], top=15, combine='max')
    _assert_top(any_of, *_brute_force(embeddings, vectors[:2], 15, np.max))

    back_only, _, _ = search_mining_run(run_dir, ['traffic_cone'], top=1000, cameras=['CAM_BACK'])
    assert set(back_only.camera) == {'CAM_BACK'} and len(back_only) == (crops.camera == 'CAM_BACK').sum()
    assert prompt_text('a photo of a bus', 'a photo of a {}') == 'a photo of a bus'
    assert prompt_text('construction_vehicle', 'a photo of a {}') == 'a photo of a construction vehicle'


def test_the_approximate_index_returns_the_exact_top_k_and_is_cached(run_dir):
    crops, embeddings, _ = _run(run_dir)
    queries = list(crops.crop_id.iloc[[3, 40, 77]])
    for query in [queries[:1], queries]:
        exact, _, _ = search_mining_run(run_dir, query, top=20)
        approximate, _, built = search_mining_run(run_dir, query, top=20, index='approximate')
        np.testing.assert_allclose(approximate.score, exact.score, rtol=1e-5)
        _assert_top(approximate, *_brute_force(embeddings, embeddings[crops.crop_id.isin(query).to_numpy()], 20))
    assert not built['built'] and os.path.isfile(os.path.join(built['path'], 'index.faiss'))
    run = MiningRunEmbeddings.open(run_dir)
    again, record = load_or_build_index(os.path.join(run_dir, 'cache'), run.embeddings, run.identity, IvfCropIndex())
    assert record['key'] == built['key'] and not record['built']
    other, record = load_or_build_index(
        os.path.join(run_dir, 'cache'), run.embeddings, run.identity, IvfCropIndex(n_lists=4)
    )
    assert record['key'] != built['key'] and record['built'] and other.options_['n_lists'] == 4
    assert not [d for d in os.listdir(os.path.dirname(built['path'])) if '.tmp-' in d]


def test_results_are_a_table_and_an_offline_page(run_dir, tmp_path):
    crops, _, _ = _run(run_dir)
    results, queries, _ = search_mining_run(run_dir, ['a photo of a car', crops.crop_id.iloc[0]], top=12)
    written = write_search_results(str(tmp_path / 'out'), results, queries, run_dir, progress=False)
    table = pq.read_table(written['table']).to_pandas()
    assert list(table.crop_id) == list(results.crop_id) and list(table['rank']) == list(range(1, 13))
    assert {'score', 'sample_token', 'camera', 'x1', 'y2', 'yolo_class', 'top_concept', 'group'} <= set(table.columns)
    with open(written['page']) as f:
        page = f.read()
    assert page.count('class="card') == 12 and 'http' not in page
    thumbs = [p.split('"')[0] for p in page.split('<img src="')[1:]]
    assert all(os.path.isfile(os.path.join(tmp_path / 'out', t)) for t in thumbs)
    frames = [p.split('"')[0] for p in page.split('<a href="')[1:]]
    assert all(os.path.isfile(os.path.normpath(os.path.join(tmp_path / 'out', f))) for f in frames)


def test_a_query_subset_trains_like_the_mined_ones(run_dir, toy_world):
    from test_subsets import _object_sample_info_path, _subset_dataset

    crops, embeddings, _ = _run(run_dir)
    with open(os.path.join(toy_world[0], TRAIN), 'rb') as f:
        train = pickle.load(f)['data_list']
    example = crops.crop_id.iloc[11]
    manifest = write_query_subset(run_dir, 'like_crop_11', [example], samples=6, random_share=0.5, seed=3)
    infos_path, dbinfos_path = subset_paths(run_dir, 'like_crop_11')
    with open(infos_path, 'rb') as f:
        tokens = [info['token'] for info in pickle.load(f)['data_list']]
    assert len(tokens) == 6 and manifest['reasons'] == {'query': 3, 'random': 3}
    # The query's three samples are those of best crop, by brute force.
    best = {}
    for token, score in zip(crops.sample_token, embeddings @ embeddings[11]):
        best[token] = max(best.get(token, -2.0), float(score))
    ranked = sorted(best, key=lambda t: (-best[t], [i['token'] for i in train].index(t)))
    membership = subset_membership(run_dir, 'like_crop_11')
    assert {t for t, m in membership.items() if m['reason'] == 'query'} == set(ranked[:3])
    assert manifest['source']['search']['queries'] == [{'kind': 'crop', 'value': example}]
    again = write_query_subset(run_dir, 'like_crop_11', [example], samples=6, random_share=0.5, seed=3, overwrite=True)
    assert [s['sample_token'] for s in again['selected']] == [s['sample_token'] for s in manifest['selected']]
    loaded = _subset_dataset(toy_world, mining_dir=run_dir, subset='like_crop_11')
    assert len(loaded) == 6 and _object_sample_info_path(loaded) == dbinfos_path

    two = write_query_subset(run_dir, 'two_queries', [crops.crop_id.iloc[11], crops.crop_id.iloc[60]], samples=4)
    won = {s['concept'] for s in two['selected']}
    assert won == {crops.crop_id.iloc[11], crops.crop_id.iloc[60]}, 'coverage gives each query slots'


@pytest.mark.parametrize(
    'queries, message',
    [
        (['  '], 'empty query'),
        (['0123abc/CAM_FRONT/99'], 'no crop'),
        (['--index', 'approximate', 'a photo of a car', '--cameras', 'CAM_SIDE'], 'no crops from camera'),
    ],
)
def test_bad_queries_get_one_clear_line(run_dir, queries, message):
    out = subprocess.run([sys.executable, TOOL, run_dir, *queries], capture_output=True, text=True)
    assert out.returncode == 2 and out.stderr.strip().splitlines() == [out.stderr.strip()]
    assert out.stderr.startswith('error: ') and message in out.stderr


def test_unreadable_images_and_runs_without_embeddings_get_one_clear_line(run_dir, tmp_path):
    broken = tmp_path / 'broken.jpg'
    broken.write_bytes(b'not a jpeg')
    out = subprocess.run([sys.executable, TOOL, run_dir, str(broken)], capture_output=True, text=True)
    assert (
        out.returncode == 2
        and out.stderr.strip() == f"error: cannot read image '{broken}' (not an image file, or corrupt)"
    )
    no_embeddings = tmp_path / 'annotations_run'
    shutil.copytree(run_dir, no_embeddings, ignore=shutil.ignore_patterns('cache', 'subsets'))
    crops = np.load(no_embeddings / 'embeddings.npy').shape[0]
    np.save(no_embeddings / 'embeddings.npy', np.zeros((crops, 0), np.float32))
    out = subprocess.run([sys.executable, TOOL, str(no_embeddings), 'a car'], capture_output=True, text=True)
    assert out.returncode == 2 and 'holds no crop embeddings' in out.stderr and len(out.stderr.splitlines()) == 1
    out = subprocess.run([sys.executable, TOOL, str(tmp_path / 'nowhere'), 'a car'], capture_output=True, text=True)
    assert out.returncode == 2 and 'not a finished mining run' in out.stderr
