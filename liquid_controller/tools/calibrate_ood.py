"""`liquid-controller calibrate-ood MODEL --bags DIR`: give a model its out-of-distribution monitor.

    liquid-controller calibrate-ood models/cfc.json --bags out/bags/summer [--window 10]
                                    [--quantile 0.995] [--cache out/cache]

Streams the recorded driving (normally the model's training data) through the policy as the runtime
Controller does, fits a Gaussian to the hidden states and stores it, with the threshold at the given
quantile of the smoothed training scores, in the model card (``ood`` section; the weights file is not
touched, the card's hash is renewed). ``liquid-controller train`` does this itself at the end of
training; this command is for models trained before, or to calibrate on other data.
Thin wrapper over :func:`liquid_controller.train.ood_calibration.calibrate_model`.
"""
from liquid_controller.errors import LiquidControllerError
from liquid_controller.tools import fail


def register(sub):
    """Add the `calibrate-ood` subcommand."""
    p = sub.add_parser('calibrate-ood', help="fit a model's out-of-distribution monitor on recorded driving",
                       description="Fit the out-of-distribution monitor of MODEL (a Gaussian over the "
                                   "liquid network's hidden state) on recorded driving and store it in "
                                   'the model card; the node then publishes ~/ood and warns on '
                                   '/diagnostics.')
    p.add_argument('model', help='model name or path to NAME.json (a recurrent core: cfc, ltc, lstm)')
    p.add_argument('--bags', nargs='+', required=True,
                   help='bag folders (or folders of bags) of in-distribution driving, e.g. the training bags')
    p.add_argument('--window', type=int, default=10, help='frames averaged by the score smoothing')
    p.add_argument('--quantile', type=float, default=0.995,
                   help='share of training frames whose smoothed score lies under the threshold')
    p.add_argument('--cache', default='out/cache', help='dataset cache folder (decoded bags)')
    p.add_argument('--quiet', action='store_true', help='no progress bars')
    p.set_defaults(func=run)


def run(args):
    """Calibrate and store; print the threshold. Errors: one line on stderr, exit code 1."""
    from liquid_controller.train.ood_calibration import calibrate_model
    try:
        stats = calibrate_model(args.model, args.bags, args.cache, window=args.window,
                                quantile=args.quantile, progress=not args.quiet)
    except (LiquidControllerError, ValueError, OSError) as exc:
        return fail('calibrate-ood', exc)
    print(f'{args.model}: OOD monitor on {stats.dim} hidden-state values fitted on {stats.frames} frames; '
          f'threshold {stats.threshold:.4g} (smoothed d2 at the {100 * stats.quantile:g}% quantile, '
          f'window {stats.window} frames)')
    return 0
