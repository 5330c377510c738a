"""docs/quickstart_nuscenes.md runs as written, on the toy world laid out as its nuScenes.

Every ```bash block of the page is run in order, as one script, in a folder that looks like the
repository the page is read in: ``tools/`` and ``.venv/`` are the repository's, ``data/nuscenes``
holds the toy world's raw tables (not yet converted), ``models/`` the toy models under the names
the mining config uses, and ``configs/`` the toy versions of the configs the page names. What
differs from real data is only what the page says: ``GPUS=2`` CPU processes, the ``v1.0-mini``
tables, two training iterations per arm. The ```sh block (downloads) is not run.
"""

import copy
import json
import os
import re
import shutil
import subprocess

from mmengine.config import Config

from conceptminer3d.study.retarget import replace_path_prefix, retarget_data_root
from conceptminer3d_toy.world import build_toy_dataset

from conftest import TEST_WORLD
from helpers import REPO, short_toy_training, torchrun_env

DOC = os.path.join(REPO, 'docs', 'quickstart_nuscenes.md')
ARMS = ('full', 'random20', 'mined20')


def quickstart_script() -> str:
    """The page's bash blocks, in order, with its toy-world differences applied."""
    with open(DOC) as f:
        blocks = re.findall(r'```bash\n(.*?)```', f.read(), re.S)
    script = '\n'.join(blocks)
    assert script.count('GPUS=8') == 1 and script.count('v1.0-trainval') == 1, 'the page changed: update this test'
    return script.replace('GPUS=8', 'GPUS=2').replace('v1.0-trainval', TEST_WORLD.version)


def _toy_mining_config(session_mining_cfg, path):
    """The toy mining config with the models named as default.py names its own (resolved in
    the models dir), two cameras to keep it quick."""
    cfg = copy.deepcopy(session_mining_cfg)
    cfg.detector.model, cfg.embedder.model_name, cfg.captioner.model = 'yolov8n-toy.pt', 'clip-toy', 'qwen2-vl-toy'
    cfg.frames.cameras = ['CAM_FRONT', 'CAM_BACK']
    cfg.num_threads = 1
    cfg.dump(path)


def _toy_train_config(arm, path):
    """configs/centerpoint_<arm>_toy.py where the page's config would read data/nuscenes, and
    mine into work_dirs/mining_nuscenes with configs/mining/default.py; two iterations."""
    cfg = retarget_data_root(
        Config.fromfile(os.path.join(REPO, 'configs', f'centerpoint_{arm}_toy.py')), 'data/nuscenes/'
    )
    if cfg.get('mining_work_dir'):
        cfg = replace_path_prefix(cfg, cfg.mining_work_dir, 'work_dirs/mining_nuscenes')
        cfg.custom_hooks[0].update(mining_config='configs/mining/default.py', progress=False)
    cfg.pop('work_dir', None)  # tools/train.py's default, work_dirs/<config name>, as on real data
    short_toy_training(cfg, 2).dump(path)


def test_the_nuscenes_quickstart_runs_as_written_on_the_toy_world(toy_models, session_mining_cfg, tmp_path):
    home = tmp_path / 'repo'
    (home / 'configs' / 'mining').mkdir(parents=True)
    for name in ('tools', '.venv'):
        os.symlink(os.path.join(REPO, name), home / name)
    build_toy_dataset(str(home / 'data' / 'nuscenes'), TEST_WORLD, convert=False, progress=False)
    (home / 'models').mkdir()
    shutil.copy(toy_models['yolo'], home / 'models' / 'yolov8n-toy.pt')
    for key, name in (('clip', 'clip-toy'), ('qwen2_vl', 'qwen2-vl-toy')):
        shutil.copytree(toy_models[key], home / 'models' / name)
    _toy_mining_config(session_mining_cfg, str(home / 'configs' / 'mining' / 'default.py'))
    for arm in ARMS:
        _toy_train_config(arm, str(home / 'configs' / f'centerpoint_{arm}.py'))
    env = {k: v for k, v in torchrun_env().items() if k != 'PYTHON'}  # the page sets PYTHON itself
    script = 'set -euo pipefail\n' + quickstart_script()
    done = subprocess.run(['bash', '-c', script], cwd=home, env=env, capture_output=True, text=True, timeout=1800)
    log = done.stdout + done.stderr
    assert done.returncode == 0, log[-5000:]

    data = home / 'data' / 'nuscenes'
    for name in ('nuscenes_infos_train.pkl', 'nuscenes_infos_val.pkl', 'nuscenes_dbinfos_train.pkl'):
        assert (data / name).is_file(), name
    mining = home / 'work_dirs' / 'mining_nuscenes'
    manifest = json.loads((mining / 'manifest.json').read_text())
    assert manifest['counts']['frames'] == 2 * TEST_WORLD.train_scenes * TEST_WORLD.samples_per_scene
    assert (mining / 'report' / 'index.html').is_file() and (mining / 'selection_eval.json').is_file()
    assert log.count('DataMiningHook (reused)') == 2, 'the random20 and mined20 hooks reuse the mined run'
    table = json.loads((home / 'work_dirs' / 'centerpoint_full' / 'benchmark.json').read_text())
    assert sorted(table['arms']) == sorted(ARMS)
    mined = table['arms']['mined20']
    assert mined['num_train_samples'] == manifest['subsets']['num_selected'], mined
