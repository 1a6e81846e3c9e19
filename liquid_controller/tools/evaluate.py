"""`liquid-controller evaluate --model M --scenes summer,fall,winter,night --laps N --seeds 0,1`:
closed-loop evaluation in the embedded simulator through the runtime Controller (ROS-free fast path).

Thin: parses arguments and calls :func:`liquid_controller.evaluation.evaluate.evaluate_driver`. Prints a
table, writes ``DIR/evaluation.json`` and trajectory plots ``DIR/plots/*.png``. An episode ends at the
target laps, after ``--seconds-per-lap`` x laps of simulated time (default 90 s per lap), on a collision
or when the rover leaves the road (see the library's docstring).
"""
import shlex
import sys
from pathlib import Path

from liquid_controller.tools import add_ray_argument
from liquid_controller.tools.params_file import add_params_file_argument, settings_from_args


def add_eval_arguments(p):
    """Arguments shared by `evaluate` and `compare`."""
    p.add_argument('--scenes', default='summer,fall,winter,night', metavar='LIST',
                   help='comma-separated scene names or scene YAML paths (default: %(default)s)')
    p.add_argument('--laps', type=float, default=1.0, metavar='N', help='target laps per episode (default 1)')
    p.add_argument('--seeds', default='0', metavar='LIST', help='comma-separated seeds (default: 0)')
    p.add_argument('--seconds-per-lap', type=float, default=90.0, metavar='S',
                   help='time limit per target lap in simulated seconds (default 90)')
    p.add_argument('--max-seconds', type=float, metavar='S',
                   help='explicit episode time limit (overrides --seconds-per-lap)')
    p.add_argument('--no-plots', action='store_true', help='do not write trajectory plots')
    p.add_argument('--quiet', action='store_true', help='no progress bars')
    p.add_argument('--random-start', action='store_true',
                   help='each scene and seed starts at its own random place on the lap, off-centre and '
                        'askew, so seeds are separate trials')
    p.add_argument('--disturbance-rate', type=float, default=0.0, metavar='HZ',
                   help='random yaw-rate pushes per second added to the applied command (default 0)')
    p.add_argument('--workers', type=int, default=1, metavar='N',
                   help='run episodes in N processes (same results as 1; default 1)')
    add_ray_argument(p)
    add_params_file_argument(p)


def register(sub):
    """Add the `evaluate` subcommand."""
    p = sub.add_parser('evaluate', help='closed-loop evaluation of a model in the simulator',
                       description='Drive a model in the embedded MuJoCo simulator through the runtime '
                                   'Controller (as the ROS node would) and report lap completion, lane '
                                   'offset, departures, collisions, filter interventions and step time.')
    who = p.add_mutually_exclusive_group(required=True)
    who.add_argument('--model', metavar='M', help='model name in models/ or path to NAME.json')
    who.add_argument('--expert', action='store_true',
                     help='evaluate the privileged expert instead (reference for the loop)')
    add_eval_arguments(p)
    p.add_argument('--image-noise', type=float, default=0.0, metavar='STD',
                   help='Gaussian noise std added to every camera frame, 8-bit units (default 0)')
    p.add_argument('--out', metavar='DIR', help='output folder (default out/eval/NAME)')
    p.add_argument('--backend', choices=('auto', 'torch', 'onnx'), default=None,
                   help="policy engine (overrides the params file's 'backend'; onnx: --model is an "
                        'ONNX export folder or a model with NAME.onnx.json next to its card)')
    p.add_argument('--no-filter', action='store_true',
                   help="drive on the network's nominal command alone; the safety filter runs in shadow "
                        'and its interventions are still counted')
    p.add_argument('--lane-from-params', action='store_true',
                   help="lane barrier half-width from the params file's safety.lane_half_width instead of "
                        'the scene (lane_width / 2 - rover half-width)')
    p.add_argument('--record-in-card', action='store_true',
                   help="store the results in the model card's metrics (closed_loop, closed_loop_laps)")
    p.set_defaults(func=run)


def command_line(args):
    """The command that reproduces this evaluation (stored with recorded results)."""
    parts = ['liquid-controller', 'evaluate', '--model', str(args.model), '--scenes', args.scenes,
             '--laps', f'{args.laps:g}', '--seeds', args.seeds]
    if args.image_noise:
        parts += ['--image-noise', f'{args.image_noise:g}']
    if args.seconds_per_lap != 90.0:
        parts += ['--seconds-per-lap', f'{args.seconds_per_lap:g}']
    if args.max_seconds is not None:
        parts += ['--max-seconds', f'{args.max_seconds:g}']
    if args.random_start:
        parts += ['--random-start']
    if args.disturbance_rate:
        parts += ['--disturbance-rate', f'{args.disturbance_rate:g}']
    if args.no_filter:
        parts += ['--no-filter']
    if args.lane_from_params:
        parts += ['--lane-from-params']
    return shlex.join(parts)


def _settings(args):
    settings = settings_from_args(args)
    return settings.with_values(backend=args.backend) if args.backend else settings


def run(args):
    from liquid_controller.errors import InputError, ModelFileError, SceneError
    from liquid_controller.evaluation import evaluate as ev
    try:
        config = ev.EvalConfig(scenes=ev.parse_list(args.scenes, 'scenes'), laps=args.laps,
                               seeds=ev.parse_list(args.seeds, 'seeds', int),
                               image_noise_std=args.image_noise, seconds_per_lap=args.seconds_per_lap,
                               max_seconds=args.max_seconds, plots=not args.no_plots,
                               random_start=args.random_start, disturbance_rate_hz=args.disturbance_rate)
        driver = ev.ExpertDriverAdapter() if args.expert else \
            ev.ControllerDriver(args.model, _settings(args), use_filter=not args.no_filter,
                                lane_from_scene=not args.lane_from_params)
        out = Path(args.out) if args.out else Path('out') / 'eval' / driver.name
        report = ev.evaluate_driver(driver, config, out_dir=out, progress=not args.quiet,
                                    workers=args.workers, ray=args.ray)
        if args.record_in_card and not args.expert:
            card = ev.record_in_card(report, command=command_line(args))
            print(f'results recorded in {card}')
    except (InputError, ModelFileError, SceneError) as exc:
        print(f'liquid-controller evaluate: error: {exc}', file=sys.stderr)
        return 1
    print(ev.format_report(report))
    print(f"json: {report['json']}" + (f"  plots: {out / 'plots'}" if report['plots'] else ''))
    return 0
