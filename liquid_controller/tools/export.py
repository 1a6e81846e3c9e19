"""`liquid-controller export MODEL --format onnx --out DIR`: the whole streaming policy step as ONNX.

    liquid-controller export MODEL --format onnx --out DIR [--verify-bag BAG ...] [--no-bag]
                             [--tolerance 1e-5]

Writes DIR/NAME.onnx (one graph: preprocessed image, IMU features, hidden state, dt -> command, aux,
barrier parameters, new state), DIR/NAME.onnx.json (the export card) and copies of the model card and
weights (layout: runtime/onnx_backend.py). The export verifies itself before writing: ONNX Runtime
against torch over the frames the runtime Controller feeds the policy when replaying each
``--verify-bag`` (default: the package's test/bags/summer_lane when present) and over a random
sequence with irregular dt, each side carrying its own hidden state; any difference above
``--tolerance`` is an error and nothing is written. Needs torch and onnx (an export is made where the
model was trained); the folder then runs anywhere with ``--backend onnx`` / ``backend: onnx``.

Exit codes: 0 written and verified; 1 an error (one line on stderr); 2 usage error.
"""
from pathlib import Path

import numpy as np

from liquid_controller.errors import InputError, LiquidControllerError
from liquid_controller.tools import fail

FORMATS = ('onnx',)


def _default_bags():
    # a source checkout has the regression bag; an installed package may not (then random only)
    try:
        from liquid_controller.paths import share_dir
        bag = share_dir() / 'test' / 'bags' / 'summer_lane' / 'bag'
    except FileNotFoundError:
        return []
    return [bag] if bag.is_dir() else []


def register(sub):
    """Add the `export` subcommand."""
    p = sub.add_parser('export', help='export a model as one ONNX graph of the streaming step',
                       description='Export the whole streaming policy step of a model (conv head, '
                                   'core, readouts; NCP masks folded in) as one ONNX graph plus an '
                                   'export card, verified against torch before it is written.')
    p.add_argument('model', help='model file (NAME.json path or name in models/)')
    p.add_argument('--format', choices=FORMATS, default='onnx', help='export format')
    p.add_argument('--out', required=True, help='output folder (created)')
    p.add_argument('--verify-bag', action='append', default=None, metavar='BAG',
                   help='replay this bag with the torch backend and compare ONNX Runtime on the '
                        'exact policy inputs (repeatable; default: test/bags/summer_lane)')
    p.add_argument('--no-bag', action='store_true', help='verify on the random sequence only')
    p.add_argument('--tolerance', type=float, default=1e-5,
                   help='largest allowed |onnx - torch| over every output and state')
    p.set_defaults(func=run)


class _RecordingPolicy:
    """Wraps a DrivingPolicy and records the (image, imu, dt) of every step call: the exact
    policy inputs the runtime Controller produces from a bag (preprocessing, IMU windows, dt rules)."""

    def __init__(self, policy):
        self._policy = policy
        self.images, self.imu, self.dt = [], [], []

    def step_with_features(self, image, imu, dt, state=None):
        # the torch backend's entry point (runtime/torch_backend.py)
        self.images.append(image.numpy().copy())               # (1, 3, H, W)
        self.imu.append(imu.numpy().copy())                    # (1, imu_size)
        self.dt.append(np.asarray(dt, dtype=np.float32).reshape(1).copy())
        return self._policy.step_with_features(image, imu, dt, state)

    def step(self, image, imu, dt, state=None):
        out, state, _ = self.step_with_features(image, imu, dt, state)
        return out, state

    def __getattr__(self, name):
        return getattr(self._policy, name)


def bag_sequence(bag, model):
    """Replay ``bag`` through the Controller (torch backend) and return the policy inputs it produced
    as a VerificationSequence (T, 1, ...)."""
    from liquid_controller.data.replay import ReplayConfig, replay_bag
    from liquid_controller.runtime.model_file import LoadedModel
    from liquid_controller.runtime.onnx_export_folder import VerificationSequence
    from liquid_controller.runtime.settings import load_settings
    recorder = _RecordingPolicy(model.policy)
    recording = LoadedModel(policy=recorder, card=model.card, json_path=model.json_path,
                            weights_path=model.weights_path, backend='torch')
    settings = load_settings().with_values(backend='torch')
    replay_bag(bag, recording, config=ReplayConfig(copy_inputs=False), settings=settings)
    # the first entries are the Controller's warm-up steps on a blank frame: valid inputs too
    if not recorder.images:
        raise InputError('--verify-bag', str(bag), 'no camera frame reached the policy')
    return VerificationSequence(f'bag {bag}', np.stack(recorder.images), np.stack(recorder.imu),
                                np.stack(recorder.dt))


def run(args):
    """Export, verify, write; print the paths and the largest difference."""
    from liquid_controller.runtime.model_file import load_model
    from liquid_controller.runtime.onnx_export_folder import export_onnx_folder
    try:
        if not (0.0 < args.tolerance < 1.0):
            raise InputError('--tolerance', args.tolerance, 'must be in (0, 1)')
        model = load_model(args.model)
        bags = [] if args.no_bag else [Path(b) for b in (args.verify_bag or _default_bags())]
        sequences = [bag_sequence(bag, model) for bag in bags]
        result = export_onnx_folder(model, args.out, sequences, tolerance=args.tolerance)
    except (LiquidControllerError, ValueError, OSError) as exc:
        return fail('export', exc)
    for source, info in result.per_sequence.items():
        print(f'verified {source}: {info["steps"]} steps x batch {info["batch"]}, '
              f'max |onnx - torch| = {info["max_abs_diff"]:.3g}')
    print(f'wrote {result.graph_path}')
    print(f'wrote {result.card_path}')
    return 0
