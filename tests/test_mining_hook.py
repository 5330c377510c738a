"""DataMiningHook's life in a training job: reuse, multi-process start-up, test mode, re-mining."""

import glob
import json
import os
import pickle
import subprocess
import sys

import pytest
import torch
from mmengine.runner import Runner

from conceptminer3d.hooks import DataMiningHook
from conceptminer3d.hooks.data_mining_hook import dist_mine_command
from conceptminer3d.launch import drop_train_only_hooks
from conceptminer3d.mining import MiningPipeline
from conceptminer3d.samplers.rare_concept_sampler import sample_weights_from_concepts
from conceptminer3d.subsets import subset_paths

from helpers import REPO, assert_nuscenes_metrics_add_up, free_port, mined_toy_cfg, torchrun_env

# Each rank writes what it got to a file of its own: the ranks' stdout and stderr interleave.
_HOOK_UNDER_TORCHRUN = """
import os, sys
from conceptminer3d.launch import init_distributed
init_distributed('pytorch')
from conceptminer3d.hooks import DataMiningHook
from conceptminer3d.hooks.data_mining_hook import MiningNotDoneError
config, root, work_dir, seed, out = sys.argv[1:6]
with open(f'{out}.rank{os.environ["RANK"]}', 'w') as f:
    try:
        hook = DataMiningHook(
            mining_config=config, data_root=root, work_dir=work_dir, subsets=dict(seed=int(seed)), progress=False
        )
    except MiningNotDoneError as error:
        f.write(str(error))
        sys.exit(3)
    f.write(f"selected {hook.summary['num_selected']} {hook.summary['spec']['seed']}")
"""


def _run(args):
    return subprocess.run(args, capture_output=True, text=True, cwd=REPO, env=torchrun_env(), timeout=900)


@pytest.fixture
def hook_mining_config(mining_cfg, tmp_path):
    """A mining config file with subsets, two cameras of the toy models (quick to mine)."""
    mining_cfg.frames.cameras = ['CAM_FRONT', 'CAM_BACK']
    mining_cfg.num_threads = 1
    path = str(tmp_path / 'mining_cfg.py')
    mining_cfg.dump(path)
    return path


def test_two_ranks_stop_at_once_with_the_command_that_mines_then_reuse_its_outputs(
    toy_world, hook_mining_config, tmp_path
):
    """Fresh mining dir, 2 gloo ranks: every rank stops before any work with the exact
    tools/dist_mine.sh command; once that command ran, the same job starts and reuses."""
    root, _ = toy_world
    work_dir = str(tmp_path / 'mining')
    script = tmp_path / 'hook_under_torchrun.py'
    script.write_text(_HOOK_UNDER_TORCHRUN)
    torchrun = [sys.executable, '-m', 'torch.distributed.run', '--nproc_per_node', '2']
    out = str(tmp_path / 'hook')

    def hook_job(seed):
        """Both ranks' results: (return code, [rank 0's, rank 1's])."""
        job = _run(
            [*torchrun, '--master_port', str(free_port()), str(script), hook_mining_config, root, work_dir, seed, out]
        )
        results = []
        for rank in (0, 1):
            with open(f'{out}.rank{rank}') as f:
                results.append(f.read())
        return job.returncode, results

    code, refusals = hook_job('0')
    assert code != 0
    assert all('mine first with' in r for r in refusals), refusals  # both ranks say it
    (command,) = {line.strip() for line in refusals[0].splitlines() if 'tools/dist_mine.sh' in line}
    assert command.startswith(f'bash tools/dist_mine.sh {hook_mining_config} 2 --data-root {root}')
    assert not os.path.exists(os.path.join(work_dir, 'cache')), 'nothing was mined inside training'

    mined = _run(command.split())
    assert mined.returncode == 0, mined.stderr[-3000:]
    embeddings = os.path.join(work_dir, 'embeddings.npy')
    stamp = os.stat(embeddings).st_mtime_ns

    code, started = hook_job('0')
    assert code == 0 and started[0] == started[1] and started[0].startswith('selected'), started  # same subset
    assert os.stat(embeddings).st_mtime_ns == stamp, 'finished outputs are reused, not rewritten'

    # Other subset settings: rank 0 rebuilds the pickles, rank 1 waits for them on the file system.
    code, reseeded = hook_job('5')
    assert code == 0 and reseeded[0] == reseeded[1] and reseeded[0].endswith(' 5'), reseeded
    assert os.stat(embeddings).st_mtime_ns == stamp


def test_finished_outputs_are_reused_without_a_model_or_a_rewrite(toy_world, hook_mining_config, tmp_path, monkeypatch):
    root, _ = toy_world
    work_dir = str(tmp_path / 'mining')
    first = DataMiningHook(mining_config=hook_mining_config, data_root=root, work_dir=work_dir, progress=False)
    subset_pkl, dbinfos_pkl = subset_paths(work_dir, 'random10_target10')
    outputs = [os.path.join(work_dir, 'embeddings.npy'), os.path.join(work_dir, 'manifest.json'), subset_pkl]
    stamps = [os.stat(path).st_mtime_ns for path in outputs]

    def no_mining(self):
        raise AssertionError('the pipeline ran on finished outputs')

    monkeypatch.setattr(MiningPipeline, 'run', no_mining)
    again = DataMiningHook(mining_config=hook_mining_config, data_root=root, work_dir=work_dir, progress=False)
    assert again.summary == first.summary
    assert [os.stat(path).st_mtime_ns for path in outputs] == stamps

    # Another seed: the subsets are rebuilt from the tables, still without a model.
    other = DataMiningHook(
        mining_config=hook_mining_config, data_root=root, work_dir=work_dir, subsets=dict(seed=7), progress=False
    )
    assert other.summary['spec']['seed'] == 7
    assert os.stat(outputs[0]).st_mtime_ns == stamps[0]

    # A changed mining setting is not the same run: it mines (here: the patched pipeline).
    with pytest.raises(AssertionError, match='pipeline ran'):
        DataMiningHook(
            mining_config=hook_mining_config,
            data_root=root,
            work_dir=work_dir,
            cfg_options={'outliers.contamination': 0.2},
            progress=False,
        )


def test_test_tool_leaves_the_mining_hook_out(toy_world, toy_models, tmp_path):
    """tools/test.py on a mined config with no mining outputs anywhere: the hook is left out,
    nothing is mined, and the checkpoint's model is evaluated on the val split."""
    cfg = drop_train_only_hooks(mined_toy_cfg(toy_world, toy_models, str(tmp_path)))
    assert cfg.custom_hooks == []
    cfg.test_dataloader.num_workers = 0
    cfg.test_evaluator.jsonfile_prefix = str(tmp_path / 'results')
    runner = Runner.from_cfg(cfg)
    assert_nuscenes_metrics_add_up(runner.test(), cfg.class_names)
    (results,) = glob.glob(str(tmp_path / 'results' / '**' / 'results_nusc.json'), recursive=True)
    with open(results) as f, open(os.path.join(toy_world[0], 'nuscenes_infos_val.pkl'), 'rb') as val:
        assert set(json.load(f)['results']) == {info['token'] for info in pickle.load(val)['data_list']}
    assert not os.path.exists(os.path.join(tmp_path, 'mining')), 'nothing was mined'
    with open(os.path.join(REPO, 'tools', 'test.py')) as f:
        assert 'drop_train_only_hooks(' in f.read()


def _epoch_cfg(cfg, epochs=2):
    cfg.train_cfg = dict(type='EpochBasedTrainLoop', max_epochs=epochs, val_interval=100)
    cfg.custom_hooks[0].remine_interval = 1
    return cfg


def test_remining_every_epoch_reloads_the_subset_and_the_sampler_weights(toy_world, toy_models, tmp_path):
    cfg = _epoch_cfg(mined_toy_cfg(toy_world, toy_models, str(tmp_path), 'centerpoint_mined20_rare_sampler_toy.py'))
    runner = Runner.from_cfg(cfg)
    subset_pkl, _ = subset_paths(cfg.custom_hooks[0].work_dir, 'random10_target10')

    def tokens():
        with open(subset_pkl, 'rb') as f:
            return [info['token'] for info in pickle.load(f)['data_list']]

    first = tokens()
    runner.train()
    last = tokens()
    assert last != first, 'the subset of seed + 2 is another draw'
    dataset, sampler = runner.train_dataloader.dataset, runner.train_dataloader.sampler
    assert [dataset.get_data_info(i)['token'] for i in range(len(dataset))] == last
    by_token = sample_weights_from_concepts(os.path.join(dataset.mining_dir, 'concepts.parquet'), sampler.group_weights)
    expected = torch.tensor([by_token.get(t, sampler.default_weight) for t in last], dtype=torch.double)
    assert torch.equal(sampler.weights, expected)
    (hook,) = (h for h in runner._hooks if isinstance(h, DataMiningHook))
    assert hook.summary['spec']['seed'] == 2  # base seed 0, re-mined after epochs 1 and 2


@pytest.mark.parametrize(
    'name, epochs, match',
    [('centerpoint_mined20_toy.py', 2, 'CBGS'), ('centerpoint_mined20_rare_sampler_toy.py', None, 'epochs')],
)
def test_remining_that_cannot_work_fails_before_the_first_iteration(
    toy_world, toy_models, tmp_path, name, epochs, match
):
    cfg = mined_toy_cfg(toy_world, toy_models, str(tmp_path), name)
    if epochs:
        cfg = _epoch_cfg(cfg, epochs)
    else:
        cfg.custom_hooks[0].remine_interval = 1  # on the toy configs' iteration-based loop
    runner = Runner.from_cfg(cfg)
    with pytest.raises(ValueError, match=match):
        runner.train()
    assert runner.iter == 0


def test_dist_train_stops_on_a_fresh_mining_dir_and_trains_after_dist_mine(toy_world, toy_models, tmp_path):
    """The README's multi-GPU recipe with 2 gloo ranks: tools/dist_train.sh on a fresh mining
    dir stops at once with the tools/dist_mine.sh command; after that command, the same
    tools/dist_train.sh trains on the subset it mined."""
    import shlex

    cfg = mined_toy_cfg(toy_world, toy_models, str(tmp_path))
    cfg.train_cfg.max_iters = cfg.train_cfg.val_interval = 2
    config = str(tmp_path / 'centerpoint_mined20_toy.py')
    cfg.dump(config)
    train = ['bash', 'tools/dist_train.sh', config, '2']

    stopped = _run(train)
    assert stopped.returncode != 0
    hook = cfg.custom_hooks[0]
    command = dist_mine_command(
        hook.mining_config, hook.data_root, 'nuscenes_infos_train.pkl', hook.work_dir, 2, hook.cfg_options
    )
    assert command in stopped.stderr, stopped.stderr[-3000:]  # (both ranks print it; their lines may interleave)
    assert not os.path.exists(os.path.join(tmp_path, 'mining', 'cache')), 'nothing was mined inside training'

    mined = _run(shlex.split(command))
    assert mined.returncode == 0, mined.stderr[-3000:]

    trained = _run(train)
    assert trained.returncode == 0, trained.stderr[-3000:]
    log = trained.stdout + trained.stderr
    assert 'DataMiningHook (reused)' in log and 'Iter(train) [2/2]' in log
    assert 'NuScenes metric/pred_instances_3d_NuScenes/mAP' in log


def test_two_trainings_started_together_on_one_mining_dir_mine_once_and_train_on_one_subset(
    toy_world, toy_models, tmp_path
):
    """The cluster case of two configs launched at once on one fresh mining dir
    (centerpoint_mined20 and its rare-sampler twin, single-process each): one hook mines, the
    other waits for it (or finds it done) and reuses its outputs; both train on one subset."""
    children = []
    for i, name in enumerate(('centerpoint_mined20_toy.py', 'centerpoint_mined20_rare_sampler_toy.py')):
        cfg = mined_toy_cfg(toy_world, toy_models, str(tmp_path), name)
        cfg.work_dir = str(tmp_path / f'train_{i}')
        cfg.train_cfg.max_iters = cfg.train_cfg.val_interval = 2
        config = str(tmp_path / name)
        cfg.dump(config)
        log = open(tmp_path / f'train_{i}.log', 'w')
        children.append((subprocess.Popen([sys.executable, 'tools/train.py', config], cwd=REPO, stdout=log,
                                          stderr=subprocess.STDOUT, env=torchrun_env()), log))  # fmt: skip
    logs = []
    for i, (child, log) in enumerate(children):
        child.wait(timeout=900)
        log.close()
        logs.append((tmp_path / f'train_{i}.log').read_text())
        assert child.returncode == 0, logs[-1][-3000:]
        assert 'Iter(train) [2/2]' in logs[-1]
    actions = [
        line.split('DataMiningHook (', 1)[1]
        for text in logs
        for line in text.splitlines()
        if 'DataMiningHook (' in line
    ]
    assert len(actions) == 2, actions
    assert sorted(a.startswith('mined') for a in actions) == [False, True], actions  # mined once
    assert next(a for a in actions if not a.startswith('mined')).startswith('reused'), actions
    assert len({a.split('): ', 1)[1] for a in actions}) == 1, actions  # the same subset, the same pickles
    with open(os.path.join(tmp_path, 'mining', 'manifest.json')) as f:
        manifest = json.load(f)
    assert manifest['cache']['detect_embed']['computed_frames'] == manifest['counts']['frames']


def test_a_run_mined_with_paths_is_reused_by_a_config_naming_the_models_in_a_models_dir(
    toy_world, mining_cfg, toy_models, tmp_path, monkeypatch
):
    """A finished run is recognised by what it computed: mined with the models given by path,
    then a hook whose config names them (resolved in a models dir: the config's key or the
    environment) reuses it without loading a model; other weights under the same name do not."""
    import shutil

    from conceptminer3d.apis import run_mining
    from conceptminer3d.mining.models.model_loading import MODELS_DIR_ENV

    root, _ = toy_world
    models = tmp_path / 'models'
    models.mkdir()
    shutil.copy(toy_models['yolo'], models / 'yolov8n-toy.pt')
    shutil.copytree(toy_models['clip'], models / 'clip-toy')
    shutil.copytree(toy_models['qwen2_vl'], models / 'qwen2-vl-toy')
    mining_cfg.frames.cameras = ['CAM_FRONT', 'CAM_BACK']
    work_dir = str(tmp_path / 'mining')
    run_mining(mining_cfg, root, 'nuscenes_infos_train.pkl', work_dir, progress=False)  # the session's paths

    mining_cfg.detector.model, mining_cfg.embedder.model_name = 'yolov8n-toy.pt', 'clip-toy'
    mining_cfg.captioner.model = 'qwen2-vl-toy'
    by_name = str(tmp_path / 'by_name.py')
    mining_cfg.dump(by_name)

    def no_mining(self):
        raise AssertionError('the pipeline ran on finished outputs')

    monkeypatch.setattr(MiningPipeline, 'run', no_mining)
    hook = DataMiningHook(
        mining_config=by_name,
        data_root=root,
        work_dir=work_dir,
        cfg_options={'models_dir': str(models)},
        progress=False,
    )
    assert hook.summary['num_selected'] > 0
    monkeypatch.setenv(MODELS_DIR_ENV, str(models))
    DataMiningHook(mining_config=by_name, data_root=root, work_dir=work_dir, progress=False)

    with open(models / 'yolov8n-toy.pt', 'ab') as f:  # other weights, the same name
        f.write(b'\0')
    with pytest.raises(AssertionError, match='pipeline ran'):
        DataMiningHook(mining_config=by_name, data_root=root, work_dir=work_dir, progress=False)
