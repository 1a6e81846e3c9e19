"""`liquid-controller replay`: run a recorded bag through the runtime Controller offline (no ROS needed).

    liquid-controller replay BAG --model M [--out OUT] [--image-topic camera/image_raw] [--imu-topic imu/data]
                             [--odom-topic odom] [--range-topic range] [--command-topic cmd_vel]
                             [--storage mcap|sqlite3] [--max-frames N] [--golden-out G.npz] [--metrics-json P]

Thin wrapper over :func:`liquid_controller.data.replay.replay_bag`: prints the metrics against the bag's
recorded command (MAE, correlation), filter interventions and the per-stage time budget. Exit codes:
0 ok, 1 a fault in the bag (the results up to it are written and printed), 2 bad arguments or files.
"""
import json
import sys

from liquid_controller.errors import LiquidControllerError
from liquid_controller.tools.params_file import add_params_file_argument, settings_from_args


def register(sub):
    """Add the `replay` subcommand."""
    p = sub.add_parser('replay', help='replay a rosbag2 through the controller offline; output bag + metrics')
    p.add_argument('bag', help='rosbag2 directory (MCAP or sqlite3)')
    p.add_argument('--model', required=True, help='model file (NAME.json path or name in models/)')
    p.add_argument('--out', help='output bag directory to create (inputs + computed topics)')
    p.add_argument('--storage', choices=('mcap', 'sqlite3'), default='mcap', help='output bag storage')
    p.add_argument('--image-topic', default='camera/image_raw',
                   help='camera topic, Image or CompressedImage (default: camera/image_raw, or '
                        'camera/image_raw/compressed when only that exists)')
    p.add_argument('--imu-topic', default='imu/data')
    p.add_argument('--odom-topic', default='odom', help="odometry topic ('' = not used)")
    p.add_argument('--range-topic', default='range', help="range topic ('' = not used)")
    p.add_argument('--command-topic', default='cmd_vel', help="recorded command to compare with ('' = none)")
    p.add_argument('--output-prefix', default='/replay', help='namespace of the computed topics in OUT')
    p.add_argument('--max-frames', type=int, default=0, help='stop after N camera frames (0 = all)')
    p.add_argument('--no-copy', action='store_true', help='do not copy the input topics into OUT')
    p.add_argument('--golden-out', metavar='NPZ', help='write the per-frame arrays (for golden tests)')
    p.add_argument('--metrics-json', metavar='PATH', help='write the metrics as JSON')
    p.add_argument('--quiet', action='store_true', help='no progress bar')
    add_params_file_argument(p)
    p.set_defaults(func=run)


def run(args):
    """Replay and print metrics (see module docstring for exit codes)."""
    from liquid_controller.data.replay import ReplayConfig, ReplayError, ReplayTopics, replay_bag
    try:
        topics = ReplayTopics(image=args.image_topic, imu=args.imu_topic, odom=args.odom_topic,
                              range=args.range_topic, command=args.command_topic)
        config = ReplayConfig(topics=topics, output_prefix=args.output_prefix, storage=args.storage,
                              copy_inputs=not args.no_copy, max_frames=args.max_frames)
    except ValueError as exc:
        print(f'liquid-controller replay: {exc}', file=sys.stderr)
        return 2
    code = 0
    try:
        result = replay_bag(args.bag, args.model, out=args.out, config=config,
                            settings=settings_from_args(args), progress=not args.quiet)
    except ReplayError as exc:
        result, code = exc.result, 1
        if result is None:
            print(f'liquid-controller replay: {exc}', file=sys.stderr)
            return 1
    except (LiquidControllerError, ValueError) as exc:
        print(f'liquid-controller replay: {exc}', file=sys.stderr)
        return 2
    print(result.format_metrics())
    if args.out:
        print(f'wrote {args.out}')
    if args.golden_out:
        result.save_npz(args.golden_out)
    if args.metrics_json:
        with open(args.metrics_json, 'w') as f:
            json.dump({**result.metrics(), 'error': result.error, 'notes': result.notes}, f, indent=2,
                      default=float)
    if code:
        print(f'liquid-controller replay: {result.error}', file=sys.stderr)
    return code
