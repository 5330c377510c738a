import copy

import pytest

from conceptminer3d.apis import run_mining
from conceptminer3d_toy.models import build_toy_models
from conceptminer3d_toy.world import ToyWorldConfig, build_toy_dataset

from helpers import toy_mining_cfg

# The default scene layout (8 mini_train + 2 mini_val scenes) with fewer samples and
# smaller images than `make demo`, to keep the suite fast.
TEST_WORLD = ToyWorldConfig(samples_per_scene=6, image_width=480, image_height=270, seed=0)


@pytest.fixture(scope='session')
def toy_world(tmp_path_factory):
    """A converted toy world: (data_root, config)."""
    root = str(tmp_path_factory.mktemp('toy') / 'nuscenes')
    build_toy_dataset(root, TEST_WORLD, progress=False)
    return root, TEST_WORLD


@pytest.fixture(scope='session')
def nusc(toy_world):
    from nuscenes.nuscenes import NuScenes

    root, config = toy_world
    return NuScenes(version=config.version, dataroot=root, verbose=False)


@pytest.fixture(scope='session')
def toy_models(tmp_path_factory):
    """The four toy models, built once per session (``build_toy_models``' paths)."""
    return build_toy_models(str(tmp_path_factory.mktemp('models') / 'toy_models'))


@pytest.fixture(scope='session')
def session_mining_cfg(toy_models):
    """configs/mining/toy.py pointed at the session's toy models, sized for the tests.
    Never mutate it: take ``mining_cfg`` (a deep copy) instead."""
    cfg = toy_mining_cfg(toy_models)
    cfg.detector.max_det = 4
    cfg.captioner.max_new_tokens = 6
    cfg.caption_selection.yolo_classes = []  # caption the outliers only
    return cfg


@pytest.fixture
def mining_cfg(session_mining_cfg):
    return copy.deepcopy(session_mining_cfg)


@pytest.fixture(scope='session')
def train_mining(toy_world, session_mining_cfg, tmp_path_factory):
    """Mining outputs of the toy *train* pickle (two cameras, to keep it quick)."""
    cfg = copy.deepcopy(session_mining_cfg)
    cfg.frames.cameras = ['CAM_FRONT', 'CAM_BACK']
    cfg.subsets = None
    work_dir = str(tmp_path_factory.mktemp('train_mining') / 'work')
    run_mining(cfg, toy_world[0], 'nuscenes_infos_train.pkl', work_dir, progress=False)
    return work_dir
