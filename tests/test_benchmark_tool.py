"""tools/benchmark.py: the quick study end to end, --collect on its work dirs, and its errors.

Numbers are checked against what produced them (the runs' own metric logs, the devkit's
definition of mAP, mmdet3d's NuScenesDataset for instance counts), never against values
copied from an earlier run.
"""

import glob
import json
import math
import os
import shutil
import subprocess
import sys

import pytest
import torch
from mmengine.config import Config

from conceptminer3d.study import (
    Schedule,
    apply_schedule,
    load_run,
    nuscenes_metrics,
    read_last_val_metrics,
    schedule_of,
)
from conceptminer3d.study.cli import QUICK_ITERS, main
from conceptminer3d.study.metric_log import validation_curve
from conceptminer3d_toy.quick import prepare_quick

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
ARMS = ['full', 'random20', 'mined20']
PREFIX = 'NuScenes metric/pred_instances_3d_NuScenes'


@pytest.fixture(scope='module')
def quick_study(tmp_path_factory, toy_models):
    """``tools/benchmark.py --quick`` for three arms, as a user runs it: (work dir, stdout)."""
    work_dir = str(tmp_path_factory.mktemp('benchmark') / 'study')
    command = [
        sys.executable,
        os.path.join(REPO, 'tools', 'benchmark.py'),
        '--quick',
        '--arms',
        *ARMS,
        '--work-dir',
        work_dir,
        '--toy-models',
        os.path.dirname(toy_models['yolo']),
    ]
    done = subprocess.run(command, cwd=REPO, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-5000:]
    return work_dir, done.stdout


def _summary(work_dir):
    with open(os.path.join(work_dir, 'benchmark.json')) as f:
        return json.load(f)


def _reference_train_set(cfg):
    """Samples and instances per class as the run's own train dataset (built from its config by
    mmdet3d's registry, wrappers aside) parses its pickle."""
    from mmdet3d.registry import DATASETS

    node = cfg.train_dataloader.dataset
    while 'dataset' in node:
        node = node.dataset
    dataset = DATASETS.build(dict(node, pipeline=[]))
    classes = dataset.metainfo['classes']
    counts = dict.fromkeys(classes, 0)
    for i in range(len(dataset)):
        for label in dataset.get_data_info(i)['ann_info']['gt_labels_3d']:
            if label >= 0:
                counts[classes[label]] += 1
    return len(dataset), counts


def test_quick_study_reports_every_arm_and_class(quick_study):
    work_dir, stdout = quick_study
    summary = _summary(work_dir)
    assert list(summary['arms']) == ARMS and summary['quick'] and summary['matched'] == 'iteration'
    classes = summary['classes']
    assert len(classes) == 10
    full_counts = summary['full_train_instances']
    assert [full_counts[c] for c in classes] == sorted(full_counts[c] for c in classes), 'rarest class first'
    for arm, entry in summary['arms'].items():
        run_dir = os.path.join(work_dir, arm, 'seed0')
        assert entry['seeds'] == [0] and entry['runs'][0]['work_dir'] == run_dir
        for stat in [entry['mAP'], entry['NDS'], *entry['AP'].values()]:
            assert stat['n'] == 1 and stat['values'] == [stat['mean']]
        assert set(entry['AP']) == set(classes)
        # the devkit's mAP is the mean over classes of the per-class AP (itself a mean over thresholds);
        # NuScenesMetric logs each threshold's AP rounded to 4 decimals
        assert math.isclose(
            entry['mAP']['mean'], sum(s['mean'] for s in entry['AP'].values()) / len(classes), abs_tol=6e-5
        )
        # every run trained as tools/train.py would, with the seed and the matched iterations
        cfg = Config.fromfile(load_run(run_dir).config)
        assert cfg.randomness.seed == 0 and cfg.train_cfg.max_iters == summary['schedule']['iters']
        samples, counts = _reference_train_set(cfg)
        assert entry['num_train_samples'] == samples and entry['instances'] == counts
        assert arm in stdout
    assert summary['arms']['full']['instances'] == full_counts
    full = summary['arms']['full']
    for arm in ('random20', 'mined20'):
        entry = summary['arms'][arm]
        assert entry['num_train_samples'] == 2 * round(0.1 * full['num_train_samples'])
        if full['mAP']['mean']:  # an untrained model can score 0 everywhere: then there is no ratio
            assert entry['mAP']['ratio_to_full'] == pytest.approx(entry['mAP']['mean'] / full['mAP']['mean'])
        else:
            assert entry['mAP']['ratio_to_full'] is None
    for cls in classes:
        assert cls in stdout
    assert os.path.getsize(os.path.join(work_dir, 'benchmark.png')) > 0


def test_collect_reproduces_the_studys_numbers_from_the_metric_logs(quick_study, tmp_path, capsys):
    work_dir, _ = quick_study
    trained = _summary(work_dir)
    collected = main(['--collect', work_dir, '--work-dir', str(tmp_path)])
    assert collected['classes'] == trained['classes']
    for arm, entry in trained['arms'].items():
        again = collected['arms'][arm]
        assert again['seeds'] == entry['seeds'] and again['num_train_samples'] == entry['num_train_samples']
        assert again['instances'] == entry['instances']
        for key in ('mAP', 'NDS'):
            assert again[key]['values'] == pytest.approx(entry[key]['values'], abs=1e-12)
        for cls in trained['classes']:
            assert again['AP'][cls]['values'] == pytest.approx(entry['AP'][cls]['values'], abs=1e-12)
    assert os.path.isfile(tmp_path / 'benchmark.json') and os.path.isfile(tmp_path / 'benchmark.png')
    assert 'mined20' in capsys.readouterr().out


def test_collect_names_arm_and_seed_from_the_saved_config_outside_the_layout(quick_study, tmp_path):
    work_dir, _ = quick_study
    # a work dir as tools/train.py leaves it: no <arm>/seed<k> layout, no benchmark record
    moved = tmp_path / 'work_dirs' / 'my_mined_run'
    shutil.copytree(os.path.join(work_dir, 'mined20', 'seed0'), moved)
    os.remove(moved / 'benchmark_run.json')
    collected = main(['--collect', str(moved)])
    assert list(collected['arms']) == ['mined20'] and collected['arms']['mined20']['seeds'] == [0]
    assert collected['arms']['mined20']['mAP']['values'] == pytest.approx(
        _summary(work_dir)['arms']['mined20']['mAP']['values']
    )
    assert os.path.isfile(moved / 'benchmark.json')


def test_a_finished_study_is_read_back_not_retrained(quick_study, toy_models, capsys):
    work_dir, _ = quick_study
    logs = sorted(glob.glob(os.path.join(work_dir, '*', 'seed0', '*', 'vis_data', 'scalars.json')))
    quick = ['--quick', '--arms', *ARMS, '--work-dir', work_dir, '--toy-models', os.path.dirname(toy_models['yolo'])]
    again = main(quick, prepare_quick=prepare_quick)
    assert sorted(glob.glob(os.path.join(work_dir, '*', 'seed0', '*', 'vis_data', 'scalars.json'))) == logs
    assert again['arms']['mined20']['mAP']['values'] == _summary(work_dir)['arms']['mined20']['mAP']['values']
    capsys.readouterr()
    with pytest.raises(SystemExit):
        main([*quick, "--iters", str(QUICK_ITERS + 1)], prepare_quick=prepare_quick)
    assert f"was trained for {{'iters': {QUICK_ITERS}}}" in capsys.readouterr().err


def test_last_validation_wins_and_val_prefix_is_read(tmp_path):
    values = dict(
        mAP=0.25, NDS=0.5, **{f'car_AP_dist_{t}': a for t, a in zip(('0.5', '1.0', '2.0', '4.0'), (0.1, 0.2, 0.3, 0.6))}
    )
    log = tmp_path / '20240101_000000' / 'vis_data' / 'scalars.json'
    log.parent.mkdir(parents=True)
    later = {f'val/{PREFIX}/{k}': v + 0.1 for k, v in values.items()}
    log.write_text(
        '\n'.join(
            json.dumps(r)
            for r in [
                {'loss': 3.0, 'step': 1},
                {**{f'{PREFIX}/{k}': v for k, v in values.items()}, 'step': 2},
                {'loss': 2.0, 'step': 3},
                {**later, 'step': 4},
            ]
        )
        + '\n{"cut short'
    )
    metrics = read_last_val_metrics(str(tmp_path))
    assert metrics['step'] == 4 and metrics['mAP'] == pytest.approx(0.35)
    assert metrics['AP']['car'] == pytest.approx(sum(v + 0.1 for k, v in values.items() if '_AP_dist_' in k) / 4)
    assert nuscenes_metrics({'loss': 1.0}) is None


def test_iteration_matched_schedule_keeps_the_epoch_schedules_shape():
    from mmengine.optim.scheduler import CosineAnnealingLR, CosineAnnealingMomentum
    from mmengine.registry import PARAM_SCHEDULERS

    cfg = Config.fromfile(os.path.join(REPO, 'configs', 'centerpoint_full.py'), import_custom_modules=False)
    original = schedule_of(cfg)
    epoch_length = 3
    total = original.length * epoch_length

    def lrs(schedulers, build):
        optimizer = torch.optim.AdamW([torch.nn.Parameter(torch.zeros(1))], lr=cfg.optim_wrapper.optimizer.lr)
        built = [build(dict(s), optimizer) for s in schedulers]
        seen = []
        for _ in range(total):
            seen.append(optimizer.param_groups[0]['lr'])
            optimizer.step()
            for s in built:
                s.step()
        return seen

    def by_epoch(s, optimizer):  # as mmengine's runner converts an epoch schedule for a known epoch length
        kind = {'CosineAnnealingLR': CosineAnnealingLR, 'CosineAnnealingMomentum': CosineAnnealingMomentum}[s['type']]
        kwargs = {k: v for k, v in s.items() if k not in ('type', 'convert_to_iter_based', '_scope_')}
        return kind.build_iter_from_epoch(optimizer, epoch_length=epoch_length, **kwargs)

    expected = lrs(cfg.param_scheduler, by_epoch)
    apply_schedule(cfg, Schedule('iters', total))
    assert schedule_of(cfg) == Schedule('iters', total) and cfg.train_cfg.val_interval == total
    got = lrs(cfg.param_scheduler, lambda s, o: PARAM_SCHEDULERS.build(dict(s, optimizer=o)))
    assert got == pytest.approx(expected)


@pytest.mark.parametrize(
    'argv, message',
    [
        (['--collect', '/no/such/dir'], 'no such work dir'),
        (['--arms', 'full', 'mined_by_hand', '--work-dir', '{tmp}/w'], "unknown arm 'mined_by_hand'"),
        (['--quick', '--world', 'nuscenes', '--work-dir', '{tmp}/w'], '--quick runs on the toy world'),
        (['--arms', 'full'], '--work-dir is needed'),
        (['--arms', 'full', '--work-dir', '{tmp}/w', '--data-root', '{tmp}/no_world'], 'no toy dataset for'),
    ],
)
def test_clear_errors(argv, message, tmp_path, capsys):
    with pytest.raises(SystemExit) as exc:
        main([a.format(tmp=tmp_path) for a in argv])
    assert exc.value.code == 2
    assert message in capsys.readouterr().err
    assert not os.path.exists(tmp_path / 'w'), 'nothing is built before the arguments are checked'


def test_collect_errors_on_work_dirs_without_metrics(tmp_path, capsys):
    (tmp_path / 'empty').mkdir()
    with pytest.raises(SystemExit):
        main(['--collect', str(tmp_path / 'empty')])
    assert 'no runs with metrics under' in capsys.readouterr().err

    # trained, but killed before its validation: the train lines are there, no metrics
    log = tmp_path / 'killed' / '20240101_000000' / 'vis_data' / 'scalars.json'
    log.parent.mkdir(parents=True)
    log.write_text(json.dumps({'loss': 3.0, 'step': 1}) + '\n')
    with pytest.raises(SystemExit):
        main(['--collect', str(tmp_path / 'killed')])
    assert 'no validation metrics in' in capsys.readouterr().err


def _summary_of(runs_by_arm, classes=('bicycle', 'car')):
    """A summary as ``summarize`` builds it, from {arm: [(seed, mAP, {class: AP})]}."""
    from conceptminer3d.study import RunResult, summarize

    results = [
        RunResult(arm=arm, seed=seed, work_dir=f'/w/{arm}/{seed}', config=None, schedule={'iters': 10},
                  metrics=dict(mAP=m, NDS=m, AP=dict(ap)), classes=list(classes), train_set={})
        for arm, runs in runs_by_arm.items()
        for seed, m, ap in runs
    ]  # fmt: skip
    return summarize(results, dict(instances={'bicycle': 5, 'car': 50}))


def test_sensitivity_passes_only_when_full_beats_random_by_three_stds():
    from conceptminer3d.study.report import format_report

    apart = _summary_of(
        {
            'full': [(0, 0.50, {'bicycle': 0.30, 'car': 0.9}), (1, 0.52, {'bicycle': 0.10, 'car': 0.91})],
            'random20': [(0, 0.40, {'bicycle': 0.20, 'car': 0.80}), (1, 0.41, {'bicycle': 0.25, 'car': 0.81})],
        }
    )
    check = apart['sensitivity']
    # paired by seed: (0.10 + 0.11) / 2; the larger std is full's, 0.02 / sqrt(2)
    assert check['mAP']['margin'] == pytest.approx(0.105) and check['mAP']['paired_seeds'] == [0, 1]
    assert check['mAP']['threshold'] == pytest.approx(3 * 0.02 / 2**0.5)
    assert check['passed'] is True and check['classes']['car']['passed'] is True
    assert check['classes']['bicycle']['passed'] is False  # its own spread swamps it
    text = format_report(apart)
    assert text.index('This study can tell data apart') < text.index('arm ')

    close = _summary_of(
        {
            'full': [(0, 0.50, {}), (1, 0.40, {})],
            'random20': [(0, 0.45, {}), (2, 0.46, {})],
        },
        classes=(),
    )
    assert close['sensitivity']['mAP']['paired_seeds'] == []  # seeds 1 and 2 have no partner
    assert close['sensitivity']['mAP']['margin'] == pytest.approx(0.45 - 0.455)
    assert close['sensitivity']['passed'] is False
    assert 'CANNOT TELL DATA APART' in format_report(close).splitlines()[1]

    one_seed = _summary_of({'full': [(0, 0.5, {})], 'random20': [(0, 0.1, {})]}, classes=())
    assert one_seed['sensitivity']['passed'] is None and 'two seeds' in one_seed['sensitivity']['reason']
    assert _summary_of({'full': [(0, 0.5, {}), (1, 0.5, {})]}, classes=())['sensitivity']['passed'] is None


def test_epoch_matched_study_with_an_iteration_matched_table(tmp_path, toy_models):
    """--epochs with --iteration-matched: the listed arms then train as many iterations as full
    did, and full's epoch-matched runs stand for full in the second table."""
    work_dir = str(tmp_path / 'study')
    command = [sys.executable, os.path.join(REPO, 'tools', 'benchmark.py'), '--quick', '--epochs', '3',
               '--val-interval', '1', '--arms', 'full', 'random20', '--iteration-matched', 'random20',
               '--work-dir', work_dir, '--toy-models', os.path.dirname(toy_models['yolo'])]  # fmt: skip
    done = subprocess.run(command, cwd=REPO, capture_output=True, text=True, timeout=900)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-5000:]
    summary = _summary(work_dir)
    assert summary['matched'] == 'epoch' and set(summary['arms']) == {'full', 'random20'}
    second = summary['iteration_matched']
    assert second['matched'] == 'iteration' and list(second['arms']) == ['full', 'random20']
    records = {}
    for arm, sub in (('full', ''), ('random20', ''), ('random20', 'iteration_matched')):
        with open(os.path.join(work_dir, sub, arm, 'seed0', 'benchmark_run.json')) as f:
            records[(arm, sub)] = json.load(f)
    full_iters = records[('full', '')]['iterations']
    assert records[('random20', 'iteration_matched')]['iterations'] == full_iters
    assert records[('random20', 'iteration_matched')]['schedule'] == {'iters': full_iters}
    assert records[('random20', '')]['iterations'] < full_iters, 'epoch-matched: a 20% arm trains fewer iterations'
    assert second['arms']['full']['runs'][0]['work_dir'] == summary['arms']['full']['runs'][0]['work_dir']
    assert second['schedule'] == {'iters': full_iters}
    assert done.stdout.count('Can this study tell data apart? Undecided') == 2  # one seed: no spread
    assert os.path.isfile(os.path.join(work_dir, 'benchmark_iteration_matched.png'))
    # the learning curves: full validated after each of its epochs, the iteration-matched run
    # (no interval of its own) once, at its last iteration; the last point is the run's result
    full_curve = validation_curve(os.path.join(work_dir, 'full', 'seed0'))
    assert [point['step'] for point in full_curve] == [1, 2, 3]
    assert full_curve[-1]['mAP'] == pytest.approx(records[('full', '')]['metrics']['mAP'], abs=1e-12)
    matched_curve = validation_curve(os.path.join(work_dir, 'iteration_matched', 'random20', 'seed0'))
    assert [point['step'] for point in matched_curve] == [full_iters]


def test_a_validation_interval_gives_a_learning_curve_and_keeps_the_last_validation():
    from mmengine.config import Config

    from conceptminer3d.study import Schedule, apply_schedule

    cfg = Config.fromfile(os.path.join(REPO, 'configs', 'centerpoint_full_toy.py'))
    apply_schedule(cfg, Schedule('iters', 1000, val_interval=250))
    assert cfg.train_cfg == dict(type='IterBasedTrainLoop', max_iters=1000, val_interval=250)
    apply_schedule(cfg, Schedule('epochs', 2, val_interval=5))  # longer than the run: only at its end
    assert cfg.train_cfg == dict(type='EpochBasedTrainLoop', max_epochs=2, val_interval=2)
    with pytest.raises(ValueError, match='interval'):
        Schedule('iters', 10, val_interval=0)
