"""`liquid-controller compare --models A B C --scenes ... --laps N --seeds ... --noise 0,8,16`: several
models in closed loop on the same scenes and seeds, one table (text, markdown and JSON), with the
attention columns (share of saliency on the road, saliency SSIM under noise) unless ``--no-attention``.

Thin: calls :func:`liquid_controller.evaluation.compare.compare_models`; with ``--readme README.md`` the
results section between ``<!-- results:begin -->`` and ``<!-- results:end -->`` is rewritten by
:func:`liquid_controller.evaluation.results.update_readme`, including the command that regenerates it.
"""
import shlex
import sys
from pathlib import Path

from liquid_controller.tools.evaluate import add_eval_arguments
from liquid_controller.tools.params_file import settings_from_args


def register(sub):
    """Add the `compare` subcommand."""
    p = sub.add_parser('compare', help='compare several models in closed loop (one table)',
                       description='Evaluate several models on the same scenes and seeds through the '
                                   'runtime Controller; rows for added image noise levels.')
    p.add_argument('--models', nargs='+', default=[], metavar='M', help='model names or paths')
    p.add_argument('--expert', action='store_true', help='add the privileged expert as a reference row')
    add_eval_arguments(p)
    p.add_argument('--noise', default='0', metavar='LIST',
                   help='comma-separated Gaussian image-noise std levels, 8-bit units (default 0)')
    p.add_argument('--noise-scenes', metavar='LIST',
                   help='scenes for the noise levels > 0 (default: the first of --scenes)')
    p.add_argument('--no-attention', action='store_true',
                   help='skip the attention columns (saliency share on the road, saliency SSIM under '
                        'noise; about 3 s of simulation per model and scene)')
    p.add_argument('--out', default='out/compare', metavar='DIR', help='output folder (default %(default)s)')
    p.add_argument('--readme', metavar='PATH', help='rewrite the marked results section of this README')
    p.add_argument('--train-bench', metavar='PATH',
                   help='JSON of `liquid-controller bench train --json` for the CfC/LTC training ratio')
    p.set_defaults(func=run)


def command_line(args):
    """The command that reproduces this comparison (written into the README section)."""
    parts = ['liquid-controller', 'compare']
    if args.models:
        parts += ['--models', *args.models]
    if args.expert:
        parts.append('--expert')
    parts += ['--scenes', args.scenes, '--laps', f'{args.laps:g}', '--seeds', args.seeds,
              '--noise', args.noise]
    if args.noise_scenes:
        parts += ['--noise-scenes', args.noise_scenes]
    if args.seconds_per_lap != 90.0:
        parts += ['--seconds-per-lap', f'{args.seconds_per_lap:g}']
    if args.max_seconds is not None:
        parts += ['--max-seconds', f'{args.max_seconds:g}']
    if args.random_start:
        parts.append('--random-start')
    if args.disturbance_rate:
        parts += ['--disturbance-rate', f'{args.disturbance_rate:g}']
    if args.no_attention:
        parts.append('--no-attention')
    parts += ['--out', args.out]
    if args.train_bench:
        parts += ['--train-bench', args.train_bench]
    if args.readme:
        parts += ['--readme', args.readme]
    return shlex.join(parts)


def run(args):
    from liquid_controller.errors import InputError, ModelFileError, SceneError
    from liquid_controller.evaluation import compare as cmp
    from liquid_controller.evaluation.evaluate import parse_list
    try:
        if args.readme and not Path(args.readme).is_file():
            raise InputError('--readme', args.readme, 'file not found')
        if not args.models and not args.expert:
            raise InputError('--models', args.models, 'give at least one model (or --expert)')
        config = cmp.eval_config_from_args(args.scenes, args.laps, args.seeds, args.seconds_per_lap,
                                           args.max_seconds, plots=not args.no_plots,
                                           random_start=args.random_start,
                                           disturbance_rate_hz=args.disturbance_rate)
        noise = parse_list(args.noise, 'noise', float)
        noise_scenes = parse_list(args.noise_scenes, 'noise-scenes') if args.noise_scenes else None
        result = cmp.compare_models(args.models, config, noise_levels=noise, noise_scenes=noise_scenes,
                                    out_dir=args.out, progress=not args.quiet,
                                    include_expert=args.expert, command=command_line(args),
                                    workers=args.workers, ray=args.ray,
                                    attention=None if args.no_attention else cmp.AttentionSettings(),
                                    settings=settings_from_args(args))
        print(cmp.format_table(result))
        print(f"json: {result['json']}  markdown: {result['markdown']}")
        if args.readme:
            from liquid_controller.evaluation.results import update_readme
            update_readme(args.readme, result, train_bench=args.train_bench)
            print(f'README results section rewritten: {args.readme}')
    except (InputError, ModelFileError, SceneError) as exc:
        print(f'liquid-controller compare: error: {exc}', file=sys.stderr)
        return 1
    return 0
