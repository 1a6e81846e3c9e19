"""`liquid-controller bench SUITE`: benchmarks printed as a table and written as JSON.

Each suite is a module in liquid_controller.tools.benchmarks exposing ``run(args) -> dict`` (results
with ratios computed in the same run) and ``format_table(results) -> str``. ``bench all`` runs every
suite and writes one JSON document keyed by suite.
"""
import importlib
import json
import platform
import time
from pathlib import Path

from liquid_controller.errors import InputError, LiquidControllerError
from liquid_controller.tools import fail

# suite name -> module in liquid_controller.tools.benchmarks
SUITES = {
    'safety': 'safety',
    'train': 'train',
    'core': 'core',
    'sim': 'sim',
    'latency': 'latency',
    'replay': 'replay',
    'edge': 'edge',
}


def register(sub):
    """Add the `bench` subcommand."""
    p = sub.add_parser('bench', help='run benchmarks (JSON output with ratios from the same run)',
                       description='Run a benchmark suite (or all of them), print each as a table and '
                                   'optionally write the results, with ratios measured in the same run, '
                                   'as JSON.')
    p.add_argument('suite', choices=sorted(SUITES) + ['all'], help='which benchmark suite')
    p.add_argument('--json', metavar='PATH', help='write results as JSON to PATH')
    p.add_argument('--quick', action='store_true', help='fewer iterations (smoke run, noisy numbers)')
    p.set_defaults(func=run)


def machine_info():
    """What the numbers were measured on."""
    try:   # the edge benchmark's own workers run without torch; this process normally has it
        import torch
        torch_version = torch.__version__
    except ImportError:
        torch_version = None
    return {
        'python': platform.python_version(),
        'torch': torch_version,
        'machine': platform.machine(),
        'processor': platform.processor(),
        'time_utc': time.strftime('%Y-%m-%dT%H:%M:%SZ', time.gmtime()),
    }


def run(args):
    """Run the selected suites, print their tables and optionally write JSON."""
    names = sorted(SUITES) if args.suite == 'all' else [args.suite]
    results = {'machine': machine_info()}
    try:
        if args.json and Path(args.json).is_dir():
            raise InputError('--json', args.json, 'is a folder; give a file path')
        for name in names:
            module = importlib.import_module(f'liquid_controller.tools.benchmarks.{SUITES[name]}')
            print(f'== bench {name} ==', flush=True)
            results[name] = module.run(args)
            print(module.format_table(results[name]), flush=True)
        if args.json:
            Path(args.json).parent.mkdir(parents=True, exist_ok=True)
            Path(args.json).write_text(json.dumps(results, indent=2))
            print(f'wrote {args.json}')
    except (LiquidControllerError, OSError, ValueError) as exc:
        return fail('bench', exc)
    return 0
