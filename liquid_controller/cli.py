"""The `liquid-controller` console command: one subcommand per module in liquid_controller.tools.

Each tool module defines ``register(subparsers)`` which adds its parser and sets ``func`` (a callable
taking the parsed args and returning an exit code). Modules are imported lazily by name so that
``liquid-controller --help`` stays fast and a broken optional dependency only affects its command.
"""
import argparse
import importlib
import sys

# subcommand -> module under liquid_controller.tools providing register(subparsers)
TOOLS = {
    'demo': 'demo',
    'bringup': 'bringup',
    'record': 'record',
    'train': 'train',
    'evaluate': 'evaluate',
    'compare': 'compare',
    'replay': 'replay',
    'play': 'play',
    'explain': 'explain',
    'bench': 'bench',
    'scenes': 'scenes',
    'benchmark': 'benchmark',
    'export': 'export',
    'calibrate-ood': 'calibrate_ood',
}


class HelpFormatter(argparse.HelpFormatter):
    """Shows every option's default: appends ``(default: X)`` to the help of an option whose default is
    not None / False and whose help does not already say what the default is."""

    def _get_help_string(self, action):
        text = action.help or ''
        default = action.default
        if (default is None or default is False or default is argparse.SUPPRESS
                or not (action.option_strings or action.nargs in (argparse.OPTIONAL, argparse.ZERO_OR_MORE))
                or '%(default)' in text or 'default' in text.lower()):
            return text
        if default == '' or default == []:
            return text + ' (default: none)'
        return text + ' (default: %(default)s)'


class _SubcommandParser(argparse.ArgumentParser):
    """Parser of one subcommand, with the help formatter above (build_parser gives a subcommand
    registered without a description its one-line help as description)."""

    def __init__(self, *args, formatter_class=HelpFormatter, **kwargs):
        super().__init__(*args, formatter_class=formatter_class, **kwargs)


def build_parser(names=None):
    """Build the argument parser with the given subcommands (all when None)."""
    parser = argparse.ArgumentParser(
        prog='liquid-controller', formatter_class=HelpFormatter,
        description='Liquid neural network driving controller: simulate, record, train, evaluate, replay, explain.')
    from liquid_controller import __version__
    parser.add_argument('--version', action='version', version=f'%(prog)s {__version__}')
    sub = parser.add_subparsers(dest='command', metavar='COMMAND', parser_class=_SubcommandParser)
    for name in (names or TOOLS):
        module = importlib.import_module(f'liquid_controller.tools.{TOOLS[name]}')
        module.register(sub)
    for action in sub._choices_actions:           # a subcommand registered without a description
        subparser = sub.choices[action.dest]
        if not subparser.description and action.help:
            subparser.description = action.help[0].upper() + action.help[1:] + '.'
    return parser


def main(argv=None):
    """Entry point: parse arguments and run the chosen subcommand."""
    argv = sys.argv[1:] if argv is None else list(argv)
    # Import only the requested tool when the command is known: keeps start-up fast.
    names = [argv[0]] if argv and argv[0] in TOOLS else None
    parser = build_parser(names)
    args = parser.parse_args(argv)
    if not getattr(args, 'func', None):
        parser.print_help()
        return 2
    return int(args.func(args) or 0)


if __name__ == '__main__':
    sys.exit(main())
