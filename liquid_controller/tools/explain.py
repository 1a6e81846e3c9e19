"""`liquid-controller explain`: neuron activity, attention maps and decision trees for one model.

    liquid-controller explain --model M --bag B [--out DIR] [--max-leaves 16] [--baseline LSTM_MODEL]
                              [--scene summer --sim-seconds 3] [--inputs gyro_z,f3] [--max-frames N]

Prints the steering tree as readable rules with its held-out R^2, fidelity against tree size, and the
attention measures; writes DIR/report.html (self-contained), summary.json and the PNGs. Thin wrapper
over :func:`liquid_controller.explain.analysis.run_explanation`.
"""
from liquid_controller.errors import LiquidControllerError
from liquid_controller.tools import fail
from liquid_controller.tools.params_file import add_params_file_argument, settings_from_args


def register(sub):
    """Add the `explain` subcommand."""
    p = sub.add_parser('explain', help='explain a model: attention maps, neuron activity, decision trees',
                       description='Replay a bag (and/or drive the expert in the simulator) through the '
                                   'Controller and explain the model: attention maps, neuron activity and '
                                   'decision trees fitted to its steering; writes OUT/report.html.')
    p.add_argument('--model', required=True, help='model name or path (.json card)')
    p.add_argument('--bag', help='rosbag2 to replay through the Controller (activity and trees)')
    p.add_argument('--scene', default=None,
                   help='simulator scene for attention-on-road (expert driving); without --bag the trees '
                        'use this run too (default: summer)')
    p.add_argument('--sim-seconds', type=float, default=3.0, help='simulated seconds')
    p.add_argument('--no-sim', action='store_true', help='no simulator run (no attention-on-road)')
    p.add_argument('--out', default='explain_out', help='output folder')
    p.add_argument('--max-leaves', type=int, default=16, help='leaves of the reported tree')
    p.add_argument('--baseline', help='second model (e.g. the LSTM) analysed on the same data for comparison')
    p.add_argument('--inputs', default='', help='comma-separated sensory inputs added to the tree features '
                                                '(e.g. gyro_z,f3)')
    p.add_argument('--max-frames', type=int, default=None, help='use at most this many bag frames (default: all)')
    p.add_argument('--attention-frames', type=int, default=30, help='frames scored for attention')
    p.add_argument('--seed', type=int, default=0, help='seed of the simulator run and the tree fits')
    p.add_argument('--quiet', action='store_true', help='no progress bars')
    add_params_file_argument(p)
    p.set_defaults(func=run)


def run(args):
    """Run the analysis, print rules and measures. An error: one line on stderr, exit code 1."""
    from liquid_controller.explain.analysis import run_explanation
    scene = None if args.no_sim else (args.scene or 'summer')
    try:
        if args.bag is None and scene is None:
            raise ValueError('give --bag, or allow a simulator run (no --no-sim)')
        inputs = tuple(s for s in args.inputs.split(',') if s)
        result = run_explanation(args.model, args.out, bag=args.bag, scene=scene, baseline=args.baseline,
                                 sim_seconds=args.sim_seconds, max_leaves=args.max_leaves,
                                 include_inputs=inputs, attention_frames=args.attention_frames,
                                 max_frames=args.max_frames, seed=args.seed, progress=not args.quiet,
                                 settings=settings_from_args(args))
    except (LiquidControllerError, ValueError, OSError) as exc:
        return fail('explain', exc)
    print(format_result(result))
    print(f'report: {args.out}/report.html')
    return 0


def format_result(result):
    """Plain-text summary: rules, fidelity table, attention measures (and the baseline's)."""
    lines = []
    for r in [result] + ([result.baseline] if result.baseline is not None else []):
        t = r.tree
        lines += [f'== {r.name} ({r.card.get("policy", {}).get("core")}): {r.frames} frames from {r.source}',
                  f'steering tree ({t["leaves"]} leaves), held-out R^2 = {_f(t["r2_test"])} '
                  f'(train {_f(t["r2_train"])}): {t.get("r2_comment", "")}',
                  f'speed tree held-out R^2 = {_f(t["speed_r2_test"])}: {t.get("speed_r2_comment", "")}',
                  t['rules'].rstrip(),
                  'fidelity vs size: ' + ', '.join(f'{f["leaves"]} leaves R^2 {_f(f["r2_test"])}'
                                                   for f in r.fidelity)]
        for method, a in r.attention.items():
            lines.append(f'attention [{method}]: on road {_f(a["attention_on_road"])} '
                         f'(chance {_f(a["road_pixel_fraction"])}), SSIM under noise {_f(a["saliency_ssim"])} '
                         f'over {a["frames"]} frames')
    return '\n'.join(lines)


def _f(v):
    return 'n/a' if v is None or v != v else f'{v:.3f}'
