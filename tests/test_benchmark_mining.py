"""tools/benchmark_mining.py's references: the bare script runs the pipeline's models, with
its settings, on its images (the timings themselves are the tool's, never a test's)."""

import copy
import os
import pickle

from conceptminer3d.benchmarks import run_pipeline_benchmark

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
