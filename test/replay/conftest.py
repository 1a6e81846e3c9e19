"""Fixtures for the replay tests: the committed summer_lane scenario.

test/conftest.py isolates ROS (domain from the pid, localhost discovery, private log dir) and provides
the ``rclpy_context`` fixture.
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
