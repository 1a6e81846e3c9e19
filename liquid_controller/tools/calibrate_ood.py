"""`liquid-controller calibrate-ood MODEL --bags DIR`: give a model its out-of-distribution monitor.

    liquid-controller calibrate-ood models/cfc.json --closed-loop summer --seeds 100-115 [--workers 2]
    liquid-controller calibrate-ood models/cfc.json --bags out/bags/summer [--cache out/cache]
    liquid-controller calibrate-ood models/baselines/cnn.json --closed-loop summer --source features

Fits a Gaussian to the vector the monitor models (``--source``: ``neurons``, the network's hidden
state, the default for a recurrent core; ``features``, the perception features: the conv head's
output, the cnn's latent, the default for the cnn, which has no state) and stores it, with the
threshold at the given quantile of the smoothed scores, in the model card (``ood`` section; the
weights file is not touched, the card's hash is renewed). ``--closed-loop SCENE ...`` collects the
vectors while the model drives those (in-distribution) scenes itself in the simulator, with random
starts and pushes per seed: what the monitor will see on the robot. ``--bags`` streams recorded
driving (e.g. the expert's training data) through the policy instead; such statistics miss the
network's own driving and read above 1 on most frames of its own closed-loop runs
(docs/benchmarks.md). ``liquid-controller train`` does this itself at the end of training; this
command is for models trained before, or to calibrate on other data. Thin wrapper over
:func:`liquid_controller.evaluation.closed_loop_calibration.calibrate_closed_loop` and
:func:`liquid_controller.train.ood_calibration.calibrate_model`.
"""
from liquid_controller.errors import LiquidControllerError
from liquid_controller.tools import fail


def register(sub):
    """Add the `calibrate-ood` subcommand."""
    p = sub.add_parser('calibrate-ood',
                       help="fit a model's out-of-distribution monitor on its own or recorded driving",
                       description="Fit the out-of-distribution monitor of MODEL (a Gaussian over the "
                                   "network's hidden state or its perception features, --source) on "
                                   "the model's own closed-loop driving or on recorded driving and "
                                   'store it in the model card; the node then publishes ~/ood and '
                                   'warns on /diagnostics.')
    p.add_argument('model', help='model name or path to NAME.json (any core; the cnn has no state: '
                                 'features only)')
    source = p.add_mutually_exclusive_group(required=True)
    source.add_argument('--closed-loop', nargs='+', metavar='SCENE',
                        help='scenes (names or YAML files) the model drives itself to collect the '
                             'monitored vectors')
    source.add_argument('--bags', nargs='+',
                        help='bag folders (or folders of bags) of recorded in-distribution driving')
    p.add_argument('--seeds', default='100-115',
                   help='closed loop: seeds (random start and pushes each), a list 1,2,3 or a range 100-115')
    p.add_argument('--laps', type=float, default=1.0, help='closed loop: laps per episode')
    p.add_argument('--workers', type=int, default=1, help='closed loop: processes')
    p.add_argument('--source', choices=('neurons', 'features'), default=None,
                   help='the vector the monitor models: neurons (the hidden state; default for '
                        'cfc, ltc, lstm) or features (the perception features; default for the cnn)')
    p.add_argument('--window', type=int, default=10, help='frames averaged by the score smoothing')
    p.add_argument('--quantile', type=float, default=0.995,
                   help='share of training frames whose smoothed score lies under the threshold')
    p.add_argument('--cache', default='out/cache', help='dataset cache folder (decoded bags)')
    p.add_argument('--quiet', action='store_true', help='no progress bars')
    p.set_defaults(func=run)


def run(args):
    """Calibrate and store; print the threshold. Errors: one line on stderr, exit code 1."""
    try:
        if args.closed_loop:
            from liquid_controller.evaluation.closed_loop_calibration import (calibrate_closed_loop,
                                                                              parse_seeds)
            stats, _ = calibrate_closed_loop(args.model, args.closed_loop, parse_seeds(args.seeds),
                                             laps=args.laps,
                                             window=args.window, quantile=args.quantile,
                                             workers=args.workers, progress=not args.quiet,
                                             source=args.source)
        else:
            from liquid_controller.train.ood_calibration import calibrate_model
            stats = calibrate_model(args.model, args.bags, args.cache, window=args.window,
                                    quantile=args.quantile, source=args.source, progress=not args.quiet)
    except (LiquidControllerError, ValueError, OSError) as exc:
        return fail('calibrate-ood', exc)
    vector = 'hidden-state' if stats.source == 'neurons' else 'perception-feature'
    print(f'{args.model}: OOD monitor on {stats.dim} {vector} values (source {stats.source}) fitted on '
          f'{stats.frames} frames; threshold {stats.threshold:.4g} (smoothed d2 at the '
          f'{100 * stats.quantile:g}% quantile, window {stats.window} frames)')
    return 0

