"""Benchmark `latency`: end-to-end image publish -> cmd_vel receipt over real DDS, next to the DDS floor.

Both phases run in the same invocation, one after the other, with the same publisher (this process),
the same 64x128 rgb8 frames at 30 Hz (plus 200 Hz IMU samples), between separate processes:

1. floor: an echo node (a subprocess) republishes every image unchanged; latency = publish -> echo
   receipt. This is what DDS alone costs for a frame there and a message back. IMU samples (200 Hz)
   are published spread over each frame period, as a real IMU's would be, in both phases.
2. controller: ``controller_node`` (the installed executable, activated over its lifecycle service)
   receives the same stream; latency = image publish -> cmd_vel receipt.

3. controller with ``~/attention`` on (``attention_rate_hz`` 2): the same, to show what the saliency
   overlay (computed in a worker thread of its own) costs the control path. Skipped with ``--quick``.
4. controller on the ONNX Runtime backend (``backend: onnx``, the model exported to a temporary folder
   first): the edge runtime's end-to-end latency on the same stream. Skipped with ``--quick``.

Reported: p50 / p99 / max of each and the difference of the p99s with attention off (target: <= 5 ms
at 30 Hz), plus the controller's own per-stage times (decode, preprocess, policy, filter) read from its
/diagnostics.
Clocks: CLOCK_MONOTONIC is system-wide on Linux, so times taken in different processes compare.
"""
from __future__ import annotations

import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

TARGET_P99_MARGIN_MS = 5.0
RATE_HZ = 30.0


def _percentiles(values_s):
    a = np.asarray(values_s, dtype=np.float64) * 1e3
    if a.size == 0:
        return {'n': 0, 'p50_ms': float('nan'), 'p99_ms': float('nan'), 'max_ms': float('nan')}
    return {'n': int(a.size), 'p50_ms': float(np.percentile(a, 50)), 'p99_ms': float(np.percentile(a, 99)),
            'max_ms': float(a.max()), 'mean_ms': float(a.mean())}


def echo_main():
    """The echo node (run as a subprocess): camera/image_raw -> camera/echo, unchanged."""
    import rclpy
    from rclpy.executors import ExternalShutdownException
    from sensor_msgs.msg import Image

    from liquid_controller.messages import qos
    rclpy.init()
    node = rclpy.create_node('latency_echo')
    pub = node.create_publisher(Image, 'camera/echo', qos.image_qos(1))
    node.create_subscription(Image, 'camera/image_raw', pub.publish, qos.image_qos(1))
    try:
        rclpy.spin(node)
    except (KeyboardInterrupt, ExternalShutdownException):
        pass
    finally:
        node.destroy_node()
        if rclpy.ok():
            rclpy.shutdown()


class _Driver:
    """Publishes frames + IMU at RATE_HZ and timestamps the replies (echo or cmd_vel)."""

    def __init__(self, node):
        from geometry_msgs.msg import TwistStamped
        from diagnostic_msgs.msg import DiagnosticArray
        from sensor_msgs.msg import Image, Imu

        from liquid_controller.messages import qos
        self.node = node
        self.pub_image = node.create_publisher(Image, 'camera/image_raw', qos.image_qos(1))
        self.pub_imu = node.create_publisher(Imu, 'imu/data', qos.imu_qos())
        self.sent = {}      # sequence -> publish time (monotonic)
        self.replies = []   # (kind, receive time)
        self.diag = None
        node.create_subscription(Image, 'camera/echo', lambda m: self._reply('echo'), qos.image_qos(1))
        node.create_subscription(TwistStamped, 'cmd_vel', lambda m: self._reply('cmd'),
                                 qos.command_qos(10))
        node.create_subscription(DiagnosticArray, '/diagnostics', self._on_diag, qos.state_qos())
        rng = np.random.default_rng(0)
        self.frames = [rng.integers(0, 255, (64, 128, 3), dtype=np.uint8) for _ in range(8)]

    def _reply(self, kind):
        self.replies.append((kind, time.monotonic()))

    def _on_diag(self, msg):
        for status in msg.status:
            if status.name.endswith(': controller'):
                self.diag = status

    def run(self, executor, frames, kind):
        """Publish ``frames`` frames at RATE_HZ with 200 Hz IMU samples spread over each period (as a
        real IMU would be); return latencies (s) of the first reply of ``kind`` to each frame."""
        from liquid_controller.messages import convert
        period = 1.0 / RATE_HZ
        imu_per_frame = 6
        latencies = []
        t_next = time.monotonic()
        t0_wall = time.time()
        for i in range(frames):
            stamp = t0_wall + i * period
            msg = convert.encode_image(self.frames[i % len(self.frames)], stamp)
            self.replies.clear()
            t_pub = time.monotonic()
            self.pub_image.publish(msg)
            t_frame = t_next
            t_next += period
            got, k = None, 0
            while time.monotonic() < t_next:
                # IMU samples of the next frame's window, each published at its own time
                while k < imu_per_frame and time.monotonic() >= t_frame + (k + 1) * period / (imu_per_frame + 1):
                    s = stamp + (k + 1) * period / imu_per_frame
                    self.pub_imu.publish(convert.encode_imu(s, (0.0, 0.0, 0.0), (0.0, 0.0, 9.81)))
                    k += 1
                executor.spin_once(timeout_sec=max(0.0, min(0.002, t_next - time.monotonic())))
                if got is None:
                    for kind_, t in self.replies:
                        if kind_ == kind:
                            got = t - t_pub
                            break
            if got is not None:
                latencies.append(got)
        return latencies


def _wait_for(executor, cond, timeout):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline and not cond():
        executor.spin_once(timeout_sec=0.05)
    return cond()


def run(args):
    """Both phases; returns the results dict (also used by format_table)."""
    import rclpy
    from rclpy.executors import SingleThreadedExecutor

    from liquid_controller.ros.lifecycle_client import LifecycleClient
    from liquid_controller.ros.processes import find_executable, ros_args
    from liquid_controller.runtime.model_file import best_available_model, create_random_model
    frames = 150 if getattr(args, 'quick', False) else 900
    env = dict(os.environ)
    env.setdefault('ROS_DOMAIN_ID', str(50 + os.getpid() % 40))
    env['ROS_AUTOMATIC_DISCOVERY_RANGE'] = 'LOCALHOST'
    os.environ.update({k: env[k] for k in ('ROS_DOMAIN_ID', 'ROS_AUTOMATIC_DISCOVERY_RANGE')})
    tmp = Path(tempfile.mkdtemp(prefix='lc-latency-'))
    best = best_available_model()
    model = str(best[0]) if best else str(tmp / 'random.json')
    if not best:
        create_random_model(model)
    results = {'rate_hz': RATE_HZ, 'frames': frames, 'image': '64x128 rgb8', 'model': Path(model).stem}
    rclpy.init()
    node = rclpy.create_node('latency_driver')
    executor = SingleThreadedExecutor()
    executor.add_node(node)
    driver = _Driver(node)
    procs = []
    try:
        # --- phase 1: DDS echo floor
        echo = subprocess.Popen([sys.executable, '-m', 'liquid_controller.tools.benchmarks.latency',
                                 '--echo'], env=env, start_new_session=True)
        procs.append(echo)
        _wait_for(executor, lambda: node.count_subscribers('camera/image_raw') > 0, 30.0)
        driver.run(executor, 30, 'echo')  # warm-up (discovery, first allocations)
        results['floor'] = _percentiles(driver.run(executor, frames, 'echo'))
        echo.send_signal(2)
        echo.wait(10)
        procs.remove(echo)
        _wait_for(executor, lambda: node.count_subscribers('camera/image_raw') == 0, 10.0)
        # --- phase 2: controller (attention off, the default); phase 3: attention on
        phases = [('controller', 0.0, 'torch', model)]
        if not getattr(args, 'quick', False):
            phases += [('controller_attention', 2.0, 'torch', model),
                       ('controller_onnx', 0.0, 'onnx', _onnx_export(model, tmp / 'onnx'))]
        for key, attention, backend, model_path in phases:
            ctl = subprocess.Popen([find_executable('controller_node')] + ros_args(
                'controller', params={'model': model_path, 'use_odometry': False, 'diagnostics_period': 0.5,
                                      'attention_rate_hz': attention, 'backend': backend}),
                env=env, start_new_session=True, stdout=subprocess.DEVNULL, stderr=subprocess.STDOUT)
            procs.append(ctl)
            LifecycleClient(node, '/controller', executor).bring_up(120.0)
            driver.diag = None
            driver.run(executor, 30, 'cmd')
            results[key] = _percentiles(driver.run(executor, frames, 'cmd'))
            _wait_for(executor, lambda: driver.diag is not None, 5.0)
            if driver.diag is not None and key in ('controller', 'controller_onnx'):
                values = {kv.key: kv.value for kv in driver.diag.values}
                suffix = '' if key == 'controller' else '_onnx'
                results['stages_p50_ms' + suffix] = {k.split('.')[1]: float(v) for k, v in values.items()
                                                     if k.startswith('stage_ms.') and v not in ('"nan"',)}
                results['controller_internal_p99_ms' + suffix] = float(values.get('latency_ms.p99', 'nan'))
            ctl.send_signal(2)
            ctl.wait(10)
            procs.remove(ctl)
            _wait_for(executor, lambda: node.count_subscribers('camera/image_raw') == 0, 10.0)
    finally:
        for p in procs:
            p.send_signal(2)
            try:
                p.wait(10)
            except subprocess.TimeoutExpired:
                p.kill()
        executor.remove_node(node)
        node.destroy_node()
        rclpy.shutdown()
    f, c = results['floor'], results['controller']
    results['p99_above_floor_ms'] = c['p99_ms'] - f['p99_ms']
    results['p50_above_floor_ms'] = c['p50_ms'] - f['p50_ms']
    results['target_p99_above_floor_ms'] = TARGET_P99_MARGIN_MS
    results['meets_target'] = bool(results['p99_above_floor_ms'] <= TARGET_P99_MARGIN_MS)
    results['lost_replies'] = {'floor': frames - f['n'], 'controller': frames - c['n']}
    if 'controller_attention' in results:
        results['p99_above_floor_with_attention_ms'] = results['controller_attention']['p99_ms'] - f['p99_ms']
    if 'controller_onnx' in results:
        results['p99_above_floor_onnx_ms'] = results['controller_onnx']['p99_ms'] - f['p99_ms']
        results['p50_above_floor_onnx_ms'] = results['controller_onnx']['p50_ms'] - f['p50_ms']
    return results


def _onnx_export(model, out_dir):
    """Export ``model`` for the onnx-backend phase (verified on a random sequence); the folder."""
    from liquid_controller.runtime.model_file import load_model
    from liquid_controller.runtime.onnx_export_folder import export_onnx_folder
    export_onnx_folder(load_model(model), out_dir)
    return str(out_dir)


def format_table(results):
    f, c = results['floor'], results['controller']
    lines = [f"end-to-end latency at {results['rate_hz']:.0f} Hz, {results['image']}, "
             f"{results['frames']} frames per phase (model {results['model']})",
             f"{'path':<34}{'p50 ms':>9}{'p99 ms':>9}{'max ms':>9}{'n':>6}",
             f"{'DDS echo floor (image -> echo)':<34}{f['p50_ms']:>9.2f}{f['p99_ms']:>9.2f}"
             f"{f['max_ms']:>9.2f}{f['n']:>6}",
             f"{'controller (image -> cmd_vel)':<34}{c['p50_ms']:>9.2f}{c['p99_ms']:>9.2f}"
             f"{c['max_ms']:>9.2f}{c['n']:>6}"]
    a = results.get('controller_attention')
    if a:
        lines.append(f"{'controller, ~/attention at 2 Hz':<34}{a['p50_ms']:>9.2f}{a['p99_ms']:>9.2f}"
                     f"{a['max_ms']:>9.2f}{a['n']:>6}")
    o = results.get('controller_onnx')
    if o:
        lines.append(f"{'controller, backend onnx':<34}{o['p50_ms']:>9.2f}{o['p99_ms']:>9.2f}"
                     f"{o['max_ms']:>9.2f}{o['n']:>6}")
    lines += [f"p99 above floor: {results['p99_above_floor_ms']:.2f} ms (target <= "
             f"{results['target_p99_above_floor_ms']:.0f} ms: "
             f"{'met' if results['meets_target'] else 'NOT met'})"]
    if results.get('stages_p50_ms'):
        lines.append('controller stages p50 (ms): ' + ', '.join(
            f'{k} {v:.2f}' for k, v in results['stages_p50_ms'].items()))
    if results.get('stages_p50_ms_onnx'):
        lines.append('controller (onnx) stages p50 (ms): ' + ', '.join(
            f'{k} {v:.2f}' for k, v in results['stages_p50_ms_onnx'].items()))
    return '\n'.join(lines)


if __name__ == '__main__':
    if '--echo' in sys.argv:
        echo_main()
