"""tools/benchmark_mining.py's references: the bare script runs the pipeline's models, with
its settings, on its images (the timings themselves are the tool's, never a test's)."""

import copy
import os
import pickle

from conceptminer3d_benchmarks.mining_speed import run_pipeline_benchmark

from helpers import REPO


def test_bare_script_detects_what_the_pipeline_detects(toy_world, session_mining_cfg, tmp_path):
    cfg = copy.deepcopy(session_mining_cfg)
    cfg.captioner, cfg.subsets = None, None
    result = run_pipeline_benchmark(
        cfg,
        toy_world[0],
        'nuscenes_infos_val.pkl',
        2,
        str(tmp_path),
        bare_script=os.path.join(REPO, 'tools', 'benchmark_bare_models.py'),
    )
    with open(os.path.join(tmp_path, 'bare_images.txt')) as f:
        images = f.read().split()
    with open(os.path.join(toy_world[0], 'nuscenes_infos_val.pkl'), 'rb') as f:
        first_two = pickle.load(f)['data_list'][:2]
    assert sorted(images) == sorted(
        os.path.join(toy_world[0], 'samples', camera, info['images'][camera]['img_path'])
        for info in first_two
        for camera in info['images']
    )
    assert result['frames'] == len(images) == 12
    # The bare script embeds every box; the pipeline drops those under crops.min_size.
    assert 0 < result['counts']['crops'] <= result['counts']['detections'] == result['bare_script_crops']
    assert 'process_s' not in result and 0 < result['bare_script_model_s'] < result['bare_script_s']
    # Captions off: the projection to nuScenes covers the two per-image stages that ran.
    projection = result['nuscenes_train_projection']
    assert set(projection['hours']) == {'detect', 'embed'} and projection['bound_by'] in projection['hours']
    assert projection['images'] == 28_130 * 6


def test_selection_benchmark_builds_what_a_mining_dir_of_that_size_asks_for(tmp_path):
    """The synthetic nuScenes-size mining dir, shrunk: the subset stage reads it like a real run's."""
    import pyarrow.parquet as pq

    from conceptminer3d.subsets import SubsetSpec
    from conceptminer3d_benchmarks.selection_speed import run_selection_benchmark
    from conceptminer3d_benchmarks.synthetic import make_synthetic_mining_dir

    mining_dir = str(tmp_path / 'mining')
    train_pkl = make_synthetic_mining_dir(mining_dir, samples=300, scenes=12, crops=6000, embedding_dim=8)
    concepts = pq.read_table(os.path.join(mining_dir, 'concepts.parquet')).to_pandas()
    crops = pq.read_table(os.path.join(mining_dir, 'crops.parquet')).to_pandas()
    assert len(concepts) == len(crops) == 6000 and crops.crop_id.is_unique
    assert list(concepts.crop_id) == list(crops.crop_id)
    assert 0.03 < (concepts.group == 'Target').mean() < 0.07
    rows = run_selection_benchmark(mining_dir, train_pkl, [SubsetSpec(), SubsetSpec(unit='scene', selection='ranked')])
    assert [r['subset'] for r in rows] == ['random10_target10', 'random10_target10_ranked']
    assert rows[0]['selected'] == 60 and rows[0]['target_slots'] == 30
    assert rows[1]['selected'] >= 30 and rows[1]['peak_rss_mb'] > 0
