"""Checks of single configuration values, written once for every config and file format.

Each check returns the value converted to its plain Python type, or raises
:class:`~liquid_controller.errors.InputError` whose message names the field and the value and says what
was expected (``train.lr=0: must be a finite number in (0, 1]``). Formats with their own error type
(model cards, scene files) catch the InputError and re-raise theirs with its ``reason``, so the rules
and wording stay the same everywhere.

Booleans are never numbers here (``True`` is an ``int`` in Python, but ``lr: true`` in a YAML file is
a mistake, not 1.0); numpy scalars are accepted because arrays hand them out.
"""
from __future__ import annotations

import math
import numbers

from liquid_controller.errors import InputError

__all__ = ['check_bool', 'check_choice', 'check_int', 'check_number', 'check_numbers']


def _bound(x):
    """An int bound as written (4294967295, not 4.29497e+09); a float bound in %g form."""
    return str(x) if isinstance(x, numbers.Integral) else f'{x:g}'


def _interval(low, high, low_open, high_open):
    """``[0, 1]``, ``(0, 10]``, ``>= 1``, ``> 0`` ... as a reader writes it."""
    if math.isinf(high) and not math.isinf(low):
        return f'{">" if low_open else ">="} {_bound(low)}'
    if math.isinf(low) and not math.isinf(high):
        return f'{"<" if high_open else "<="} {_bound(high)}'
    return f'in {"(" if low_open else "["}{_bound(low)}, {_bound(high)}{")" if high_open else "]"}'


def check_number(name, value, low=-math.inf, high=math.inf, *, low_open=False, high_open=False):
    """A finite real number within the bounds (open or closed at each end), as a float."""
    if isinstance(value, bool) or not isinstance(value, numbers.Real) or not math.isfinite(value):
        bounds = '' if (math.isinf(low) and math.isinf(high)) else ' ' + _interval(low, high, low_open,
                                                                                    high_open)
        raise InputError(name, value, f'must be a finite number{bounds}')
    value = float(value)
    if (value <= low if low_open else value < low) or (value >= high if high_open else value > high):
        raise InputError(name, value, f'must be a finite number {_interval(low, high, low_open, high_open)}')
    return value


def check_int(name, value, low=-math.inf, high=math.inf):
    """An integer (Python or numpy, not bool) within [low, high], as an int."""
    if isinstance(value, bool) or not isinstance(value, numbers.Integral) or not low <= value <= high:
        bounds = '' if (math.isinf(low) and math.isinf(high)) else ' ' + _interval(low, high, False, False)
        raise InputError(name, value, f'must be an integer{bounds}')
    return int(value)


def check_numbers(name, values, length=None, low=-math.inf, high=math.inf, *, low_open=False):
    """A list/tuple of finite numbers (exactly ``length`` of them when given), each within the bounds,
    as a tuple of floats; an entry's error names it as ``name[i]``."""
    if not isinstance(values, (list, tuple)) or (length is not None and len(values) != length):
        count = f'{length} ' if length is not None else ''
        raise InputError(name, values, f'must be a list of {count}numbers')
    return tuple(check_number(f'{name}[{i}]', v, low, high, low_open=low_open)
                 for i, v in enumerate(values))


def check_choice(name, value, choices):
    """One of ``choices`` (compared with ==)."""
    if isinstance(value, bool) or value not in choices:
        raise InputError(name, value, f'must be one of {", ".join(map(str, choices))}')
    return value


def check_bool(name, value):
    """True or False (not 0/1, not a string)."""
    if not isinstance(value, bool):
        raise InputError(name, value, 'must be true or false')
    return value
