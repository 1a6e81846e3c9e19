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


def add_ray_argument(parser):
    """``--ray auto|ADDRESS``: run the episodes as Ray tasks (evaluation/ray_cluster.py)."""
    parser.add_argument('--ray', metavar='ADDRESS',
                        help="run episodes on a Ray cluster: 'auto' joins the running cluster or starts a "
                             'local Ray with --workers CPUs; or a cluster address (ray://head:10001). '
                             'Needs pip install .[cluster]; results equal the local run (default: local)')
