"""`liquid-controller <cmd> --help`: every subcommand has a description, every option a help text, and
every option with a default (not None / False) says what the default is."""
import argparse

import pytest

from liquid_controller.cli import TOOLS, build_parser, main

# options whose help is owned by another module and still missing: (command, option)
def _subparsers():
    parser = build_parser()
    sub = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction))
    return sub.choices


def test_every_command_is_listed():
    assert set(_subparsers()) == set(TOOLS)


@pytest.mark.parametrize('name', sorted(TOOLS))
def test_command_has_description_help_and_defaults(name):
    subparser = _subparsers()[name]
    assert (subparser.description or '').strip(), f'{name}: no description'
    formatter = subparser._get_formatter()
    problems = []
    for action in subparser._actions:
        if isinstance(action, argparse._HelpAction):
            continue
        option = action.option_strings[-1] if action.option_strings else action.dest
        if not (action.help or '').strip():
            problems.append(f'{option}: no help')
            continue
        text = formatter._expand_help(action)
        default = action.default
        if default is not None and default is not False and 'default' not in text.lower():
            problems.append(f'{option}: default {default!r} not shown in {text!r}')
        if 'default' not in action.help.lower() and isinstance(default, (int, float, str)) \
                and not isinstance(default, bool) \
                and default != '' and f'(default: {default})' not in text:
            problems.append(f'{option}: default {default!r} shown as {text!r}')
    assert not problems, f'{name}: ' + '; '.join(problems)
    assert subparser.format_help()


def test_help_shows_defaults_and_description(capsys):
    with pytest.raises(SystemExit) as exc:
        main(['replay', '--help'])
    assert exc.value.code == 0
    out = ' '.join(capsys.readouterr().out.split())
    assert 'through the runtime Controller offline' in out
    assert '(default: imu/data)' in out and '(default: mcap)' in out
