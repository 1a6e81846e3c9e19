"""`liquid-controller bringup`: the installed executables as subprocesses, activated over the lifecycle
services (real DDS, isolated domain from test/conftest.py), stopped cleanly."""
import os
import subprocess
import sys

import pytest

from liquid_controller.ros.processes import find_executable, ros_args
from liquid_controller.runtime.model_file import create_random_model

pytestmark = pytest.mark.ros


@pytest.fixture(scope='module')
def model(tmp_path_factory):
    path = tmp_path_factory.mktemp('model') / 'rand.json'
    create_random_model(path)
    return path


def _cli(*args, timeout=120):
    env = dict(os.environ)
    return subprocess.run([sys.executable, '-m', 'liquid_controller.cli', *args], env=env,
                          capture_output=True, text=True, timeout=timeout)


def test_ros_args_match_ros2_run_syntax(tmp_path):
    args = ros_args('controller', 'robot1', [tmp_path / 'p.yaml'], {'use_sim_time': True, 'model': 'm'},
                    {'cmd_vel': '/diff/cmd_vel'})
    assert args == ['--ros-args', '-r', '__node:=controller', '-r', '__ns:=/robot1', '--params-file',
                    str(tmp_path / 'p.yaml'), '-p', 'use_sim_time:=true', '-p', 'model:=m',
                    '-r', 'cmd_vel:=/diff/cmd_vel']
    assert os.access(find_executable('controller_node'), os.X_OK)
    assert os.access(find_executable('sim_node'), os.X_OK)


def test_bringup_none_reaches_active_and_stops_cleanly(model):
    result = _cli('bringup', '--sim', 'none', '--model', str(model), '--duration', '1.0',
                  '--namespace', f'bu{os.getpid()}')
    assert result.returncode == 0, result.stdout + result.stderr
    assert 'is active' in result.stdout
    assert "'controller': 0" in result.stdout  # SIGINT -> clean exit code 0


def test_bringup_fails_cleanly_on_bad_model(tmp_path):
    result = _cli('bringup', '--sim', 'none', '--model', str(tmp_path / 'missing.json'),
                  '--namespace', f'bad{os.getpid()}', '--timeout', '30')
    assert result.returncode == 1
    assert 'configure' in result.stderr and 'failed' in result.stderr
