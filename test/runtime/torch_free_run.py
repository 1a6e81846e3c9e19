"""Run the runtime with torch made unimportable (used by test_onnx_backend.py in a subprocess).

    python torch_free_run.py EXPORT_DIR OUT.npz [--replay BAG] [--evaluate SECONDS]

Installs an import blocker for 'torch' (and every 'torch.*') before anything else is imported, then
drives the Controller with ``backend: auto`` (which must pick onnx) over the frames of
``onnx_inputs.synthetic_inputs`` (those of test_onnx_backend.py's torch run), optionally replays a
bag and runs a short closed-loop evaluation, and writes the results to OUT.npz. Exits non-zero if
torch got imported anyway.
"""
import importlib.abc
import sys


class _BlockTorch(importlib.abc.MetaPathFinder):
    """Any import of torch fails, as on a machine without it."""

    def find_spec(self, name, path=None, target=None):
        if name == 'torch' or name.startswith('torch.'):
            raise ImportError(f'torch is blocked in this process (import of {name!r})')
        return None


sys.meta_path.insert(0, _BlockTorch())


def main(argv):
    import argparse
    import json
    from pathlib import Path

    import numpy as np
    parser = argparse.ArgumentParser()
    parser.add_argument('export_dir')
    parser.add_argument('out')
    parser.add_argument('--replay')
    parser.add_argument('--evaluate', type=float, default=0.0)
    args = parser.parse_args(argv)
    sys.path.insert(0, str(Path(__file__).resolve().parent))
    from onnx_inputs import synthetic_inputs   # the test's frames, shared by both processes

    from liquid_controller.runtime.controller import Controller, MeasuredState
    from liquid_controller.runtime.policy_backend import load_runtime_model, resolve_backend
    from liquid_controller.runtime.settings import Settings
    settings = Settings()
    assert resolve_backend(settings['backend']) == 'onnx', 'auto must pick onnx without torch'
    model = load_runtime_model(args.export_dir, settings['backend'])
    ctl = Controller(model, settings.controller_config(), settings.safety_config())
    ctl.start(now=0.0)
    results = {}
    commands, nominal, neurons = [], [], []
    for frame, stamp, window, speed in synthetic_inputs():
        out = ctl.step(frame, stamp, window, MeasuredState(speed=speed), now=stamp)
        commands.append(out.command)
        nominal.append(out.nominal)
        neurons.append(out.neurons)
    results.update(controller_command=np.array(commands), controller_nominal=np.array(nominal),
                   controller_neurons=np.array(neurons))
    if args.replay:
        from liquid_controller.data.replay import replay_bag
        replayed = replay_bag(args.replay, args.export_dir, settings=settings)
        results.update(replay_command=replayed.command, replay_nominal=replayed.nominal)
    if args.evaluate:
        from liquid_controller.evaluation.evaluate import (ControllerDriver, EvalConfig,
                                                           evaluate_driver)
        driver = ControllerDriver(args.export_dir, settings)
        report = evaluate_driver(driver, EvalConfig(scenes=('summer',), max_seconds=args.evaluate,
                                                    plots=False), progress=False)
        episode = report['episodes'][0]
        results.update(evaluate_record=np.array(json.dumps(episode, default=float)))
    np.savez(args.out, **results)
    loaded = sorted(m for m in sys.modules if m == 'torch' or m.startswith('torch.'))
    if loaded:
        print(f'torch modules were imported: {loaded[:5]}', file=sys.stderr)
        return 3
    return 0


if __name__ == '__main__':
    sys.exit(main(sys.argv[1:]))
