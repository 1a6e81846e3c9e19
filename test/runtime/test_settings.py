"""runtime/settings.py: one parameter table and one loader for the node's parameter file."""
import pytest

from liquid_controller.errors import InputError
from liquid_controller.runtime.controller import ControllerConfig
from liquid_controller.runtime.settings import PARAMETERS, Settings, load_settings
from liquid_controller.safety.config import SafetyConfig


def test_the_shipped_file_holds_the_defaults():
    loaded, defaults = load_settings(), Settings()
    assert loaded.values == defaults.values
    assert loaded.controller_config() == ControllerConfig()
    assert loaded.safety_config() == SafetyConfig()


def test_controller_defaults_live_in_one_place():
    for name in ('max_dt', 'reset_gap', 'input_timeout', 'imu_timeout', 'stop_speed', 'brake_decel'):
        assert PARAMETERS[name].default == getattr(ControllerConfig(), name)


def test_file_values_reach_every_config(edited_params_file):
    path = edited_params_file('decel_max: 3.0', 'decel_max: 2.5')
    path.write_text(path.read_text().replace('max_clock_skew: 0.5', 'max_clock_skew: 0.2')
                    .replace('imu_timeout: 0.25', 'imu_timeout: 0.3'))
    s = load_settings(path)
    assert s.safety_config().decel_max == 2.5
    assert s.controller_config().imu_timeout == 0.3
    assert s.frame_assembler().max_clock_skew == 0.2


def test_unknown_key_is_named_with_the_closest_parameter(edited_params_file):
    path = edited_params_file('imu_timeout:', 'imu_timout:')
    with pytest.raises(InputError, match="'imu_timout'.*did you mean 'imu_timeout'"):
        load_settings(path)


@pytest.mark.parametrize('old,new,name', [('max_dt: 0.2', 'max_dt: -1.0', 'max_dt'),
                                          ('mode: drive', 'mode: fly', 'mode'),
                                          ('v_max: 2.0', 'v_max: fast', 'safety.v_max')])
def test_bad_values_are_named(old, new, name, edited_params_file):
    with pytest.raises(InputError, match=name):
        load_settings(edited_params_file(old, new))


def test_relations_between_values_are_checked():
    with pytest.raises(InputError, match='max_dt'):
        Settings({'max_dt': 1.0, 'reset_gap': 0.5})
