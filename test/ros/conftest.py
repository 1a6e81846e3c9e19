"""Fixtures for tests that use real rclpy over real DDS.

test/conftest.py already isolates the run (ROS_DOMAIN_ID from the pid, localhost discovery, a private
ROS_LOG_DIR) and provides ``rclpy_context`` (a context per test module). Here: the environment a
spawned node process needs so it joins the same isolated domain.
"""
import os
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]


@pytest.fixture
def ros_env():
    """Environment for a child ROS process: same domain and discovery range as this test run."""
    env = dict(os.environ)
    venv = Path(sys.executable).resolve().parent.parent
    env.setdefault('AMENT_PREFIX_PATH', str(venv))
    env['PYTHONUNBUFFERED'] = '1'
    env['PYTHONPATH'] = os.pathsep.join(p for p in (str(REPO), env.get('PYTHONPATH', '')) if p)
    for key in ('ROS_DOMAIN_ID', 'ROS_AUTOMATIC_DISCOVERY_RANGE', 'ROS_LOG_DIR', 'RMW_IMPLEMENTATION'):
        assert key in env, f'{key} must be set by test/conftest.py'
    return env
