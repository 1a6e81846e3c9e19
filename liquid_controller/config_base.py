"""Shared ``to_dict`` / ``from_dict`` helpers for the package's flat config dataclasses.

Every stored config follows the same contract: ``to_dict`` gives plain data, ``from_dict`` inverts
it and rejects keys the class does not know (a file written for another version must not be silently
half-read). These helpers are that contract written once; classes with nested configs or type
conversions call them and then do their own extra step.
"""

from dataclasses import asdict, fields

from liquid_controller.errors import InputError


def config_to_dict(obj, tuples_as_lists=False):
    """Plain dict of a dataclass's fields (``dataclasses.asdict``).

    tuples_as_lists: turn top-level tuple values into lists (JSON/YAML have no tuples).
    """
    d = asdict(obj)
    if tuples_as_lists:
        d = {k: list(v) if isinstance(v, tuple) else v for k, v in d.items()}
    return d


def check_known_keys(d, known, name):
    """Raise InputError(name, sorted unknown keys, 'unknown keys; known: [...]') when the mapping
    ``d`` holds keys outside ``known``; InputError(name, d, 'expected a mapping') when it is not a
    mapping."""
    if not isinstance(d, dict):
        raise InputError(name, d, 'expected a mapping')
    unknown = sorted(set(d) - set(known))
    if unknown:
        raise InputError(name, unknown, f'unknown keys; known: {sorted(known)}')


def config_from_dict(cls, d, name):
    """``cls(**d)`` after :func:`check_known_keys` against the dataclass's fields; ``name`` is the
    argument name the error reports (e.g. 'controller config')."""
    check_known_keys(d, {f.name for f in fields(cls)}, name)
    return cls(**d)
