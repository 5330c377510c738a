"""VectorizedNuScenesMetric hands the devkit what the stock NuScenesMetric does, and so reports
the same metrics, for predictions made from the toy world's val boxes."""

import json
import math
import os
import pickle

import numpy as np
import pytest
import torch
from mmdet3d.evaluation.metrics import NuScenesMetric
from mmdet3d.structures import LiDARInstance3DBoxes

from conceptminer3d.metrics import VectorizedNuScenesMetric


def _predictions(val_infos, classes, seed=0):
    """Each val sample's ground truth, moved, resized, relabelled and rescored at random, plus
    boxes beyond every class's evaluation range: detections that match some boxes and not others,
    moving and still, of every class."""
    rng = np.random.default_rng(seed)
    results = []
    for sample_idx, info in enumerate(val_infos):
        instances = [i for i in info['instances'] if i['bbox_label_3d'] >= 0]
        boxes = np.array([i['bbox_3d'] + list(np.nan_to_num(i['velocity'])) for i in instances]).reshape(-1, 9)
        boxes[:, :3] += rng.normal(0, 0.3, (len(boxes), 3))
        boxes[:, 3:6] *= rng.uniform(0.8, 1.2, (len(boxes), 3))
        boxes[:, 6] += rng.normal(0, 0.3, len(boxes))
        boxes[:, 7:9] += rng.normal(0, 0.5, (len(boxes), 2))
        labels = np.array([i['bbox_label_3d'] for i in instances], dtype=np.int64)
        relabelled = rng.random(len(labels)) < 0.2
        labels[relabelled] = rng.integers(0, len(classes), relabelled.sum())
        far = np.zeros((3, 9))
        far[:, 0] = [45.0, 60.0, -70.0]
        far[:, 3:6] = 2.0
        boxes = np.concatenate([boxes, far])
        labels = np.concatenate([labels, rng.integers(0, len(classes), 3)])
        results.append(
            dict(
                pred_instances_3d=dict(
                    bboxes_3d=LiDARInstance3DBoxes(torch.tensor(boxes, dtype=torch.float32), box_dim=9),
                    scores_3d=torch.tensor(rng.random(len(boxes)), dtype=torch.float32),
                    labels_3d=torch.tensor(labels),
                ),
                pred_instances=dict(),
                sample_idx=sample_idx,
            )
        )
    return results


def _evaluate(metric_class, root, version, classes, results, out_dir):
    metric = metric_class(data_root=root, ann_file=os.path.join(root, 'nuscenes_infos_val.pkl'),
                          jsonfile_prefix=str(out_dir))  # fmt: skip
    metric.dataset_meta = dict(classes=classes, version=version)
    metrics = metric.compute_metrics(results)
    with open(out_dir / 'pred_instances_3d' / 'results_nusc.json') as f:
        return metrics, json.load(f)


@pytest.fixture(scope='module')
def both_evaluations(toy_world, tmp_path_factory):
    root, config = toy_world
    with open(os.path.join(root, 'nuscenes_infos_val.pkl'), 'rb') as f:
        val = pickle.load(f)
    classes = list(val['metainfo']['categories'])
    results = _predictions(val['data_list'], classes)
    out = tmp_path_factory.mktemp('metrics')
    predicted = sum(len(result['pred_instances_3d']['labels_3d']) for result in results)
    return (
        _evaluate(NuScenesMetric, root, config.version, classes, results, out / 'stock'),
        _evaluate(VectorizedNuScenesMetric, root, config.version, classes, results, out / 'vectorized'),
        (predicted, len(results)),
    )


def test_vectorized_metric_reports_the_stock_metrics(both_evaluations):
    (stock, _), (vectorized, _), _ = both_evaluations
    assert stock.keys() == vectorized.keys()
    # a class without predictions has NaN errors in both
    different = {k: (stock[k], vectorized[k]) for k in stock if not (stock[k] == vectorized[k] or
                 (math.isnan(stock[k]) and math.isnan(vectorized[k])))}  # fmt: skip
    assert different == {}
    mean_ap = stock['pred_instances_3d_NuScenes/mAP']
    assert 0.05 < mean_ap < 0.95, f'predictions should match some boxes and miss others: mAP {mean_ap}'


def test_vectorized_metric_writes_the_stock_submission(both_evaluations):
    (_, stock), (_, vectorized), (predicted, samples) = both_evaluations
    assert stock['meta'] == vectorized['meta']
    assert stock['results'].keys() == vectorized['results'].keys()
    stock_boxes = [box for boxes in stock['results'].values() for box in boxes]
    vectorized_boxes = [box for boxes in vectorized['results'].values() for box in boxes]
    assert len(stock_boxes) == len(vectorized_boxes)
    # at least the two boxes per sample beyond every class's evaluation range are dropped
    assert 0 < len(stock_boxes) <= predicted - 2 * samples
    text = ('sample_token', 'detection_name', 'attribute_name', 'size', 'detection_score')
    assert [[box[k] for k in text] for box in stock_boxes] == [[box[k] for k in text] for box in vectorized_boxes]
    for key in ('translation', 'rotation', 'velocity'):
        np.testing.assert_allclose([b[key] for b in vectorized_boxes], [b[key] for b in stock_boxes], rtol=0, atol=1e-9)
    attributes = {box['attribute_name'] for box in stock_boxes}
    assert {'vehicle.moving', 'vehicle.parked'} <= attributes
