"""`liquid-controller replay`: run recorded bags through the runtime Controller offline (no ROS needed).

    liquid-controller replay BAG --model M [--out OUT] [--image-topic camera/image_raw] [--imu-topic imu/data]
                             [--odom-topic odom] [--range-topic range] [--command-topic cmd_vel]
                             [--storage mcap|sqlite3] [--max-frames N] [--golden-out G.npz] [--metrics-json P]

Thin wrapper over :func:`liquid_controller.data.replay.replay_bag`: prints the metrics against the bag's
recorded command (MAE, correlation), filter interventions and the per-stage time budget.

BAG may also be a folder of bags (searched recursively, like `train --bags`): each bag is replayed in
turn, one metrics block each, and ``--out`` is then a parent folder receiving one output bag per input
bag under the same relative path; ``--metrics-json`` holds one entry per bag; ``--golden-out`` takes
one bag only.

Exit codes: 0 ok; 1 an error, one line ``liquid-controller replay: error: ...`` on stderr (a bag or
model that cannot be read, a wrong topic, or a fault in the bag: then the results up to the fault are
written and printed; with a folder of bags: any bag that failed); 2 an argparse usage error.
"""
import json
from pathlib import Path

from liquid_controller.errors import LiquidControllerError
from liquid_controller.tools import fail
from liquid_controller.tools.params_file import add_params_file_argument, settings_from_args


def register(sub):
    """Add the `replay` subcommand."""
    p = sub.add_parser('replay', help='replay a rosbag2 through the controller offline; output bag + metrics',
                       description='Run a recorded rosbag2 bag (or every bag in a folder) through the '
                                   'runtime Controller offline, as controller_node would, and print the '
                                   'agreement with the recorded command, filter interventions and the '
                                   'per-stage time budget; optionally write an output bag with the inputs '
                                   'and the computed topics.')
    p.add_argument('bag', help='rosbag2 directory (MCAP or sqlite3), or a folder of bags (each is replayed)')
    p.add_argument('--model', required=True, help='model file (NAME.json path or name in models/)')
    p.add_argument('--out', help='output bag directory to create (inputs + computed topics); with a folder '
                                 'of bags: a parent folder, one output bag per input bag')
    p.add_argument('--storage', choices=('mcap', 'sqlite3'), default='mcap', help='output bag storage')
    p.add_argument('--image-topic', default='camera/image_raw',
                   help='camera topic, Image or CompressedImage (default: camera/image_raw, or '
                        'camera/image_raw/compressed when only that exists)')
    p.add_argument('--imu-topic', default='imu/data', help='IMU topic')
    p.add_argument('--odom-topic', default='odom', help="odometry topic ('' = not used)")
    p.add_argument('--range-topic', default='range', help="range topic ('' = not used)")
    p.add_argument('--command-topic', default='cmd_vel', help="recorded command to compare with ('' = none)")
    p.add_argument('--output-prefix', default='/replay', help='namespace of the computed topics in OUT')
    p.add_argument('--max-frames', type=int, default=0, help='stop after N camera frames (0 = all)')
    p.add_argument('--no-copy', action='store_true', help='do not copy the input topics into OUT')
    p.add_argument('--golden-out', metavar='NPZ', help='write the per-frame arrays (for golden tests; one bag)')
    p.add_argument('--metrics-json', metavar='PATH',
                   help='write the metrics as JSON (with a folder of bags: one entry per bag)')
    p.add_argument('--quiet', action='store_true', help='no progress bar')
    p.add_argument('--backend', choices=('auto', 'torch', 'onnx'), default=None,
                   help="policy engine (overrides the params file's 'backend'; onnx: --model is an "
                        'ONNX export folder or a model with NAME.onnx.json next to its card)')
    add_params_file_argument(p)
    p.set_defaults(func=run)


def _metrics_entry(result):
    return {**result.metrics(), 'error': result.error, 'notes': result.notes}


def _write_json(path, data):
    with open(path, 'w') as f:
        json.dump(data, f, indent=2, default=float)


def _replay_one(args, bag, model, out, config, settings):
    """Replay one bag and print its metrics block. Returns (exit code, metrics-json entry, result or
    None). A failure before the first frame (unreadable bag or model, wrong topic) prints only the error
    line."""
    from liquid_controller.data.replay import ReplayError, replay_bag
    code = 0
    try:
        result = replay_bag(bag, model, out=out, config=config, settings=settings, progress=not args.quiet)
    except ReplayError as exc:
        result, code = exc.result, 1
        if result is None or result.frames == 0:       # nothing replayed: no metrics block of NaN
            if out is not None and Path(out).exists():
                print(f'wrote {out}')
            return fail('replay', exc), {'error': str(exc)}, None
    except (LiquidControllerError, ValueError, OSError) as exc:
        return fail('replay', exc), {'error': str(exc)}, None
    print(result.format_metrics())
    if out is not None:
        print(f'wrote {out}')
    if code:
        fail('replay', result.error)
    return code, _metrics_entry(result), result


def run(args):
    """Replay and print metrics (see the module docstring for exit codes)."""
    from liquid_controller.data.bag import bags_in_folder, is_bag_dir
    from liquid_controller.data.replay import ReplayConfig, ReplayTopics
    try:
        topics = ReplayTopics(image=args.image_topic, imu=args.imu_topic, odom=args.odom_topic,
                              range=args.range_topic, command=args.command_topic)
        config = ReplayConfig(topics=topics, output_prefix=args.output_prefix, storage=args.storage,
                              copy_inputs=not args.no_copy, max_frames=args.max_frames)
        settings = settings_from_args(args)
        if args.backend:
            settings = settings.with_values(backend=args.backend)
    except (LiquidControllerError, ValueError, OSError) as exc:
        return fail('replay', exc)
    root = Path(args.bag)
    bags = bags_in_folder(root) if root.is_dir() and not is_bag_dir(root) else []
    if not bags:                                   # one bag (or not a bag: replay_bag says why)
        code, entry, result = _replay_one(args, args.bag, args.model, args.out, config, settings)
        if result is None:
            return code
        try:
            if args.golden_out:
                result.save_npz(args.golden_out)
            if args.metrics_json:
                _write_json(args.metrics_json, entry)
        except OSError as exc:
            return fail('replay', exc)
        return code
    return _replay_folder(args, root, bags, config, settings)


def _replay_folder(args, root, bags, config, settings):
    """Replay every bag under ``root``: one metrics block each; exit 1 when any failed."""
    names = [str(b.relative_to(root)) for b in bags]
    if args.golden_out:
        return fail('replay', f'--golden-out takes one bag; {root} is a folder of {len(bags)} bags '
                              f'({", ".join(names)})')
    if args.out and Path(args.out).exists():
        return fail('replay', f'--out {args.out}: output folder already exists')
    from liquid_controller.runtime.policy_backend import load_runtime_model
    try:
        model = load_runtime_model(args.model, settings['backend'])   # once for all bags
    except (LiquidControllerError, ValueError, OSError) as exc:
        return fail('replay', exc)
    print(f'{root}: a folder of {len(bags)} bags, replaying each', flush=True)
    entries, failed = {}, []
    for bag, name in zip(bags, names):
        print(f'\n== {bag} ==', flush=True)
        out = Path(args.out) / name if args.out else None
        code, entries[str(bag)], _ = _replay_one(args, bag, model, out, config, settings)
        if code:
            failed.append(name)
    if args.metrics_json:
        try:
            _write_json(args.metrics_json, entries)
        except OSError as exc:
            return fail('replay', exc)
    print(f'\nreplayed {len(bags)} bags: {len(bags) - len(failed)} ok, {len(failed)} failed', flush=True)
    if failed:
        return fail('replay', f'{len(failed)} of {len(bags)} bags in {root} failed: {", ".join(failed)}')
    return 0
