"""Fixtures for the replay tests: the committed summer_lane scenario and an rclpy context.

test/conftest.py isolates ROS (domain from the pid, localhost discovery, private log dir).
"""
from pathlib import Path

import pytest

SCENARIO = Path(__file__).resolve().parents[1] / 'bags' / 'summer_lane'


@pytest.fixture(scope='session')
def scenario():
    from liquid_controller.testing import load_scenario
    return load_scenario(SCENARIO)


@pytest.fixture(scope='session')
def loaded_model(scenario):
    """The scenario's model, loaded once (replay_bag accepts a LoadedModel)."""
    from liquid_controller.runtime.model_file import load_model
    return load_model(scenario.model)


@pytest.fixture(scope='module')
def rclpy_context():
    """An initialised rclpy Context of its own; shut down after the module."""
    rclpy = pytest.importorskip('rclpy')
    from rclpy.context import Context
    context = Context()
    rclpy.init(context=context)
    try:
        yield context
    finally:
        if context.ok():
            rclpy.shutdown(context=context)
