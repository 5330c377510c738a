"""Mining sharded over ranks (torchrun, gloo on the CPU) gives one process's outputs."""

import copy
import json
import os
import subprocess

import pytest

from conceptminer3d.apis import run_mining

from helpers import REPO, torchrun_env

VAL = 'nuscenes_infos_val.pkl'
TABLES = ('frames.parquet', 'crops.parquet', 'embeddings.npy', 'captions.parquet', 'concepts.parquet')


def dist_mine(config, nproc, *args, cwd=REPO):
    """``tools/dist_mine.sh CONFIG NPROC ARGS`` with this interpreter, on a free port."""
    return subprocess.run(
        ['bash', os.path.join(REPO, 'tools', 'dist_mine.sh'), config, str(nproc), *args],
        capture_output=True,
        text=True,
        cwd=cwd,
        env=torchrun_env(),
        timeout=900,
    )


def read_bytes(path):
    with open(path, 'rb') as f:
        return f.read()


@pytest.fixture(scope='module')
def one_process_run(toy_world, session_mining_cfg, tmp_path_factory):
    root, _ = toy_world
    cfg = copy.deepcopy(session_mining_cfg)
    cfg.num_threads = 1  # as each torchrun rank below
    work_dir = str(tmp_path_factory.mktemp('one_process') / 'work')
    return work_dir, run_mining(cfg, root, VAL, work_dir, progress=False)


def test_two_gloo_ranks_write_one_process_outputs_byte_for_byte(one_process_run, toy_world, mining_cfg, tmp_path):
    root, _ = toy_world
    mining_cfg.num_threads = 1
    config = str(tmp_path / 'mining_cfg.py')
    mining_cfg.dump(config)
    work_dir = str(tmp_path / 'work')
    child = dist_mine(config, 2, '--data-root', root, '--ann-file', VAL, '--work-dir', work_dir, '--no-progress')
    assert child.returncode == 0, child.stderr[-3000:]
    reference, reference_manifest = one_process_run
    for name in TABLES:
        assert read_bytes(os.path.join(work_dir, name)) == read_bytes(os.path.join(reference, name)), name
    with open(os.path.join(work_dir, 'manifest.json')) as f:
        manifest = json.load(f)
    assert manifest['counts'] == reference_manifest['counts']
    assert manifest['fingerprint'] == reference_manifest['fingerprint']
    frames = manifest['counts']['frames']
    # Rank 0 computed about half of the frames and captions; rank 1 the rest.
    assert 0 < manifest['stages']['detect_embed_total']['items'] <= frames // 2 + mining_cfg.frame_batch_size
    assert manifest['cache']['detect_embed']['computed_frames'] == frames
    assert 0 < manifest['stages']['caption']['items'] < manifest['counts']['captions']
    assert not os.listdir(os.path.join(work_dir, '.ranks')), 'coordination files are removed'
    # The cache leaves the same shards as one process's, so either can resume the other.
    for stage in ('detect_embed', 'captions'):
        key = manifest['cache'][stage]['key']
        shards = sorted(os.listdir(os.path.join(work_dir, 'cache', stage, key)))
        assert shards == sorted(os.listdir(os.path.join(reference, 'cache', stage, key)))


def test_a_one_process_start_resumes_with_two_ranks(one_process_run, toy_world, mining_cfg, tmp_path):
    """Frames mined by one process (a run stopped after 3 batches: here, the first 4 samples) are
    reused by a 2-rank job in the same work dir, which computes only the rest, and the outputs
    are still one process's, byte for byte."""
    import pickle

    from conceptminer3d.subsets import subset_infos

    root, _ = toy_world
    mining_cfg.num_threads = 1
    with open(os.path.join(root, VAL), 'rb') as f:
        first = subset_infos(pickle.load(f), range(4))  # 4 samples x 6 cameras = 3 batches of 8
    partial = str(tmp_path / 'first_samples.pkl')
    with open(partial, 'wb') as f:
        pickle.dump(first, f)
    work_dir = str(tmp_path / 'work')
    run_mining(copy.deepcopy(mining_cfg), root, partial, work_dir, progress=False)
    config = str(tmp_path / 'mining_cfg.py')
    mining_cfg.dump(config)
    child = dist_mine(config, 2, '--data-root', root, '--ann-file', VAL, '--work-dir', work_dir, '--no-progress')
    assert child.returncode == 0, child.stderr[-3000:]
    with open(os.path.join(work_dir, 'manifest.json')) as f:
        manifest = json.load(f)
    assert manifest['cache']['detect_embed']['reused_frames'] == 24
    assert manifest['cache']['detect_embed']['computed_frames'] == manifest['counts']['frames'] - 24
    reference, _ = one_process_run
    for name in ('frames.parquet', 'crops.parquet', 'embeddings.npy'):
        assert read_bytes(os.path.join(work_dir, name)) == read_bytes(os.path.join(reference, name)), name
