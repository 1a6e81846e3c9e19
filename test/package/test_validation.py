"""The shared value checks (liquid_controller/validation.py): what passes, what is refused, and that
the message names the field, the value and the expected range."""
import math

import numpy as np
import pytest

from liquid_controller.errors import InputError
from liquid_controller.validation import check_bool, check_choice, check_int, check_number, check_numbers


@pytest.mark.parametrize('value', [0.5, 1, np.float32(0.25), np.int64(1)])
def test_number_accepts_reals_in_range_and_returns_float(value):
    out = check_number('x', value, 0.0, 1.0)
    assert type(out) is float and out == float(value)


@pytest.mark.parametrize('value, reason', [
    (True, 'must be a finite number in [0, 1]'), ('0.5', 'must be a finite number in [0, 1]'),
    (math.nan, 'must be a finite number in [0, 1]'), (math.inf, 'must be a finite number in [0, 1]'),
    (1.5, 'must be a finite number in [0, 1]'), (-1e-9, 'must be a finite number in [0, 1]')])
def test_number_refusals_name_field_value_and_range(value, reason):
    with pytest.raises(InputError) as info:
        check_number('train.lr', value, 0.0, 1.0)
    assert info.value.name == 'train.lr' and info.value.reason == reason
    assert str(info.value).startswith('train.lr=')


def test_open_bounds_and_half_lines():
    assert check_number('a', 1.0, 0.0, 1.0, low_open=True) == 1.0
    with pytest.raises(InputError, match=r'in \(0, 1\]'):
        check_number('a', 0.0, 0.0, 1.0, low_open=True)
    with pytest.raises(InputError, match=r'in \[0, 1\)'):
        check_number('a', 1.0, 0.0, 1.0, high_open=True)
    with pytest.raises(InputError, match='must be a finite number > 0'):
        check_number('a', 0, 0.0, low_open=True)
    with pytest.raises(InputError, match='must be a finite number <= 2'):
        check_number('a', 3, high=2.0)
    assert check_number('a', -1e300) == -1e300  # no bounds: any finite number


def test_int_refuses_bools_floats_and_out_of_range():
    assert check_int('n', np.int32(3), 1) == 3 and type(check_int('n', np.int32(3), 1)) is int
    for bad in (True, 2.0, '2', 0):
        with pytest.raises(InputError, match='must be an integer >= 1'):
            check_int('n', bad, 1)
    with pytest.raises(InputError, match=r'must be an integer in \[1, 4\]'):
        check_int('n', 5, 1, 4)


def test_numbers_checks_length_and_names_the_entry():
    assert check_numbers('w', [1, 2.5], 2, 0.0, low_open=True) == (1.0, 2.5)
    with pytest.raises(InputError, match='must be a list of 2 numbers'):
        check_numbers('w', [1, 2, 3], 2)
    with pytest.raises(InputError) as info:
        check_numbers('w', [1, 0], 2, 0.0, low_open=True)
    assert info.value.name == 'w[1]'


def test_choice_and_bool():
    assert check_choice('mode', 'a', ('a', 'b')) == 'a'
    with pytest.raises(InputError, match='must be one of a, b'):
        check_choice('mode', 'c', ('a', 'b'))
    with pytest.raises(InputError):
        check_choice('n', True, (1, 2))  # True == 1, but a flag is not a count
    assert check_bool('f', False) is False
    for bad in (0, 'true', None):
        with pytest.raises(InputError, match='must be true or false'):
            check_bool('f', bad)
