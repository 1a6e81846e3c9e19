"""Fixtures for the explanation tests: tiny random-weight models (small images keep them fast) and a
tiny real rosbag2 bag written with test/data/bag_factory.py (shared with the dataset tests)."""
import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / 'data'))

HEIGHT, WIDTH = 16, 32


def small_config(core, **kw):
    from liquid_controller.policy.driving_policy import PolicyConfig
    return PolicyConfig(core=core, image_height=HEIGHT, image_width=WIDTH, seed=1, **kw)


@pytest.fixture(scope='session')
def model_dir(tmp_path_factory):
    """Random-weight model files (cfc, lstm) at 16x32 pixels."""
    from liquid_controller.runtime.model_file import create_random_model
    d = tmp_path_factory.mktemp('models')
    for core in ('cfc', 'lstm'):
        create_random_model(d / core, small_config(core), name=f'tiny_{core}')
    return d


@pytest.fixture(scope='session')
def tiny_bag(tmp_path_factory):
    """60 frames at 10 Hz (jittered), IMU at 50 Hz, commands and ground truth, 16x32 rgb8 frames."""
    from bag_factory import write_drive_bag
    path = tmp_path_factory.mktemp('bags') / 'drive'
    write_drive_bag(path, n=60, height=HEIGHT, width=WIDTH)
    return path
