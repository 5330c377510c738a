"""The toy CenterPoint really trains on CPU and is evaluated by the devkit, through the stock
NuScenesMetric's evaluation (VectorizedNuScenesMetric)."""

import json
import math
import os
import pickle

from mmengine.config import Config
from mmengine.runner import Runner

from helpers import (
    NUSCENES_METRIC,
    REPO,
    assert_nuscenes_metrics_add_up,
    retarget_data_root,
    short_toy_training,
    validation_metrics,
)

ITERS = 24


def test_toy_centerpoint_trains_and_is_evaluated_by_the_devkit(toy_world, tmp_path):
    root, _ = toy_world
    cfg = Config.fromfile(os.path.join(REPO, 'configs', 'centerpoint_pillar_toy.py'))
    cfg = retarget_data_root(cfg, root)
    cfg.work_dir = str(tmp_path / 'work')
    cfg = short_toy_training(cfg, ITERS)
    cfg.val_evaluator.jsonfile_prefix = str(tmp_path / 'results')
    runner = Runner.from_cfg(cfg)
    runner.train()

    losses = runner.message_hub.get_scalar('train/loss').data[0]
    assert len(losses) == ITERS and all(math.isfinite(x) for x in losses)
    first, last = sum(losses[:6]) / 6, sum(losses[-6:]) / 6
    assert last < 0.8 * first, f'loss did not fall: {first:.3f} -> {last:.3f}'

    # the loop validated after its last iteration; RuntimeInfoHook keeps the metrics
    logged = validation_metrics(runner)
    assert_nuscenes_metrics_add_up(logged, cfg.class_names)
    metrics = {key: logged[f'{NUSCENES_METRIC}/{key}'] for key in ('mAP', 'NDS')}
    with open(os.path.join(root, 'nuscenes_infos_val.pkl'), 'rb') as f:
        val_tokens = {info['token'] for info in pickle.load(f)['data_list']}
    result_files = [
        os.path.join(d, f) for d, _, fs in os.walk(tmp_path / 'results') for f in fs if f == 'results_nusc.json'
    ]
    with open(result_files[-1]) as f:
        results = json.load(f)['results']
    assert set(results) == val_tokens
    # the devkit wrote its own summary for the same numbers
    summaries = [
        os.path.join(d, f) for d, _, fs in os.walk(tmp_path / 'results') for f in fs if f == 'metrics_summary.json'
    ]
    with open(summaries[-1]) as f:
        summary = json.load(f)
    assert math.isclose(summary['nd_score'], metrics['NDS'], abs_tol=1e-4)
    assert math.isclose(summary['mean_ap'], metrics['mAP'], abs_tol=1e-4)
