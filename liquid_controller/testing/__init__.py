"""Helpers for regression tests on recorded bags (use them in your own robot's pytest suite).

    from liquid_controller.testing import replay_regression, load_scenario

    def test_my_robot_bag():
        replay_regression('bags/corridor', 'models/my_model.json', 'bags/corridor/golden.npz',
                          tolerances={'command': {'atol': 1e-4, 'rtol': 1e-4}})

    def test_scenario():                       # a folder laid out like test/bags/summer_lane/
        load_scenario('test/bags/summer_lane').check()

A missing golden file is written (and the test fails saying so) when the environment variable
``LIQUID_CONTROLLER_UPDATE_GOLDEN=1`` is set or ``update=True`` is passed; review and commit it.
"""
from liquid_controller.testing.regression import (RegressionScenario, Tolerance, assert_matches_golden,
                                                  check_expectations, load_scenario, replay_regression)

__all__ = ['RegressionScenario', 'Tolerance', 'assert_matches_golden', 'check_expectations',
           'load_scenario', 'replay_regression']
