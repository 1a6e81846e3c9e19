"""Layer 8: thin commands composing the layers below (one module per subcommand).

Convention shared by every subcommand: a runtime error (a missing or bad file, a fault met while
running) is one line ``liquid-controller <cmd>: error: <message>`` on stderr and exit code 1, printed by
:func:`fail`; argparse's own usage errors (an unknown option, a value of the wrong type) keep argparse's
exit code 2.
"""
import sys


def fail(command, message):
    """Print ``liquid-controller <command>: error: <message>`` on stderr; return exit code 1."""
    print(f'liquid-controller {command}: error: {message}', file=sys.stderr, flush=True)
    return 1
