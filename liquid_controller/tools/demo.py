"""`liquid-controller demo` (`make demo`): the whole robot loop over real DDS on the embedded simulator.

Starts ``sim_node`` (MuJoCo world) and ``controller_node`` (liquid policy + BarrierNet filter) as
separate processes, brings the controller to active over its lifecycle service, drives for a number of
laps (or a time limit), then prints the closed-loop metrics table (from sim_node's ground truth) and
writes into the output folder: ``trajectory.png``, ``camera.gif`` (camera with the command overlaid),
``metrics.json`` and the node logs.

The model is the best one in models/ (trained beats untrained). When no trained model exists the demo
says so loudly and uses an UNTRAINED random-weight model: the pipeline runs, but the car will not drive
well, and the metrics show it.
"""
import argparse
import json
import re
import time
from pathlib import Path

from liquid_controller.tools import fail

BANNER = '!' * 78


def positive_float(text):
    """argparse type: a finite number > 0."""
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f'{text!r} is not a number') from None
    if not value > 0 or value == float('inf'):
        raise argparse.ArgumentTypeError(f'{text!r}: must be a finite number > 0')
    return value


def positive_int(text):
    """argparse type: an integer > 0."""
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f'{text!r} is not an integer') from None
    if value <= 0:
        raise argparse.ArgumentTypeError(f'{text!r}: must be an integer > 0')
    return value


def register(sub):
    """Add the `demo` subcommand."""
    p = sub.add_parser('demo', help='closed loop over DDS: sim_node + controller, metrics, plot, GIF',
                       description='Start sim_node (embedded MuJoCo world) and controller_node over real '
                                   'DDS, drive for a number of laps, then print the closed-loop metrics and '
                                   'write trajectory.png, camera.gif, metrics.json and the node logs into '
                                   'the output folder.')
    p.add_argument('--model', default='', help='model name or path (default: best in models/)')
    p.add_argument('--backend', choices=('auto', 'torch', 'onnx'), default=None,
                   help="controller_node's policy engine (default: the params file's 'backend'; "
                        'onnx: --model is an ONNX export folder or has NAME.onnx.json next to it)')
    p.add_argument('--scene', default='summer', help='simulator scene')
    p.add_argument('--laps', type=positive_float, default=2.0, help='stop after this many laps (> 0)')
    p.add_argument('--max-seconds', type=positive_float, default=120.0,
                   help='stop after this much sim time (> 0)')
    p.add_argument('--real-time-factor', type=positive_float, default=1.0,
                   help='simulation speed (1 = real time, as on a robot)')
    p.add_argument('--out', default='out/demo', help='output folder')
    p.add_argument('--gif-frames', type=positive_int, default=100,
                   help='camera frames kept for the GIF (the last ones)')
    p.set_defaults(func=run)


def choose_model(requested, out_dir):
    """(model path, card, warning or ''): the requested model, else the best in models/, else a fresh
    untrained one written into ``out_dir``."""
    from liquid_controller.runtime.model_file import (best_available_model, create_random_model,
                                                      read_card)
    if requested:
        card = read_card(requested)
        path = requested
    else:
        best = best_available_model()
        if best is None:
            path = Path(out_dir) / 'untrained_random.json'
            card = create_random_model(path)
            return str(path), card, ('NO MODEL in models/: using a freshly created UNTRAINED '
                                     'random-weight model. It will NOT drive well.')
        path, card = best
    warning = ''
    if card.untrained:
        warning = (f'model {card.name!r} is UNTRAINED (random weights): no trained model is '
                   'available, so the car will NOT drive well. Train one (see README) for a real demo.')
    return str(path), card, warning


def _loud(text):
    print(f'\n{BANNER}\n!! {text}\n{BANNER}\n', flush=True)


def check_inputs(args):
    """Validate the model and the scene before anything starts, with the library's own loaders.
    Returns the loaded Scene; raises ModelFileError or SceneError."""
    from liquid_controller.sim import load_scene
    if args.model:
        from liquid_controller.runtime.policy_backend import load_runtime_model
        # card, weights (or graph) hashes and tensors: what controller_node will do
        load_runtime_model(args.model, args.backend or 'auto')
    return load_scene(args.scene)


# controller_node logs 'braking to zero: STATUS: REASON' each time it starts a safety stop
_BRAKE_LINE = re.compile(r'braking to zero: (\w+)')


def safety_stops(log_path):
    """Counts of the safety stops the controller logged in ``log_path`` (its controller.log):
    ``{'safety_brakes': total, 'bad_input_stops': N, 'stale_input_stops': N, 'disabled_stops': N}``
    (a missing log counts nothing)."""
    counts = {'safety_brakes': 0, 'bad_input_stops': 0, 'stale_input_stops': 0, 'disabled_stops': 0}
    try:
        text = Path(log_path).read_text(errors='replace')
    except OSError:
        return counts
    for match in _BRAKE_LINE.finditer(text):
        counts['safety_brakes'] += 1
        status = match.group(1)
        key = {'bad_input': 'bad_input_stops', 'stale': 'stale_input_stops', 'stopped': 'stale_input_stops',
               'disabled': 'disabled_stops'}.get(status)
        if key:
            counts[key] += 1
    return counts


def run(args):
    """Run the demo; returns 0 when the loop ran (whatever the driving quality), 1 on failure."""
    from liquid_controller.errors import ModelFileError, SceneError
    try:
        scene = check_inputs(args)
    except (ModelFileError, SceneError) as exc:
        return fail('demo', exc)
    import rclpy
    from rclpy.executors import SingleThreadedExecutor

    from liquid_controller.ros.episode_monitor import EpisodeMonitor, write_overlay_gif
    from liquid_controller.ros.lifecycle_client import LifecycleError, bring_up
    from liquid_controller.ros.processes import start_bringup
    from liquid_controller.sim import EpisodeMetrics
    from liquid_controller.sim.texture import paint_track_map
    from liquid_controller.sim.track import Track

    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    model, card, warning = choose_model(args.model, out)
    if warning:
        _loud(warning)
    print(f'model: {model} ({card.name}, core {card.policy.get("core")}, '
          f'{"UNTRAINED" if card.untrained else "trained"})', flush=True)
    track = Track(scene.track, scene.source)
    track_map = paint_track_map(track, scene.appearance)

    def metrics_factory():
        return EpisodeMetrics(track, track_map, target_laps=args.laps, scene_name=scene.name)
    metrics = metrics_factory()
    bringup = start_bringup(sim='mujoco', model=model, scene=args.scene, log_dir=out,
                            sim_params={'real_time_factor': float(args.real_time_factor)},
                            controller_params={'backend': args.backend} if args.backend else None)
    rclpy.init()
    monitor = EpisodeMonitor(metrics, keep_frames_every=3, max_frames=args.gif_frames)
    executor = SingleThreadedExecutor()
    executor.add_node(monitor)
    error = None
    try:
        print('bringing the controller to active ...', flush=True)
        bring_up(bringup.controller_name, timeout=90.0, check=bringup.check_alive)
        # start the episode with the controller in the loop: reset the world, then count from there
        restart_episode(executor, monitor, metrics_factory)
        print(f'driving: up to {args.laps} laps or {args.max_seconds:.0f} s of sim time '
              '(Ctrl-C stops early)', flush=True)
        t_wall = time.monotonic()
        last_print = 0.0
        while True:
            executor.spin_once(timeout_sec=0.1)
            bringup.check_alive()
            truth = monitor.last_truth
            if truth is None:
                if time.monotonic() - t_wall > 60.0:
                    raise RuntimeError('no ground truth from sim_node after 60 s')
                continue
            metrics = monitor.metrics
            if metrics.duration - last_print >= 5.0:
                last_print = metrics.duration
                print(f'  t={metrics.duration:6.1f} s  laps={truth.progress_laps:5.2f}  '
                      f'offset={truth.lateral_offset:+.2f} m  v={truth.speed:.2f} m/s  '
                      f'cmd=({monitor.command[0]:.2f}, {monitor.command[1]:+.2f})', flush=True)
            if truth.progress_laps >= args.laps or metrics.duration >= args.max_seconds:
                break
    except KeyboardInterrupt:
        print('interrupted', flush=True)
    except (LifecycleError, RuntimeError) as exc:
        error = exc
    finally:
        bringup.stop()
        executor.remove_node(monitor)
        monitor.destroy_node()
        rclpy.shutdown()
    metrics = monitor.metrics
    summary = metrics.summary()
    summary.update({'model': card.name, 'untrained': card.untrained,
                    'commands_received': monitor.commands_received})
    # the safety stops controller_node logged (its controller.log in the output folder)
    summary.update(safety_stops(out / 'controller.log'))
    print(format_metrics(summary))
    (out / 'metrics.json').write_text(json.dumps(summary, indent=2))
    if summary.get('frames', 0):
        metrics.plot(out / 'trajectory.png',
                     title=f'{scene.name}: {card.name}{" (UNTRAINED)" if card.untrained else ""}, '
                           f'{summary["laps"]:.2f} laps')
        print(f'wrote {out / "trajectory.png"}')
    if monitor.frames:
        write_overlay_gif(list(monitor.frames), out / 'camera.gif')
        print(f'wrote {out / "camera.gif"}')
    if warning:
        _loud(warning)
    if error is not None:   # last, so that the error is the last line on the terminal
        return fail('demo', error)
    return 0


def restart_episode(executor, monitor, metrics_factory, timeout=20.0):
    """Call sim_node's ~/reset and give the monitor fresh metrics, so the episode starts with the
    controller already active (the controller sees the stamps go back and resets its state)."""
    from std_srvs.srv import Trigger
    client = monitor.create_client(Trigger, '/sim_node/reset')
    deadline = time.monotonic() + timeout
    while not client.wait_for_service(timeout_sec=0.1):
        executor.spin_once(timeout_sec=0.0)
        if time.monotonic() > deadline:
            raise RuntimeError('sim_node ~/reset service not available')
    future = client.call_async(Trigger.Request())
    while not future.done():
        executor.spin_once(timeout_sec=0.05)
        if time.monotonic() > deadline:
            raise RuntimeError('sim_node ~/reset did not answer')
    # drain what was published before the reset (reliable topics deliver in order), then count
    drain_end = time.monotonic() + 1.0
    while time.monotonic() < drain_end:
        executor.spin_once(timeout_sec=0.05)
    monitor.restart(metrics_factory())


def format_metrics(summary):
    """The metrics dict as an aligned two-column table."""
    rows = [(k, f'{v:.3f}' if isinstance(v, float) else str(v)) for k, v in summary.items()]
    width = max(len(k) for k, _ in rows)
    lines = ['closed-loop metrics (ground truth from sim_node)', '-' * (width + 16)]
    lines += [f'{k:<{width}}  {v}' for k, v in rows]
    return '\n'.join(lines)
