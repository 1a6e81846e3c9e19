"""The simulator bridge node: its ROS-free helpers, and the real node in a subprocess over real DDS.

Over DDS (isolated domain from test/conftest.py): cmd_vel moves the odometry the right way (forward
speed gives +x in the rover's odom frame, a positive yaw rate turns left), a silent cmd_vel stops the
rover after cmd_vel_timeout (measured in sim time), Twist works when enable_stamped_cmd_vel is false,
and ~/reset puts the rover back at the start. The node process is killed even when a test fails.
"""
import math
import os
import signal
import subprocess
import sys
import time

import numpy as np
import pytest

from liquid_controller.errors import InputError
from liquid_controller.messages.convert import tf_message_type
from liquid_controller.sim.bridge import (CAMERA_OPTICAL_FRAME, GROUND_TRUTH_FIELDS, CommandGate,
                                          FrameTransform, Pacer, camera_intrinsics, odom_transform,
                                          static_transforms)

pytestmark = pytest.mark.ros


# ----------------------------------------------------------------------------------- ROS-free parts

def test_command_gate_timeout_in_sim_time():
    gate = CommandGate(timeout=0.5)
    assert gate.command(0.0) == (0.0, 0.0) and gate.stale(0.0)  # nothing received yet: stop
    gate.receive(0.8, 0.2, now=1.0)
    assert gate.command(1.0) == (0.8, 0.2)
    assert gate.command(1.5) == (0.8, 0.2)   # exactly at the timeout: still fresh
    assert gate.command(1.51) == (0.0, 0.0)  # older than the timeout: stop
    gate.receive(0.3, 0.0, now=2.0)
    assert gate.command(2.1) == (0.3, 0.0)
    gate.clear()
    assert gate.command(2.1) == (0.0, 0.0)


def test_command_gate_latency_delays_commands_and_watchdog():
    gate = CommandGate(timeout=0.5, latency=0.1)
    gate.receive(1.0, 0.0, now=0.0)
    gate.receive(2.0, 0.0, now=0.05)
    assert gate.command(0.09) == (0.0, 0.0)   # first command not arrived yet
    assert gate.command(0.10) == (1.0, 0.0)
    assert gate.command(0.16) == (2.0, 0.0)
    assert gate.command(0.65) == (2.0, 0.0)   # arrived at 0.15, timeout 0.5 counts from arrival
    assert gate.command(0.66) == (0.0, 0.0)


def test_command_gate_rejects_bad_input():
    gate = CommandGate(timeout=0.5)
    with pytest.raises(InputError) as exc_info:
        gate.receive(math.nan, 0.0, now=0.0)
    assert exc_info.value.name == 'cmd_vel' and gate.rejected == 1 and gate.received == 0
    assert gate.command(0.0) == (0.0, 0.0)
    for kwargs, name in ((dict(timeout=0.0), 'cmd_vel_timeout'), (dict(timeout=math.inf), 'cmd_vel_timeout'),
                         (dict(latency=-0.1), 'command_latency')):
        with pytest.raises(InputError) as exc_info:
            CommandGate(**kwargs)
        assert exc_info.value.name == name


def test_pacer_schedules_against_a_fake_clock():
    """The clock is faked (no timing assertions): the pacer must request the right sleeps."""
    now = [100.0]
    sleeps = []

    def sleep(dt):
        sleeps.append(dt)
        now[0] += dt
    pacer = Pacer(sim_period=0.1, real_time_factor=2.0, clock=lambda: now[0], sleep=sleep)
    pacer.wait()                      # first step: due immediately
    now[0] += 0.01                    # a step that took 10 ms of wall time
    pacer.wait()
    assert sleeps == [pytest.approx(0.04)]  # 0.1 s sim at 2x = 50 ms per step
    now[0] += 0.2                     # far behind: no burst, the schedule restarts
    pacer.wait()
    assert pacer.late_steps == 1 and len(sleeps) == 1
    fast = Pacer(sim_period=0.1, real_time_factor=0.0, clock=lambda: now[0], sleep=sleep)
    fast.wait()
    fast.wait()
    assert len(sleeps) == 1           # as fast as possible: never sleeps


def test_settings_validation_and_round_trip():
    from liquid_controller.ros.sim_node import SimNodeSettings
    s = SimNodeSettings(scene='winter', camera_width=256, real_time_factor=0)
    assert SimNodeSettings.from_dict(s.to_dict()) == s
    for kwargs, name in ((dict(camera_width=1000), 'camera_width'), (dict(seed=-1), 'seed'),
                         (dict(cmd_vel_timeout=math.nan), 'cmd_vel_timeout'), (dict(scene=''), 'scene'),
                         (dict(enable_stamped_cmd_vel=1), 'enable_stamped_cmd_vel')):
        with pytest.raises(InputError) as exc_info:
            SimNodeSettings(**kwargs)
        assert exc_info.value.name == name


def test_build_world_applies_settings_and_noise_overrides():
    from liquid_controller.ros.sim_node import SimNodeSettings, build_world
    from liquid_controller.sim import load_scene
    world, scene = build_world(SimNodeSettings(camera_width=96, camera_height=48, camera_rate_hz=20.0,
                                               range_sensor=True, gyro_noise_std=0.02))
    assert (world.config.camera_width, world.config.camera_height) == (96, 48)
    assert world.config.camera_rate_hz == 20.0 and world.config.range_sensor
    file_noise = load_scene('summer').noise
    assert scene.noise.gyro_std == 0.02                       # overridden
    assert scene.noise.accel_std == file_noise.accel_std      # negative parameter: the scene's value


def test_config_yaml_lists_every_parameter_with_its_default():
    import yaml

    from liquid_controller.paths import config_file
    from liquid_controller.ros.sim_node import PARAMETERS, SimNodeSettings
    params = yaml.safe_load(config_file('sim_node.yaml').read_text())['/**/sim_node']['ros__parameters']
    assert set(params) == set(PARAMETERS)
    assert SimNodeSettings(**params) == SimNodeSettings()  # documented defaults are the real ones


def _compose(*transforms):
    m = np.eye(4)
    for t in transforms:
        m = m @ np.array(t.matrix())
    return m


def test_static_tf_matches_the_mujoco_camera_and_optical_axes():
    from liquid_controller.sim import DrivingWorld, WorldConfig
    world = DrivingWorld(WorldConfig(render=False, range_sensor=True))
    try:
        world.reset('summer', start=0.0)  # yaw 0 at the start: world axes = base_link axes
        tree = {t.child: t for t in static_transforms(world.mount_poses())}
        assert set(tree) == {'camera_link', CAMERA_OPTICAL_FRAME, 'imu_link', 'range_link'}
        assert tree[CAMERA_OPTICAL_FRAME].parent == 'camera_link'
        assert all(tree[c].parent == 'base_link' for c in ('camera_link', 'imu_link', 'range_link'))
        optical = _compose(tree['camera_link'], tree[CAMERA_OPTICAL_FRAME])  # optical -> base_link
        cid = world._compiled.camera_id
        mj = world.data.cam_xmat[cid].reshape(3, 3)  # columns: MuJoCo camera x (right), y (up), z (back)
        # optical x = image right, y = image down, z = viewing direction: the MuJoCo camera's x, -y, -z
        assert optical[:3, 0] == pytest.approx(mj[:, 0], abs=2e-3)
        assert optical[:3, 1] == pytest.approx(-mj[:, 1], abs=2e-3)
        assert optical[:3, 2] == pytest.approx(-mj[:, 2], abs=2e-3)
        base = np.array([world.last_truth.x, world.last_truth.y, 0.05])  # rover at axle height
        assert base + optical[:3, 3] == pytest.approx(world.data.cam_xpos[cid], abs=3e-3)
        # the scene's camera pose: 0.22 m above ground, pitched 12 deg down, 0.12 m ahead
        cam = world.scene.camera
        assert optical[:3, 3] == pytest.approx([cam.x, 0.0, cam.height - 0.05], abs=1e-9)
        assert math.degrees(math.asin(-optical[2, 2])) == pytest.approx(cam.pitch_deg, abs=1e-6)
    finally:
        world.close()


def test_odom_transform_and_bad_frames():
    t = odom_transform(1.0, -2.0, math.pi / 2)
    assert (t.parent, t.child) == ('odom', 'base_link')
    m = np.array(t.matrix())
    assert m[:3, 3] == pytest.approx([1.0, -2.0, 0.0])
    assert m[:3, 0] == pytest.approx([0.0, 1.0, 0.0], abs=1e-12)  # base_link x points along odom +y
    with pytest.raises(InputError, match='odom.yaw'):
        odom_transform(0.0, 0.0, float('nan'))
    with pytest.raises(InputError, match='camera_link.rotation'):
        FrameTransform('base_link', 'camera_link', (0, 0, 0), (0, 0, 0, 2))
    with pytest.raises(InputError, match='mount_poses'):
        static_transforms({'imu_link': ((0, 0, 0), (0, 0, 0, 1))})


@pytest.mark.skipif(tf_message_type() is None,
                    reason='tf2_msgs is not installed (no PyPI wheel; needs a system ROS 2): the TF '
                           'publishing path cannot run here')
def test_tf_and_tf_static_are_published(rclpy_context, sim_node):
    from liquid_controller.messages.convert import stamp_to_sec
    process = sim_node(range_sensor='true', real_time_factor=2.0)
    probe = Probe(rclpy_context)
    try:
        _wait_ready(probe, process)
        probe.spin_until(lambda: probe.tf_static and len(probe.tf) > 3, 30.0, '/tf and /tf_static', process)
        static = {t.child_frame_id: t for t in probe.tf_static[-1].transforms}
        assert set(static) == {'camera_link', CAMERA_OPTICAL_FRAME, 'imu_link', 'range_link'}
        assert static[CAMERA_OPTICAL_FRAME].header.frame_id == 'camera_link'
        dynamic = probe.tf[-1].transforms[0]
        assert (dynamic.header.frame_id, dynamic.child_frame_id) == ('odom', 'base_link')
        odom_stamps = {round(stamp_to_sec(o.header.stamp), 6) for o in probe.odom}
        assert round(stamp_to_sec(probe.tf[-2].transforms[0].header.stamp), 6) in odom_stamps
    finally:
        probe.close()


def test_camera_intrinsics_pinhole():
    fx, fy, cx, cy = camera_intrinsics(128, 64, 90.0)
    assert fx == fy == pytest.approx(32.0) and (cx, cy) == (63.5, 31.5)


# ------------------------------------------------------------------------------------ over real DDS

class NodeProcess:
    """sim_node in its own process group; stopped with SIGINT, then killed, whatever happens."""

    def __init__(self, env, params, log_path, params_file=None):
        args = [sys.executable, '-m', 'liquid_controller.ros.sim_node', '--ros-args']
        if params_file is not None:
            args += ['--params-file', str(params_file)]
        for key, value in params.items():
            args += ['-p', f'{key}:={value}']
        self.log_path = log_path
        self.log = open(log_path, 'w')
        self.proc = subprocess.Popen(args, env=env, stdout=self.log, stderr=subprocess.STDOUT,
                                     start_new_session=True)

    def output(self):
        self.log.flush()
        return self.log_path.read_text()

    def stop(self):
        if self.proc.poll() is None:
            os.killpg(self.proc.pid, signal.SIGINT)
            try:
                self.proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                os.killpg(self.proc.pid, signal.SIGKILL)
                self.proc.wait(timeout=10)
        self.log.close()


@pytest.fixture
def sim_node(ros_env, tmp_path, scene_path):
    started = []

    def start(params_file=None, **params):
        params = {'scene': scene_path, 'real_time_factor': 1.0, **params}
        node = NodeProcess(ros_env, params, tmp_path / f'sim_node_{len(started)}.log', params_file)
        started.append(node)
        return node
    yield start
    for node in started:
        node.stop()


@pytest.fixture(scope='module')
def scene_path():
    """The shipped training scene when present, else a minimal scene file of the same format."""
    from liquid_controller.sim.scene import list_scenes
    if 'summer' in list_scenes():
        return 'summer'
    import tempfile
    path = os.path.join(tempfile.mkdtemp(prefix='lc-scene-'), 'plain.yaml')
    with open(path, 'w') as f:
        f.write('name: plain\ntrack: {shape: rounded_rectangle, length: 16.0, width: 10.0, '
                'corner_radius: 3.0, lane_width: 1.0}\n')
    return path


class Probe:
    """A test node: publishes cmd_vel, records odometry and ground truth from the sim node."""

    def __init__(self, context, stamped=True):
        from geometry_msgs.msg import Twist, TwistStamped
        from nav_msgs.msg import Odometry
        from rclpy.executors import SingleThreadedExecutor
        from rclpy.node import Node
        from sensor_msgs.msg import Image, Imu
        from std_msgs.msg import Float64MultiArray
        from std_srvs.srv import Trigger

        from liquid_controller.messages import qos
        self.node = Node('sim_probe', context=context)
        self.stamped = stamped
        self.pub = self.node.create_publisher(TwistStamped if stamped else Twist, 'cmd_vel', qos.command_qos())
        self.odom, self.truth, self.images, self.imu = [], [], [], []
        self.node.create_subscription(Odometry, 'odom', self.odom.append, qos.state_qos(100))
        self.node.create_subscription(Float64MultiArray, 'sim_node/ground_truth', self.truth.append,
                                      qos.state_qos(100))
        self.node.create_subscription(Image, 'camera/image_raw', self.images.append, qos.image_qos(10))
        self.node.create_subscription(Imu, 'imu/data', self.imu.append, qos.imu_qos(200))
        from rosgraph_msgs.msg import Clock
        from sensor_msgs.msg import CameraInfo, Range
        self.clock, self.ranges, self.infos = [], [], []
        self.node.create_subscription(Clock, '/clock', self.clock.append, qos.clock_qos())
        self.node.create_subscription(Range, 'range', self.ranges.append, qos.sensor_qos(50))
        self.node.create_subscription(CameraInfo, 'camera/camera_info', self.infos.append, qos.state_qos(10))
        self.tf, self.tf_static = [], []
        tf_type = tf_message_type()
        if tf_type is not None:
            self.node.create_subscription(tf_type, '/tf', self.tf.append, qos.tf_qos())
            self.node.create_subscription(tf_type, '/tf_static', self.tf_static.append, qos.tf_static_qos())
        self.reset_client = self.node.create_client(Trigger, 'sim_node/reset')
        self.executor = SingleThreadedExecutor(context=context)
        self.executor.add_node(self.node)

    def spin_until(self, condition, timeout, what, process=None):
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            self.executor.spin_once(timeout_sec=0.02)
            if condition():
                return
            if process is not None and process.proc.poll() is not None:
                pytest.fail(f'sim_node exited ({process.proc.returncode}) while waiting for {what}:\n'
                            f'{process.output()}')
        pytest.fail(f'timed out waiting for {what}' + (f':\n{process.output()}' if process else ''))

    def sim_now(self):
        from liquid_controller.messages.convert import stamp_to_sec
        return stamp_to_sec(self.odom[-1].header.stamp) if self.odom else -1.0

    def send(self, v, w):
        from liquid_controller.messages.convert import encode_twist
        self.pub.publish(encode_twist(v, w, stamp=max(self.sim_now(), 0.0), stamped=self.stamped))

    def drive(self, v, w, sim_seconds, process):
        """Publish (v, w) at 20 Hz of wall time until the sim advanced ``sim_seconds``."""
        t_end = self.sim_now() + sim_seconds
        next_send = 0.0
        deadline = time.monotonic() + 60.0
        while self.sim_now() < t_end:
            if time.monotonic() > deadline:
                pytest.fail(f'sim time did not advance:\n{process.output()}')
            if time.monotonic() >= next_send:
                self.send(v, w)
                next_send = time.monotonic() + 0.05
            self.executor.spin_once(timeout_sec=0.01)
        return self.sim_now()

    def odom_since(self, t0):
        from liquid_controller.messages.convert import decode_odometry
        return [r for r in map(decode_odometry, self.odom) if r.stamp >= t0]

    def close(self):
        self.executor.shutdown()
        self.node.destroy_node()


def _wait_ready(probe, process):
    probe.spin_until(lambda: len(probe.odom) >= 3 and probe.pub.get_subscription_count() > 0,
                     60.0, 'sim_node odometry and cmd_vel subscription', process)


def test_cmd_vel_moves_rover_and_timeout_stops_it(rclpy_context, sim_node):
    from liquid_controller.messages.convert import decode_float_array, decode_image, stamp_to_sec
    timeout = 0.8  # long enough that a busy test machine does not trip it while we drive
    from liquid_controller.paths import config_file
    # the shipped parameter file goes through rcl's YAML parser; -p overrides come after it
    process = sim_node(params_file=config_file('sim_node.yaml'), cmd_vel_timeout=timeout, seed=3)
    probe = Probe(rclpy_context, stamped=True)
    try:
        _wait_ready(probe, process)
        # straight ahead: +x in the odom frame (which starts at the rover's pose), no yaw
        t0 = probe.sim_now()
        start = probe.odom_since(t0)[0]
        t1 = probe.drive(0.5, 0.0, 2.0, process)
        straight = probe.odom_since(t0)
        end = straight[-1]
        assert end.position[0] - start.position[0] > 0.5 * 0.5 * (t1 - t0)  # ramp-up allowed
        assert abs(end.position[1] - start.position[1]) < 0.05
        assert abs(end.yaw - start.yaw) < 0.05
        assert end.linear[0] == pytest.approx(0.5, abs=0.05)
        # turn left: positive yaw rate, yaw increases
        t2 = probe.drive(0.3, 0.6, 1.5, process)
        turning = probe.odom_since(t1 + 0.7)  # after the wheels reached the new speeds
        assert np.median([r.angular[2] for r in turning]) == pytest.approx(0.6, rel=0.1)
        assert probe.odom_since(t1)[-1].yaw - end.yaw > 0.5 * 0.6 * (t2 - t1 - 0.3)
        # silence: the rover keeps the last command until cmd_vel_timeout, then stops
        t_last = probe.sim_now()
        probe.spin_until(lambda: probe.sim_now() > t_last + timeout + 1.5, 30.0, 'sim time', process)
        after = probe.odom_since(t_last)
        before_timeout = [r for r in after if r.stamp < t_last + timeout - 0.1]
        assert before_timeout and all(r.linear[0] > 0.25 for r in before_timeout)
        stopped = [r for r in after if r.stamp > t_last + timeout + 1.0]
        assert stopped and all(abs(r.linear[0]) < 0.02 and abs(r.angular[2]) < 0.05 for r in stopped)
        # the other outputs came along: images decode, IMU samples at the IMU rate, labelled truth
        assert decode_image(probe.images[-1]).shape == (64, 128, 3)
        # REP-103: images and camera_info are in the optical frame (z forward, x right, y down)
        assert probe.images[-1].header.frame_id == 'camera_optical_frame'
        assert probe.infos[-1].header.frame_id == 'camera_optical_frame'
        imu_stamps = [stamp_to_sec(m.header.stamp) for m in probe.imu]
        assert np.all(np.diff(imu_stamps) > 0)
        mean_dt = (imu_stamps[-1] - imu_stamps[0]) / (len(imu_stamps) - 1)
        assert mean_dt == pytest.approx(1 / 200, rel=0.02)  # every sample arrived (reliable enough locally)
        truth = decode_float_array(probe.truth[-1])
        assert tuple(truth) == GROUND_TRUTH_FIELDS and truth['speed'] == pytest.approx(0.0, abs=0.02)
        assert probe.odom[-1].header.frame_id == 'odom' and probe.odom[-1].child_frame_id == 'base_link'
        if tf_message_type() is None:  # said once at start, not per frame
            assert process.output().count('TF is not published: tf2_msgs is not installed') == 1
    finally:
        probe.close()


def test_unstamped_twist_and_reset_service(rclpy_context, sim_node):
    from std_srvs.srv import Trigger
    from liquid_controller.messages.convert import decode_range, stamp_to_sec
    process = sim_node(enable_stamped_cmd_vel='false', real_time_factor=2.0, cmd_vel_timeout=0.5,
                       range_sensor='true', seed=7)
    probe = Probe(rclpy_context, stamped=False)
    try:
        _wait_ready(probe, process)
        probe.spin_until(lambda: len(probe.ranges) > 2 and len(probe.infos) > 2 and len(probe.clock) > 2,
                         30.0, 'range, camera_info and /clock', process)
        clock = [stamp_to_sec(c.clock) for c in probe.clock]
        assert np.all(np.diff(clock) > 0)  # sim time only moves forward
        odom_stamps = {round(stamp_to_sec(o.header.stamp), 6) for o in probe.odom}
        assert round(clock[-2], 6) in odom_stamps  # /clock ticks at the frame stamps
        assert decode_range(probe.ranges[-1])[1] > 0 and probe.ranges[-1].header.frame_id == 'range_link'
        assert probe.infos[-1].k[0] > 0 and (probe.infos[-1].width, probe.infos[-1].height) == (128, 64)
        t0 = probe.sim_now()
        probe.drive(0.4, -0.5, 1.5, process)  # right turn: negative yaw rate
        turning = probe.odom_since(t0 + 0.7)
        assert np.median([r.angular[2] for r in turning]) == pytest.approx(-0.5, rel=0.1)
        assert turning[-1].yaw < -0.2 and turning[-1].position[0] > 0.2
        probe.spin_until(lambda: probe.reset_client.service_is_ready(), 30.0, 'reset service', process)
        future = probe.reset_client.call_async(Trigger.Request())
        probe.spin_until(future.done, 30.0, 'reset response', process)
        assert future.result().success, future.result().message
        n = len(probe.odom)
        probe.spin_until(lambda: len(probe.odom) > n + 5, 30.0, 'odometry after reset', process)
        after = probe.odom_since(0.0)
        latest = after[-1]
        assert latest.stamp < 1.0  # sim time restarted
        assert np.hypot(*latest.position[:2]) < 0.05 and abs(latest.yaw) < 0.02
    finally:
        probe.close()


def test_bad_parameter_is_refused_with_a_clear_message(ros_env, tmp_path, sim_node):
    for params, needle in (({'camera_width': 5000}, 'camera_width'), ({'scene': 'atlantis'}, 'atlantis')):
        process = sim_node(**params)
        process.proc.wait(timeout=60)
        assert process.proc.returncode == 2
        assert needle in process.output() and 'Traceback' not in process.output()
