"""The shared config (de)serialisation helpers every stored config dataclass uses."""
from dataclasses import dataclass

import pytest

from liquid_controller.config_base import check_known_keys, config_from_dict, config_to_dict
from liquid_controller.errors import InputError


@dataclass
class _Example:
    gain: float = 1.5
    pair: tuple = (1, 2)


def test_round_trip_and_tuples_as_lists():
    cfg = _Example(gain=2.0, pair=(3, 4))
    assert config_to_dict(cfg) == {'gain': 2.0, 'pair': (3, 4)}
    assert config_to_dict(cfg, tuples_as_lists=True) == {'gain': 2.0, 'pair': [3, 4]}
    assert config_from_dict(_Example, config_to_dict(cfg), 'example') == cfg
    assert config_from_dict(_Example, {}, 'example') == _Example()   # missing keys take defaults


def test_unknown_keys_are_named_with_the_known_ones():
    expected = r"example=\['bogus', 'zeta'\]: unknown keys; known: \['gain', 'pair'\]"
    with pytest.raises(InputError, match=expected):
        config_from_dict(_Example, {'zeta': 1, 'gain': 1.0, 'bogus': 2}, 'example')
    with pytest.raises(InputError) as info:
        check_known_keys({'x': 1}, ('atol', 'rtol'), 'tolerance')
    assert (info.value.name, info.value.value) == ('tolerance', ['x'])


def test_non_mapping_is_an_input_error():
    with pytest.raises(InputError, match='expected a mapping'):
        config_from_dict(_Example, ['gain'], 'example')
