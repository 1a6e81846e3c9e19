"""SafetyConfig validation and round trip; RobotState.validate."""
import math

import pytest

from liquid_controller.errors import InputError
from liquid_controller.safety import RobotState, SafetyConfig


def test_round_trip_and_defaults():
    c = SafetyConfig(v_min=-0.3, num_barrier_params=4, barrier_param_range=(0.2, 5.0))
    assert c.default_barrier_params == (1.0, 1.0, 1.0, 1.0)
    d = c.to_dict()
    assert SafetyConfig.from_dict(d) == c
    assert isinstance(d['barrier_param_range'], list)


@pytest.mark.parametrize('kw,field', [
    ({'v_max': 0.0}, 'v_min'), ({'v_min': 0.1}, 'v_min'), ({'w_max': -1.0}, 'w_max'),
    ({'accel_max': math.nan}, 'accel_max'), ({'control_period': 0.0}, 'control_period'),
    ({'lane_margin': 0.7}, 'lane_margin'), ({'num_barrier_params': 3}, 'num_barrier_params'),
    ({'barrier_param_range': (0.0, 1.0)}, 'barrier_param_range'),
    ({'default_barrier_params': (20.0, 1.0)}, 'default_barrier_params'),
    ({'weights': (1.0, 0.0)}, 'weights'), ({'obstacle_margin': -0.1}, 'obstacle_margin'),
    ({'decel_max': True}, 'decel_max'),
])
def test_bad_config_names_the_field(kw, field):
    with pytest.raises(InputError, match=field):
        SafetyConfig(**kw)


def test_from_dict_rejects_unknown_keys():
    with pytest.raises(InputError, match='vmax'):
        SafetyConfig.from_dict({'vmax': 1.0})


def test_required_sensor_range():
    c = SafetyConfig()
    assert c.required_sensor_range() == pytest.approx(
        c.obstacle_margin + c.control_period * c.v_max + c.v_max ** 2 / (2 * c.decel_max))


def test_state_validation_causes():
    c = SafetyConfig()
    assert RobotState(1.0, 0.0, 0.0).validate(c) is None
    assert RobotState(1.0, 0.0, 0.0, math.inf).validate(c) is None      # Range: inf = no echo
    assert RobotState('x', 0.0, 0.0).validate(c) == 'invalid_state:speed'
    assert RobotState(1.0, 0.0, 0.0, 'far').validate(c) == 'invalid_state:obstacle_distance'
    assert RobotState(1.0, 0.0, 99.0).validate(c) == 'invalid_state:lateral_accel'
    assert RobotState(1.0, 0.0, 0.0, None, None, 0.1).validate(c) == 'invalid_state:lane_offset'
