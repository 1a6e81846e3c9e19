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
}


def build_parser(names=None):
    """Build the argument parser with the given subcommands (all when None)."""
    parser = argparse.ArgumentParser(
        prog='liquid-controller',
        description='Liquid neural network driving controller: simulate, record, train, evaluate, replay, explain.')
    from liquid_controller import __version__
    parser.add_argument('--version', action='version', version=f'%(prog)s {__version__}')
    sub = parser.add_subparsers(dest='command', metavar='COMMAND')
    for name in (names or TOOLS):
        module = importlib.import_module(f'liquid_controller.tools.{TOOLS[name]}')
        module.register(sub)
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
