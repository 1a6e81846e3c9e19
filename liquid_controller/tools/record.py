"""`liquid-controller record`: drive the expert in the simulator and write a rosbag2 of the run.

    liquid-controller record --scene summer --minutes 20 --out data/summer_20min [--seed N]
                             [--storage mcap|sqlite3] [--no-perturb] [--range-sensor]
    liquid-controller record --scenes scenes/train/ --minutes 2 --out data/generated   # a bag per scene

Thin wrapper over :func:`liquid_controller.data.recording.record_expert` and
:func:`~liquid_controller.data.recording.record_expert_scenes`.
"""
import json

from liquid_controller.errors import LiquidControllerError
from liquid_controller.tools import fail


def register(sub):
    """Add the `record` subcommand."""
    p = sub.add_parser('record', help='record expert driving in the simulator to a rosbag2 (MCAP)',
                       description='Drive the privileged expert in the embedded simulator and write the '
                                   'run (camera, IMU, odometry, command, ground truth) as a rosbag2 bag.')
    which = p.add_mutually_exclusive_group()
    which.add_argument('--scene', default='summer', help='scene name or scene YAML path')
    which.add_argument('--scenes', nargs='+', metavar='SCENE',
                       help='several scenes (names, YAML files, or folders of YAML files, e.g. from '
                            '`liquid-controller scenes generate`): one bag per scene in the folder --out')
    p.add_argument('--minutes', type=float, default=1.0, help='simulated minutes to record (per scene)')
    p.add_argument('--out', required=True,
                   help='bag directory to create (must not exist); with --scenes, the folder of bags')
    p.add_argument('--seed', type=int, default=0,
                   help='episode seed: noise and perturbations (with --scenes, scene i uses seed + i)')
    p.add_argument('--storage', choices=('mcap', 'sqlite3'), default='mcap', help='rosbag2 storage')
    p.add_argument('--no-perturb', action='store_true',
                   help='no command perturbations (default: random pushes the expert recovers from)')
    p.add_argument('--perturb-rate', type=float, default=None, metavar='HZ',
                   help='mean perturbation events per second (default: the PerturbationConfig default)')
    p.add_argument('--camera-width', type=int, default=128, help='camera image width, pixels')
    p.add_argument('--camera-height', type=int, default=64, help='camera image height, pixels')
    p.add_argument('--camera-rate', type=float, default=30.0, metavar='HZ', help='camera frame rate')
    p.add_argument('--range-sensor', action='store_true', help='also record the forward range sensor')
    p.add_argument('--summary-json', metavar='PATH', help='write the recording summary as JSON')
    p.add_argument('--quiet', action='store_true', help='no progress bar')
    p.set_defaults(func=run)


def run(args):
    """Record; print a one-line summary. An error: one line on stderr and exit code 1."""
    from liquid_controller.data.recording import record_expert, record_expert_scenes
    from liquid_controller.sim import PerturbationConfig, WorldConfig
    try:
        if args.no_perturb:
            perturbation = None
        elif args.perturb_rate is not None:
            perturbation = PerturbationConfig(rate_hz=args.perturb_rate)
        else:
            perturbation = PerturbationConfig()
        config = WorldConfig(camera_width=args.camera_width, camera_height=args.camera_height,
                             camera_rate_hz=args.camera_rate, range_sensor=args.range_sensor)
        options = dict(minutes=args.minutes, out=args.out, seed=args.seed, perturbation=perturbation,
                       storage=args.storage, world_config=config, progress=not args.quiet)
        if args.scenes:
            summaries = record_expert_scenes(args.scenes, **options)
        else:
            summaries = [record_expert(args.scene, **options)]
    except (LiquidControllerError, ValueError, OSError) as exc:
        return fail('record', exc)
    for summary in summaries:
        print(f'wrote {summary.path}: {summary.frames} frames, {summary.sim_seconds:.1f} s sim in '
              f'{summary.wall_seconds:.1f} s wall ({summary.sim_seconds / summary.wall_seconds:.1f}x real '
              f'time); laps {summary.metrics.get("laps", 0):.2f}, '
              f'lane departures {summary.metrics.get("lane_departures")}')
    if args.summary_json:
        data = [s.to_dict() for s in summaries] if args.scenes else summaries[0].to_dict()
        with open(args.summary_json, 'w') as f:
            json.dump(data, f, indent=2)
    return 0
