"""`liquid-controller benchmark --models M [M ...] --suite DIR --workers N --episodes-per-scene K --out DIR`:
the held-out benchmark (generated scenes in three families) over several models, filter on and off.

Thin: calls :func:`liquid_controller.evaluation.benchmark.run_benchmark`; writes ``DIR/benchmark.json``
and ``DIR/benchmark.md`` (completion, departures, collisions, interventions by row type, with 95%
confidence intervals, per family and per corner direction) and prints the markdown.

    liquid-controller benchmark --merge out/b_cfc/benchmark.json out/b_lstm/benchmark.json --out DIR --readme README.md

combines reports run at different times (same suite and episode settings) without driving again;
``--readme`` rewrites the README's held-out benchmark block from the (merged) report.
"""
import shlex
import sys
from pathlib import Path


def register(sub):
    """Add the `benchmark` subcommand."""
    p = sub.add_parser('benchmark', help='held-out benchmark suite over several models',
                       description='Drive each model through the runtime Controller on every scene of '
                                   'a benchmark suite (random start, disturbances, K episodes per '
                                   'scene), with the safety filter on and/or off (shadow), and report '
                                   'means with 95% confidence intervals overall, per scene family and '
                                   'per corner direction.')
    which = p.add_mutually_exclusive_group(required=True)
    which.add_argument('--models', nargs='+', metavar='M',
                       help="model names in models/ or paths to NAME.json; 'expert' for the privileged reference")
    which.add_argument('--merge', nargs='+', metavar='JSON',
                       help='combine earlier benchmark.json reports (same suite and episode settings) '
                            'into one, without driving')
    p.add_argument('--suite', metavar='DIR', help='suite folder or suite.yaml '
                                                  '(default: the shipped liquid_controller/sim/benchmark_suite)')
    p.add_argument('--episodes-per-scene', type=int, default=1, metavar='K',
                   help='episodes per scene, seeds 0..K-1 (default 1)')
    p.add_argument('--filter', default='on', choices=('on', 'off', 'both'),
                   help="'off': the network's nominal command drives, the filter runs in shadow (default on)")
    p.add_argument('--workers', type=int, default=1, metavar='N', help='processes (default 1)')
    from liquid_controller.tools import add_ray_argument
    add_ray_argument(p)
    p.add_argument('--out', required=True, metavar='DIR', help='output folder')
    p.add_argument('--readme', metavar='PATH',
                   help='rewrite the marked held-out benchmark block of this README '
                        '(<!-- benchmark:begin --> ... <!-- benchmark:end -->)')
    p.add_argument('--quiet', action='store_true', help='no progress bars')
    from liquid_controller.tools.params_file import add_params_file_argument
    add_params_file_argument(p)
    p.set_defaults(func=run)


def command_line(args):
    """The command that reproduces this run (quoted in the README block)."""
    parts = ['liquid-controller', 'benchmark']
    if args.merge:
        parts += ['--merge', *args.merge]
    else:
        parts += ['--models', *args.models, '--filter', args.filter,
                  '--episodes-per-scene', str(args.episodes_per_scene), '--workers', str(args.workers)]
        if args.suite:
            parts += ['--suite', args.suite]
        if getattr(args, 'params_file', None):
            parts += ['--params-file', args.params_file]
    parts += ['--out', args.out] + (['--readme', args.readme] if args.readme else [])
    return shlex.join(parts)


def run(args):
    """Run (or merge) the benchmark; returns the exit code (1 with a one-line error on bad input)."""
    from liquid_controller.errors import InputError, ModelFileError, SceneError
    from liquid_controller.evaluation import benchmark as bm
    from liquid_controller.evaluation.results import BENCHMARK_BEGIN, BENCHMARK_END, update_marked_section
    from liquid_controller.tools.params_file import settings_from_args
    modes = ('on', 'off') if args.filter == 'both' else (args.filter,)
    try:
        if args.readme and not Path(args.readme).is_file():
            raise InputError('--readme', args.readme, 'file not found')
        if args.merge:
            result = bm.merge_results([bm.load_result(p) for p in args.merge], command=command_line(args))
            from liquid_controller.evaluation.results import write_report
            write_report(result, args.out, 'benchmark', bm.format_markdown(result))
        else:
            settings = None if all(m == 'expert' for m in args.models) else settings_from_args(args)
            result = bm.run_benchmark(args.models, args.suite, episodes_per_scene=args.episodes_per_scene,
                                      filter_modes=modes, workers=args.workers, ray=args.ray,
                                      out_dir=args.out, settings=settings, progress=not args.quiet,
                                      command=command_line(args))
        if args.readme:
            update_marked_section(args.readme, bm.readme_section(result), BENCHMARK_BEGIN, BENCHMARK_END)
    except (InputError, ModelFileError, SceneError) as exc:
        print(f'liquid-controller benchmark: error: {exc}', file=sys.stderr)
        return 1
    print(bm.format_markdown(result))
    print(f"json: {result['json']}  markdown: {result['markdown']}")
    if args.readme:
        print(f'README benchmark section rewritten: {args.readme}')
    return 0
