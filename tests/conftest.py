import os

import pytest

from conceptminer3d.toy_world import ToyWorldConfig, build_toy_dataset

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
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
