"""``sim_node``: the embedded MuJoCo driving world as a ROS 2 node (the simulator bridge).

Run: ``ros2 run liquid_controller sim_node --ros-args -p scene:=summer -p real_time_factor:=1.0``
(or ``python -m liquid_controller.ros.sim_node``).

Publishes (relative names, remappable; stamps are simulation time):
- ``camera/image_raw`` sensor_msgs/Image rgb8, frame ``camera_optical_frame`` (REP-103 optical axes:
  z forward, x right, y down), sensor-data QoS (depth 1)
- ``camera/camera_info`` sensor_msgs/CameraInfo (pinhole from the scene's camera field of view), frame
  ``camera_optical_frame``
- ``imu/data`` sensor_msgs/Imu, every IMU sample (imu_rate_hz), frame ``imu_link``
- ``odom`` nav_msgs/Odometry, ``odom`` -> ``base_link``, once per camera frame
- ``range`` sensor_msgs/Range (only when ``range_sensor`` is true), frame ``range_link``
- ``/tf`` odom -> base_link once per camera frame, ``/tf_static`` (transient local) base_link ->
  camera_link -> camera_optical_frame, base_link -> imu_link and range_link, from the MuJoCo rover
  description (:meth:`DrivingWorld.mount_poses`), via tf2_msgs/TFMessage. tf2_msgs is not on PyPI:
  without it (no system ROS 2) the node logs once at start that TF is not published.
- ``/clock`` rosgraph_msgs/Clock, simulation time, once per step (before that step's sensor messages)
- ``~/ground_truth`` std_msgs/Float64MultiArray, once per frame, one dimension whose label is the
  comma-separated field list :data:`GROUND_TRUTH_FIELDS`: lateral_offset (m, + = left of the centre
  line), heading_error (rad), progress_laps, speed (m/s), in_lane (1/0), collision (1/0), x, y, yaw
  (world pose). Decode with :func:`liquid_controller.messages.convert.decode_float_array`.

Subscribes ``cmd_vel``: geometry_msgs/TwistStamped, or Twist when ``enable_stamped_cmd_vel`` is false.
Commands take effect ``command_latency`` s (sim time) after receipt; when none reached the rover for
``cmd_vel_timeout`` s (sim time) the rover is commanded to stop. The header stamp of a TwistStamped is
not compared with sim time (a controller may run on another clock); receipt time is what counts.

Service ``~/reset`` (std_srvs/Trigger): reset the world to the start with the same scene and seed.

All simulation logic lives in :mod:`liquid_controller.sim`; the command watchdog and the real-time
pacing in :mod:`liquid_controller.sim.bridge`. This file only moves data between them and DDS.
"""
import dataclasses
import math
import sys
import threading
from dataclasses import dataclass, fields

import rclpy
import rclpy.executors
from rcl_interfaces.msg import FloatingPointRange, IntegerRange, ParameterDescriptor
from rclpy.exceptions import ParameterException
from rclpy.executors import ExternalShutdownException
from rclpy.node import Node

from liquid_controller.config_base import config_from_dict, config_to_dict
from liquid_controller.errors import InputError, LiquidControllerError
from liquid_controller.messages import convert, qos
from liquid_controller.sim.bridge import (CAMERA_OPTICAL_FRAME, GROUND_TRUTH_FIELDS, CommandGate, Pacer,
                                          camera_intrinsics, ground_truth_vector, odom_transform,
                                          static_transforms)


# name -> (default, description, (low, high) or None). Ranges are enforced by rcl through descriptors.
PARAMETERS = {
    'scene': ('summer', 'Scene name (shipped) or path to a scene YAML file.', None),
    'seed': (0, 'Random seed of the episode (sensor noise).', (0, 2**31 - 1)),
    'start': (0.0, 'Start position along the track, as a fraction of a lap.', (0.0, 0.999)),
    'camera_width': (128, 'Camera image width in pixels.', (16, 256)),
    'camera_height': (64, 'Camera image height in pixels.', (16, 144)),
    'camera_rate_hz': (30.0, 'Camera frame rate; one simulation step per frame.', (1.0, 120.0)),
    'imu_rate_hz': (200.0, 'IMU sample rate (at least the camera rate, at most the 500 Hz physics).',
                    (1.0, 500.0)),
    'real_time_factor': (1.0, 'Simulation speed: 1.0 = real time, 2.0 = twice as fast, 0 = as fast as '
                              'possible.', (0.0, 100.0)),
    'cmd_vel_timeout': (0.5, 'Stop the rover when no command reached it for this long (sim seconds).',
                        (0.01, 60.0)),
    'enable_stamped_cmd_vel': (True, 'Subscribe geometry_msgs/TwistStamped (true) or Twist (false).', None),
    'command_latency': (0.0, 'Added actuation delay of every command (sim seconds).', (0.0, 2.0)),
    'range_sensor': (False, 'Simulate the forward range sensor and publish `range`.', None),
    'image_noise_std': (-1.0, 'Image noise std (0..255 scale); negative: the scene file value.',
                        (-1.0, 100.0)),
    'gyro_noise_std': (-1.0, 'Gyro noise std (rad/s); negative: the scene file value.', (-1.0, 10.0)),
    'accel_noise_std': (-1.0, 'Accelerometer noise std (m/s^2); negative: the scene value.', (-1.0, 10.0)),
    'odom_noise_std': (-1.0, 'Odometry v and w noise std; negative: the scene file value.', (-1.0, 10.0)),
    'range_noise_std': (-1.0, 'Range noise std (m); negative: the scene file value.', (-1.0, 10.0)),
}


@dataclass
class SimNodeSettings:
    """Validated settings of the bridge node (filled from ROS parameters)."""

    scene: str = 'summer'
    seed: int = 0
    start: float = 0.0
    camera_width: int = 128
    camera_height: int = 64
    camera_rate_hz: float = 30.0
    imu_rate_hz: float = 200.0
    real_time_factor: float = 1.0
    cmd_vel_timeout: float = 0.5
    enable_stamped_cmd_vel: bool = True
    command_latency: float = 0.0
    range_sensor: bool = False
    image_noise_std: float = -1.0
    gyro_noise_std: float = -1.0
    accel_noise_std: float = -1.0
    odom_noise_std: float = -1.0
    range_noise_std: float = -1.0

    def __post_init__(self):
        if not isinstance(self.scene, str) or not self.scene.strip():
            raise InputError('scene', self.scene, 'expected a scene name or path')
        for f in fields(self):
            default, _, bounds = PARAMETERS[f.name]
            value = getattr(self, f.name)
            if isinstance(default, bool):
                if not isinstance(value, bool):
                    raise InputError(f.name, value, 'expected true or false')
            elif isinstance(default, int):
                if isinstance(value, bool) or not isinstance(value, int):
                    raise InputError(f.name, value, 'expected an integer')
            elif isinstance(default, float):
                if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
                    raise InputError(f.name, value, 'expected a finite number')
                setattr(self, f.name, float(value))
            if bounds is not None and not bounds[0] <= getattr(self, f.name) <= bounds[1]:
                raise InputError(f.name, value, f'must be in [{bounds[0]}, {bounds[1]}]')

    def to_dict(self):
        """Plain dict of the fields (the parameter names)."""
        return config_to_dict(self)

    @classmethod
    def from_dict(cls, data):
        """Inverse of :meth:`to_dict`; unknown keys raise InputError."""
        return config_from_dict(cls, data, 'settings')


def _descriptor(name, description, bounds, default):
    """Read-only parameter descriptor with the range rcl enforces on overrides."""
    desc = ParameterDescriptor(name=name, description=description, read_only=True)
    if bounds is not None:
        if isinstance(default, float):
            desc.floating_point_range = [FloatingPointRange(from_value=float(bounds[0]),
                                                            to_value=float(bounds[1]), step=0.0)]
        elif isinstance(default, int) and not isinstance(default, bool):
            desc.integer_range = [IntegerRange(from_value=int(bounds[0]), to_value=int(bounds[1]), step=1)]
    return desc


def build_world(settings):
    """DrivingWorld and scene from validated settings (ROS-free; also used by tests)."""
    from liquid_controller.sim import DrivingWorld, WorldConfig, load_scene
    scene = load_scene(settings.scene)
    overrides = {
        'image_std': settings.image_noise_std, 'gyro_std': settings.gyro_noise_std,
        'accel_std': settings.accel_noise_std, 'odom_v_std': settings.odom_noise_std,
        'odom_w_std': settings.odom_noise_std, 'range_std': settings.range_noise_std,
    }
    changes = {key: value for key, value in overrides.items() if value >= 0.0}
    if changes:  # a copy: the loaded scene object is left as the file says
        scene = dataclasses.replace(scene, noise=dataclasses.replace(scene.noise, **changes))
    config = WorldConfig(camera_height=settings.camera_height, camera_width=settings.camera_width,
                         camera_rate_hz=settings.camera_rate_hz, imu_rate_hz=settings.imu_rate_hz,
                         range_sensor=settings.range_sensor)
    return DrivingWorld(config), scene


class SimNode(Node):
    """The bridge node. One thread owns the world (MuJoCo's GL context is bound to the thread that
    created it): it resets, steps and publishes; the executor thread only handles cmd_vel and ~/reset.
    """

    def __init__(self, **kwargs):
        super().__init__('sim_node', **kwargs)
        for name, (default, description, bounds) in PARAMETERS.items():
            self.declare_parameter(name, default, _descriptor(name, description, bounds, default))
        self.settings = SimNodeSettings(**{name: self.get_parameter(name).value for name in PARAMETERS})
        s = self.settings
        self.world, self.scene = build_world(s)  # validates the scene now; GL starts in the thread
        self.gate = CommandGate(timeout=s.cmd_vel_timeout, latency=s.command_latency)
        self.pacer = Pacer(1.0 / s.camera_rate_hz, s.real_time_factor)
        self._intrinsics = camera_intrinsics(s.camera_width, s.camera_height, self.scene.camera.fovy_deg)

        self.pub_image = self.create_publisher(convert_type('Image'), 'camera/image_raw', qos.image_qos())
        self.pub_info = self.create_publisher(convert_type('CameraInfo'), 'camera/camera_info',
                                              qos.state_qos(1))
        self.pub_imu = self.create_publisher(convert_type('Imu'), 'imu/data', qos.imu_qos())
        self.pub_odom = self.create_publisher(convert_type('Odometry'), 'odom', qos.state_qos())
        self.pub_range = (self.create_publisher(convert_type('Range'), 'range', qos.sensor_qos())
                          if s.range_sensor else None)
        self.pub_clock = self.create_publisher(convert_type('Clock'), '/clock', qos.clock_qos())
        self.pub_truth = self.create_publisher(convert_type('Float64MultiArray'), '~/ground_truth',
                                               qos.state_qos())
        # TF needs tf2_msgs, which only a system ROS 2 provides (no PyPI wheel): optional, said once.
        self._tf_type = convert.tf_message_type()
        self.pub_tf = self.pub_tf_static = None
        if self._tf_type is not None:
            self.pub_tf = self.create_publisher(self._tf_type, '/tf', qos.tf_qos())
            self.pub_tf_static = self.create_publisher(self._tf_type, '/tf_static', qos.tf_static_qos())
        else:
            self.get_logger().warning('TF is not published: tf2_msgs is not installed (it is not on PyPI; '
                                      'source a system ROS 2 to get /tf and /tf_static)')
        self._static_sent = False
        twist_type = 'TwistStamped' if s.enable_stamped_cmd_vel else 'Twist'
        self.create_subscription(convert_type(twist_type), 'cmd_vel', self._on_cmd_vel, qos.command_qos())
        self.create_service(convert_type('Trigger'), '~/reset', self._on_reset)

        self.sim_time = 0.0
        self.steps = 0
        self.error = None                     # set when the stepping thread failed
        self.done = threading.Event()         # set when the stepping thread ended
        self._stop = threading.Event()
        self._reset_request = threading.Event()
        self._reset_done = threading.Event()
        self._thread = None
        self.get_logger().info(
            f'scene {self.scene.name!r} seed {s.seed}, camera {s.camera_width}x{s.camera_height} at '
            f'{s.camera_rate_hz:g} Hz, real_time_factor {s.real_time_factor:g}, cmd_vel {twist_type} '
            f'timeout {s.cmd_vel_timeout:g} s, latency {s.command_latency:g} s')

    # ------------------------------------------------------------------------------------ callbacks

    def _on_cmd_vel(self, msg):
        try:
            _, v, w = convert.decode_twist(msg)
            self.gate.receive(v, w, self.sim_time)
        except InputError as exc:
            self.get_logger().warn(f'cmd_vel rejected: {exc}', throttle_duration_sec=1.0)

    def _on_reset(self, request, response):
        self._reset_done.clear()
        self._reset_request.set()
        if not self._reset_done.wait(timeout=30.0) or self.error is not None:
            response.success = False
            response.message = f'reset failed: {self.error or "timed out"}'
        else:
            response.success, response.message = True, f'reset to t={self.sim_time:.3f}'
        return response

    # ------------------------------------------------------------------------------------- stepping

    def start(self):
        """Start the stepping thread (separate from the executor so callbacks are never starved)."""
        self._thread = threading.Thread(target=self._run, name='sim_node_step', daemon=True)
        self._thread.start()

    def stop(self):
        """Stop stepping and release the world (waits for the thread)."""
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=10.0)

    def _run(self):
        try:
            self._reset_world()
            while not self._stop.is_set():
                if self._reset_request.is_set():
                    self._reset_request.clear()
                    self._reset_world()
                    self._reset_done.set()
                    continue
                self.pacer.wait(self._stop)
                if not self._stop.is_set():
                    self.step_once()
        except Exception as exc:  # a sim failure must be visible and end the node with an error
            self.error = f'{type(exc).__name__}: {exc}'
            self.get_logger().error(f'simulation failed: {self.error}')
            self._reset_done.set()
        finally:
            self.world.close()
            self.done.set()

    def _reset_world(self):
        observation = self.world.reset(scene=self.scene, seed=self.settings.seed, start=self.settings.start)
        self.gate.clear()
        self.sim_time = observation.stamp
        if self.pub_tf_static is not None and not self._static_sent:
            # The mounts come from the compiled model, so they exist only after the first reset; the
            # scene never changes afterwards, and transient-local durability latches them.
            self.pub_tf_static.publish(convert.encode_tf(
                observation.stamp, static_transforms(self.world.mount_poses()), self._tf_type))
            self._static_sent = True
        self._publish(observation, self.world.last_truth)

    def step_once(self):
        """Advance the world one camera period with the gated command and publish the results."""
        command = self.gate.command(self.sim_time)
        result = self.world.step(command)
        self.sim_time = result.observation.stamp
        self.steps += 1
        self._publish(result.observation, result.truth)

    def _publish(self, obs, truth):
        s = self.settings
        self.pub_clock.publish(convert.encode_clock(obs.stamp))
        imu = obs.imu
        for i in range(len(imu.stamps)):
            self.pub_imu.publish(convert.encode_imu(
                float(imu.stamps[i]), imu.angular_velocity[i], imu.linear_acceleration[i],
                orientation=imu.orientation[i]))
        odom = obs.odometry
        self.pub_odom.publish(convert.encode_odometry(odom.stamp, odom.x, odom.y, odom.yaw, odom.v, odom.w))
        if self.pub_tf is not None:
            self.pub_tf.publish(convert.encode_tf(odom.stamp, [odom_transform(odom.x, odom.y, odom.yaw)],
                                                  self._tf_type))
        if self.pub_range is not None:
            self.pub_range.publish(convert.encode_range(obs.stamp, obs.range, *range_limits(self.world)))
        self.pub_info.publish(convert.encode_camera_info(obs.stamp, s.camera_width, s.camera_height,
                                                         *self._intrinsics, frame_id=CAMERA_OPTICAL_FRAME))
        self.pub_image.publish(convert.encode_image(obs.image, obs.stamp, frame_id=CAMERA_OPTICAL_FRAME))
        self.pub_truth.publish(convert.encode_float_array(ground_truth_vector(truth), GROUND_TRUTH_FIELDS))


def range_limits(world):
    """(min_range, max_range) of the simulated range sensor."""
    return 0.02, float(getattr(world.config, 'range_max', 4.0))


_TYPES = {
    'Image': ('sensor_msgs.msg', 'Image'), 'CameraInfo': ('sensor_msgs.msg', 'CameraInfo'),
    'Imu': ('sensor_msgs.msg', 'Imu'), 'Range': ('sensor_msgs.msg', 'Range'),
    'Odometry': ('nav_msgs.msg', 'Odometry'), 'Clock': ('rosgraph_msgs.msg', 'Clock'),
    'Float64MultiArray': ('std_msgs.msg', 'Float64MultiArray'),
    'TwistStamped': ('geometry_msgs.msg', 'TwistStamped'), 'Twist': ('geometry_msgs.msg', 'Twist'),
    'Trigger': ('std_srvs.srv', 'Trigger'),
}


def convert_type(name):
    """Message/service class by short name."""
    import importlib
    module, cls = _TYPES[name]
    return getattr(importlib.import_module(module), cls)


def main(args=None):
    """Entry point of the ``sim_node`` executable. Exit code 0 on Ctrl-C / shutdown, 1 when the
    simulation failed, 2 for invalid parameters or scene."""
    rclpy.init(args=args)
    node = None
    code = 0
    try:
        node = SimNode()
        node.start()
        executor = rclpy.executors.SingleThreadedExecutor()
        executor.add_node(node)
        while rclpy.ok() and not node.done.is_set():
            executor.spin_once(timeout_sec=0.1)
        if node.error is not None:
            code = 1
    except (KeyboardInterrupt, ExternalShutdownException):
        pass
    except (LiquidControllerError, ValueError, ParameterException) as exc:  # bad parameter or scene
        print(f'sim_node: {exc}', file=sys.stderr)
        code = 2
    finally:
        if node is not None:
            node.stop()
            node.destroy_node()
        rclpy.try_shutdown()
    return code


if __name__ == '__main__':
    sys.exit(main())
