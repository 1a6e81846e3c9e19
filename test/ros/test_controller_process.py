"""controller_node as its own process (the real ``main()``, multi-threaded executor) over real DDS.

What only a separate process shows: signals in every lifecycle state, the final zero command reaching a
subscriber when the process exits, camera frames of real sizes crossing a process boundary, and IMU
samples that keep arriving while images flood the node. The test process plays camera, IMU and robot.
"""
import os
import signal
import subprocess
import sys
import time

import numpy as np
import pytest

rclpy = pytest.importorskip('rclpy')
from diagnostic_msgs.msg import DiagnosticStatus  # noqa: E402
from geometry_msgs.msg import TwistStamped  # noqa: E402
from rclpy.executors import SingleThreadedExecutor  # noqa: E402
from sensor_msgs.msg import Image, Imu  # noqa: E402

from liquid_controller.messages import convert, diagnostics, qos  # noqa: E402
from liquid_controller.ros.lifecycle_client import LifecycleClient  # noqa: E402
from liquid_controller.runtime.model_file import create_random_model  # noqa: E402

pytestmark = pytest.mark.ros
PERIOD = 1.0 / 30.0
STOP_RUNS = 20
_count = [0]


@pytest.fixture(scope='module')
def model(tmp_path_factory):
    path = tmp_path_factory.mktemp('model') / 'rand.json'
    create_random_model(path)
    return path


class NodeProcess:
    """controller_node in a child process + a tester node here (camera, IMU, cmd_vel, ~/safety)."""

    def __init__(self, context, ros_env, params, image_shape=(64, 128)):
        _count[0] += 1
        self.ns = f'/p{os.getpid()}_{_count[0]}'
        args = [sys.executable, '-m', 'liquid_controller.ros.controller_node', '--ros-args',
                '-r', f'__ns:={self.ns}']
        for k, v in params.items():
            args += ['-p', f'{k}:={v}']
        self.proc = subprocess.Popen(args, env=ros_env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                                     text=True)
        self.node = rclpy.create_node(f'tester{_count[0]}', namespace=self.ns, context=context)
        self.exec = SingleThreadedExecutor(context=context)
        self.exec.add_node(self.node)
        self.cmds, self.safety = [], []
        self.node.create_subscription(TwistStamped, 'cmd_vel', self.cmds.append, qos.command_qos(1000))
        self.node.create_subscription(DiagnosticStatus, 'controller/safety', self.safety.append,
                                      qos.state_qos(1000))
        self.pub_image = self.node.create_publisher(Image, 'camera/image_raw', qos.image_qos(1))
        self.pub_imu = self.node.create_publisher(Imu, 'imu/data', qos.imu_qos())
        self.lifecycle = LifecycleClient(self.node, f'{self.ns}/controller', self.exec)
        self.frame = np.random.default_rng(0).integers(0, 255, image_shape + (3,), dtype=np.uint8)
        self.t = 100.0

    def spin(self, seconds):
        end = time.monotonic() + seconds
        while time.monotonic() < end:
            self.exec.spin_once(timeout_sec=0.005)

    def spin_until(self, cond, timeout):
        end = time.monotonic() + timeout
        while time.monotonic() < end and not cond():
            self.exec.spin_once(timeout_sec=0.01)
        return cond()

    def frame_msg(self):
        return convert.encode_image(self.frame, self.t)

    def drive(self, n, imu_per_frame=6):
        for _ in range(n):
            self.t += PERIOD
            for k in range(imu_per_frame):
                s = self.t - PERIOD + (k + 1) * PERIOD / imu_per_frame
                self.pub_imu.publish(convert.encode_imu(s, (0.0, 0.0, 0.0), (0.0, 0.0, 9.81)))
            self.spin(0.002)
            self.pub_image.publish(self.frame_msg())
            self.spin(PERIOD - 0.002)

    def statuses(self):
        return [diagnostics.parse_key_values(s) for s in self.safety]

    def interrupt(self, timeout=10.0):
        """SIGINT; returns (exit code, seconds until the process ended)."""
        t0 = time.monotonic()
        self.proc.send_signal(signal.SIGINT)
        while self.proc.poll() is None and time.monotonic() - t0 < timeout:
            self.exec.spin_once(timeout_sec=0.005)     # keep receiving: the final zero is in flight
        if self.proc.poll() is None:
            self.proc.kill()
        return self.proc.wait(), time.monotonic() - t0

    def close(self):
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait()
        self.exec.remove_node(self.node)
        self.node.destroy_node()


@pytest.fixture
def node_process(rclpy_context, ros_env):
    made = []

    def make(params, **kwargs):
        p = NodeProcess(rclpy_context, ros_env, params, **kwargs)
        made.append(p)
        return p
    yield make
    for p in made:
        p.close()


@pytest.mark.parametrize('state', ['unconfigured', 'configure_failed', 'inactive', 'active'])
def test_sigint_ends_the_node_promptly_in_every_lifecycle_state(node_process, model, tmp_path, state):
    """Before: with no timer in the wait set (unconfigured, failed configure) the blocking spin never
    looked at the signal, and ros2 launch escalated to SIGKILL after 10 s. Target: < 1 s (the bound
    below is looser so that a loaded CI machine does not fail it; the measured time is printed)."""
    path = tmp_path / 'missing.json' if state == 'configure_failed' else model
    p = node_process({'model': str(path), 'use_odometry': 'false'})
    p.lifecycle.wait_for_services(30.0)
    if state == 'configure_failed':
        with pytest.raises(Exception):
            p.lifecycle.change_state('configure')
        assert p.lifecycle.get_state() == 'unconfigured'
    elif state in ('inactive', 'active'):
        p.lifecycle.change_state('configure')
        if state == 'active':
            p.lifecycle.change_state('activate')
    code, seconds = p.interrupt()
    print(f'{state}: SIGINT -> exit {code} in {seconds:.3f} s')
    assert code == 0, p.proc.stdout.read()
    assert seconds < 3.0


def test_every_stop_while_driving_delivers_a_zero_command(node_process, model):
    """20 processes brought to active, driven until they command motion, then SIGINT: the last command
    each subscriber receives is an exact zero (before: lost in 3 of 37 stops)."""
    failures = []
    for run in range(STOP_RUNS):
        p = node_process({'model': str(model), 'use_odometry': 'false', 'watchdog_period': 0.02})
        assert p.lifecycle.bring_up(30.0) == 'active'
        assert p.spin_until(lambda: p.pub_image.get_subscription_count() > 0, 10)
        p.drive(6)
        assert p.spin_until(lambda: len(p.cmds) >= 3, 5), p.statuses()
        code, seconds = p.interrupt()
        p.spin(0.2)
        last = convert.decode_twist(p.cmds[-1])[1:] if p.cmds else None
        if code != 0 or last != (0.0, 0.0):
            failures.append((run, code, last))
        p.close()
    assert not failures


def test_vga_frames_from_another_process_drive_with_resize(node_process, model):
    """640x480 rgb8 at 30 Hz from another process: before (best-effort camera QoS) 20 of 90 arrived,
    and with resize_images the robot stood still with 'no valid camera frame'."""
    p = node_process({'model': str(model), 'use_odometry': 'false', 'resize_images': 'true'},
                     image_shape=(480, 640))
    assert p.lifecycle.bring_up(30.0) == 'active'
    assert p.spin_until(lambda: p.pub_image.get_subscription_count() > 0, 10)
    p.drive(90)
    p.spin(1.0)
    statuses = [v['status'] for v in p.statuses()]
    driving = statuses.count('ok') + statuses.count('reset')
    print(f'VGA: {driving} of 90 frames gave a policy command; statuses {set(statuses)}')
    # the bug: 'no valid camera frame' and 20 of 90. Depth-1 camera QoS keeps only the newest frame and
    # the watchdog brakes ('stale') when a starved node falls behind, so a loaded machine drives fewer
    # (78 of 90 with 5 jobs on 2 cores, 60 with the watchdog braking in between)
    assert 'bad_input' not in statuses, statuses          # every VGA frame decoded and resized
    assert driving >= 60, statuses


def test_imu_keeps_arriving_during_an_image_flood(node_process, model):
    """Images at 1 kHz and IMU at 200 Hz for 3 s: no brake for a missing IMU sample (before: 3 of 10
    runs braked with 'no IMU sample within imu_timeout' while the IMU was arriving; measured here: 37
    such brakes with the old node, 64 with a node that did not take pending IMU samples before each
    frame, 0 now, also with both cores busy)."""
    p = node_process({'model': str(model), 'use_odometry': 'false'})
    assert p.lifecycle.bring_up(30.0) == 'active'
    assert p.spin_until(lambda: p.pub_image.get_subscription_count() > 0, 10)
    p.drive(5)
    t_end = time.monotonic() + 3.0
    next_imu = time.monotonic()
    while time.monotonic() < t_end:
        now = time.monotonic()
        p.t += 0.001
        if now >= next_imu:
            p.pub_imu.publish(convert.encode_imu(p.t, (0.0, 0.0, 0.0), (0.0, 0.0, 9.81)))
            next_imu += 0.005
        p.pub_image.publish(p.frame_msg())
        p.exec.spin_once(timeout_sec=0.0)
        time.sleep(max(0.0, 0.001 - (time.monotonic() - now)))
    p.spin(0.5)
    reasons = [v['reason'] for v in p.statuses()]
    imu_brakes = [r for r in reasons if 'IMU' in r or 'imu' in r]
    print(f'flood: {len(reasons)} outputs, {len(imu_brakes)} IMU-related brakes')
    assert len(reasons) > 100
    assert not imu_brakes, imu_brakes[:3]
