"""The controller lifecycle node (executable ``controller_node``): camera + IMU in, cmd_vel out.

Thin adapter around :class:`liquid_controller.runtime.controller.Controller`:

- configure: read + validate parameters, load the model file (card validated against the configured
  image size and topics), build and warm up the Controller, create publishers. A bad model path or a
  bad parameter -> FAILURE (the node stays unconfigured, the error is logged).
- activate: subscriptions + watchdog timer (steady clock) on; commands flow.
- deactivate: publishes one zero command, then stops output. cleanup/shutdown release everything.

Inputs (relative names, remappable): ``camera/image_raw`` (sensor_msgs/Image; CompressedImage on
``camera/image_raw/compressed`` when ``image_transport`` is ``compressed``), ``imu/data``, ``odom``
(optional), ``range`` (optional). Images use sensor-data QoS with depth 1: an old frame is replaced,
never processed late. IMU samples are buffered and cut into one window per frame by header stamp.

Outputs: ``cmd_vel`` (TwistStamped, or Twist when ``enable_stamped_cmd_vel`` is false; stamped with the
node clock at publish time, frame ``frame_id``), ``~/nominal_cmd_vel``, ``~/safety``, ``~/neurons``,
``/diagnostics`` (layouts in liquid_controller/ros/diagnostics.py), ``~/attention`` (sensor_msgs/Image
rgb8: VisualBackProp saliency blended on the camera frame, at most ``attention_rate_hz`` per second,
computed after the command is published; 0 = off). Services ``~/reset_state``
(std_srvs/Trigger) and ``~/enable`` (std_srvs/SetBool). Parameter ``mode``: ``drive`` or ``shadow``
(shadow: everything computed and published except cmd_vel).
"""
from __future__ import annotations

import bisect
import dataclasses
import time
from collections import deque

import numpy as np
import rclpy
from rcl_interfaces.msg import (FloatingPointRange, IntegerRange, ParameterDescriptor,
                                SetParametersResult)
from rclpy.clock import Clock, ClockType
from rclpy.executors import ExternalShutdownException, SingleThreadedExecutor
from rclpy.lifecycle import LifecycleNode, LifecycleState, TransitionCallbackReturn

from liquid_controller.errors import InputError, ModelFileError
from liquid_controller.ros import convert, diagnostics, qos
from liquid_controller.runtime.controller import OK, RESET, Controller, ControllerConfig, MeasuredState
from liquid_controller.runtime.preprocess import ImuWindow, forward_distance
from liquid_controller.runtime.stats import EventRate, RateMeter, RollingStats

MODES = ('drive', 'shadow')
TRANSPORTS = ('raw', 'compressed')
IMU_BUFFER = 4000          # samples kept (20 s at 200 Hz): bounded memory under a flood
MEASUREMENT_MAX_AGE = 0.5  # s (by stamps): older odom / range readings are not used
# Relative topic names (remappable). The Gazebo bridge config and the launch file use the same names.
TOPICS = {'image': 'camera/image_raw', 'compressed_image': 'camera/image_raw/compressed',
          'imu': 'imu/data', 'odom': 'odom', 'range': 'range', 'scan': 'scan', 'cmd_vel': 'cmd_vel'}


def _fr(lo, hi, step=0.0):
    return [FloatingPointRange(from_value=float(lo), to_value=float(hi), step=float(step))]


def _ir(lo, hi, step=1):
    return [IntegerRange(from_value=int(lo), to_value=int(hi), step=int(step))]


# name -> (default, description, range or None). Mirrors config/controller.yaml (a test checks it).
PARAMETERS = {
    'model': ('', 'Model name in models/ or path to NAME.json; empty = best available model', None),
    'mode': ('drive', 'drive: publish cmd_vel; shadow: compute and publish ~/nominal_cmd_vel only', None),
    'image_transport': ('raw', 'raw: sensor_msgs/Image on camera/image_raw; compressed: '
                               'sensor_msgs/CompressedImage on camera/image_raw/compressed', None),
    'image_height': (64, 'Configured camera image height (px); must match the model card', _ir(1, 4096)),
    'image_width': (128, 'Configured camera image width (px); must match the model card', _ir(1, 4096)),
    'resize_images': (False, 'Area-resample frames whose size differs from the model input', None),
    'enable_stamped_cmd_vel': (True, 'Publish geometry_msgs/TwistStamped (true) or Twist (false)', None),
    'frame_id': ('base_link', 'frame_id of the published commands', None),
    'use_odometry': (True, 'Subscribe odom and give its speed to the safety filter', None),
    'use_range': (False, 'Subscribe range (sensor_msgs/Range) as forward obstacle distance', None),
    'use_scan': (False, 'Subscribe scan (sensor_msgs/LaserScan): nearest return within '
                        'scan_half_angle of straight ahead is the obstacle distance', None),
    'scan_half_angle': (0.3, 'Half width (rad) of the forward sector of the scan', _fr(0.01, 3.1416)),
    'require_imu': (True, 'Brake when no IMU sample arrived within imu_timeout', None),
    'max_dt': (0.2, 'Largest dt (s) fed to the network; larger frame gaps are clipped', _fr(0.001, 5.0)),
    'reset_gap': (0.5, 'A frame-stamp gap above this (s) resets the hidden state', _fr(0.001, 60.0)),
    'input_timeout': (0.5, 'Watchdog: no valid frame for this long (s, steady clock) -> brake to zero',
                      _fr(0.01, 10.0)),
    'imu_timeout': (0.25, 'No IMU sample for this long (s, by stamps) -> bad input', _fr(0.001, 10.0)),
    'max_linear_accel': (2.0, 'Rate limit of the nominal linear velocity (m/s^2)', _fr(0.01, 100.0)),
    'max_angular_accel': (8.0, 'Rate limit of the nominal angular velocity (rad/s^2)', _fr(0.01, 100.0)),
    'brake_decel': (0.0, 'Braking deceleration (m/s^2) for stops; 0 = the safety filter limit',
                    _fr(0.0, 100.0)),
    'watchdog_period': (0.02, 'Watchdog timer period (s, steady clock)', _fr(0.001, 1.0)),
    'diagnostics_period': (1.0, 'Period of /diagnostics (s, steady clock)', _fr(0.05, 60.0)),
    'publish_neurons': (True, 'Publish the hidden state on ~/neurons', None),
    'attention_rate_hz': (2.0, 'Largest rate (Hz, steady clock) of the ~/attention overlay image, '
                               'computed after the command is published; 0 = off', _fr(0.0, 30.0)),
}


class ControllerNode(LifecycleNode):
    """Lifecycle node around the runtime Controller (see the module docstring)."""

    def __init__(self, node_name='controller', **kwargs):
        super().__init__(node_name, **kwargs)
        self._safety_fields = _safety_parameter_fields()
        for name, (default, text, rng) in PARAMETERS.items():
            desc = ParameterDescriptor(description=text)
            if rng and isinstance(default, float):
                desc.floating_point_range = rng
            elif rng:
                desc.integer_range = rng
            if name == 'mode':
                desc.additional_constraints = 'one of: drive, shadow'
            if name == 'image_transport':
                desc.additional_constraints = 'one of: raw, compressed'
            self.declare_parameter(name, default, desc)
        for name, (default, text) in self._safety_fields.items():
            self.declare_parameter(f'safety.{name}', default, ParameterDescriptor(description=text))
        self.add_on_set_parameters_callback(self._on_set_parameters)
        self.controller = None
        self._lc_pubs = {}
        self._lc_subs = []
        self._lc_timers = []
        self._lc_services = []
        self._active = False
        self._reset_state_buffers()
        self._lc_services.append(self.create_service(_srv('Trigger'), '~/reset_state', self._on_reset))
        self._lc_services.append(self.create_service(_srv('SetBool'), '~/enable', self._on_enable))
        self.get_logger().info('controller node created (unconfigured)')

    # --------------------------------------------------------------------------------- parameters

    def _p(self, name):
        return self.get_parameter(name).value

    def _on_set_parameters(self, params):
        for p in params:
            if p.name == 'mode' and p.value not in MODES:
                return SetParametersResult(successful=False, reason=f'mode={p.value!r}: one of {MODES}')
            if p.name == 'image_transport' and p.value not in TRANSPORTS:
                return SetParametersResult(successful=False,
                                           reason=f'image_transport={p.value!r}: one of {TRANSPORTS}')
            if p.name == 'mode' and p.value == 'shadow' and self._active:
                self._publish_zero()  # leaving drive: the robot must not keep the last command
        # numeric checks across parameters (a single changed value is checked with the others)
        values = {n: self._p(n) for n in ('max_dt', 'reset_gap')}
        values.update({p.name: p.value for p in params if p.name in values})
        if values['max_dt'] > values['reset_gap']:
            return SetParametersResult(successful=False,
                                       reason=f"max_dt={values['max_dt']} must not exceed "
                                              f"reset_gap={values['reset_gap']}")
        return SetParametersResult(successful=True)

    def _controller_config(self):
        return ControllerConfig(
            max_dt=float(self._p('max_dt')), reset_gap=float(self._p('reset_gap')),
            input_timeout=float(self._p('input_timeout')), imu_timeout=float(self._p('imu_timeout')),
            require_imu=bool(self._p('require_imu')),
            max_linear_accel=float(self._p('max_linear_accel')),
            max_angular_accel=float(self._p('max_angular_accel')),
            brake_decel=float(self._p('brake_decel')), resize_images=bool(self._p('resize_images')))

    def _safety_config(self):
        from liquid_controller.safety.config import SafetyConfig
        kwargs = {}
        for name, (default, _) in self._safety_fields.items():
            value = self._p(f'safety.{name}')
            if isinstance(default, list):
                value = list(value)
            kwargs[name] = value
        return SafetyConfig(**kwargs)

    # ---------------------------------------------------------------------------------- lifecycle

    def on_configure(self, state: LifecycleState) -> TransitionCallbackReturn:
        try:
            from liquid_controller.runtime.model_file import best_available_model, load_model
            model = self._p('model')
            if not model:
                best = best_available_model()
                if best is None:
                    raise ModelFileError('parameter model is empty and models/ has no model file')
                model = str(best[0])
            topics = {'image', 'imu'} | ({'odom'} if self._p('use_odometry') else set()) \
                | ({'range'} if self._p('use_range') else set()) \
                | ({'scan'} if self._p('use_scan') else set())
            size = None if self._p('resize_images') else (self._p('image_height'), self._p('image_width'))
            loaded = load_model(model, expected_image_size=size, available_topics=topics)
            self.controller = Controller(loaded, self._controller_config(), self._safety_config())
        except (ModelFileError, InputError, ValueError, TypeError) as exc:
            self.get_logger().error(f'configure failed: {exc}')
            self.controller = None
            return TransitionCallbackReturn.FAILURE
        card = loaded.card
        if card.untrained:
            self.get_logger().warning(f'model {card.name!r} is UNTRAINED (random weights): it will not '
                                   'drive well; use it only to bring up the system')
        self._model_name = card.name
        self._untrained = card.untrained
        self._neuron_labels = diagnostics.neuron_labels(self.controller.neuron_groups,
                                                        self.controller.neurons().size)
        stamped = bool(self._p('enable_stamped_cmd_vel'))
        twist = _msg('geometry_msgs.msg', 'TwistStamped' if stamped else 'Twist')
        self._lc_pubs = {
            'cmd_vel': self.create_publisher(twist, TOPICS['cmd_vel'], qos.command_qos()),
            'nominal': self.create_publisher(twist, '~/nominal_cmd_vel', qos.command_qos()),
            'safety': self.create_publisher(_msg('diagnostic_msgs.msg', 'DiagnosticStatus'),
                                            '~/safety', qos.state_qos()),
            'neurons': self.create_publisher(_msg('std_msgs.msg', 'Float32MultiArray'),
                                             '~/neurons', qos.state_qos()),
            'diagnostics': self.create_publisher(_msg('diagnostic_msgs.msg', 'DiagnosticArray'),
                                                 '/diagnostics', qos.state_qos()),
            'attention': self.create_publisher(_msg('sensor_msgs.msg', 'Image'), '~/attention',
                                               qos.image_qos(1)),
        }
        self.get_logger().info(f'configured with model {card.name!r} ({loaded.json_path})')
        return TransitionCallbackReturn.SUCCESS

    def on_activate(self, state: LifecycleState) -> TransitionCallbackReturn:
        self._reset_state_buffers()
        self.controller.start(time.monotonic())
        self._create_subscriptions()
        steady = Clock(clock_type=ClockType.STEADY_TIME)
        self._lc_timers = [
            self.create_timer(float(self._p('watchdog_period')), self._on_watchdog, clock=steady),
            self.create_timer(float(self._p('diagnostics_period')), self._publish_diagnostics,
                              clock=steady),
        ]
        self._active = True
        self.get_logger().info(f"active (mode {self._p('mode')})")
        return TransitionCallbackReturn.SUCCESS

    def on_deactivate(self, state: LifecycleState) -> TransitionCallbackReturn:
        self._publish_zero()
        self._active = False
        self._destroy_runtime_entities()
        self.get_logger().info('deactivated: zero command published')
        return TransitionCallbackReturn.SUCCESS

    def on_cleanup(self, state: LifecycleState) -> TransitionCallbackReturn:
        self._destroy_runtime_entities()
        for pub in self._lc_pubs.values():
            self.destroy_publisher(pub)
        self._lc_pubs = {}
        self.controller = None
        return TransitionCallbackReturn.SUCCESS

    def on_shutdown(self, state: LifecycleState) -> TransitionCallbackReturn:
        if self._active:
            self._publish_zero()
        self._active = False
        self._destroy_runtime_entities()
        return TransitionCallbackReturn.SUCCESS

    def on_error(self, state: LifecycleState) -> TransitionCallbackReturn:
        try:
            if self._lc_pubs:
                self._publish_zero()
        finally:
            self._active = False
            self._destroy_runtime_entities()
        return TransitionCallbackReturn.SUCCESS

    def _create_subscriptions(self):
        # IMU, odom and range first: when a frame and the samples before it are ready together, the
        # executor serves subscriptions in creation order, so the samples are buffered before the
        # frame's window is cut (otherwise they would slip into the next frame's window).
        self._lc_subs.append(self.create_subscription(_msg('sensor_msgs.msg', 'Imu'), TOPICS['imu'],
                                                      self._on_imu, qos.imu_qos()))
        if self._p('use_odometry'):
            self._lc_subs.append(self.create_subscription(_msg('nav_msgs.msg', 'Odometry'),
                                                          TOPICS['odom'], self._on_odom,
                                                          qos.state_qos()))
        if self._p('use_range'):
            self._lc_subs.append(self.create_subscription(_msg('sensor_msgs.msg', 'Range'),
                                                          TOPICS['range'], self._on_range,
                                                          qos.sensor_qos()))
        if self._p('use_scan'):
            self._lc_subs.append(self.create_subscription(_msg('sensor_msgs.msg', 'LaserScan'),
                                                          TOPICS['scan'], self._on_scan,
                                                          qos.sensor_qos()))
        if self._p('image_transport') == 'compressed':
            self._lc_subs.append(self.create_subscription(
                _msg('sensor_msgs.msg', 'CompressedImage'), TOPICS['compressed_image'],
                lambda m: self._on_image(m, convert.decode_compressed_image), qos.image_qos(1)))
        else:
            self._lc_subs.append(self.create_subscription(
                _msg('sensor_msgs.msg', 'Image'), TOPICS['image'],
                lambda m: self._on_image(m, convert.decode_image), qos.image_qos(1)))

    def _destroy_runtime_entities(self):
        for sub in self._lc_subs:
            self.destroy_subscription(sub)
        for timer in self._lc_timers:
            self.destroy_timer(timer)
        self._lc_subs, self._lc_timers = [], []

    def _reset_state_buffers(self):
        self._imu_stamps = deque(maxlen=IMU_BUFFER)
        self._imu_samples = deque(maxlen=IMU_BUFFER)  # (gyro (3,), accel (3,))
        self._input_error = None
        self._last_frame_stamp = None
        self._odom = None   # (stamp, speed)
        self._range = None  # (stamp, range)
        self._scan = None   # (stamp, forward distance)
        self._rates = {k: RateMeter() for k in ('image', 'imu', 'odom', 'range', 'scan', 'cmd_vel')}
        self._dt_stats = RollingStats()
        self._imu_per_frame = RollingStats()  # IMU samples in each frame's window
        self._latency = RollingStats()      # receive -> publish (s)
        self._stage = {k: RollingStats() for k in ('decode', 'preprocess', 'policy', 'filter')}
        self._interventions = EventRate()
        self._status_counts = {}
        self._last_output = None
        self._last_reason = ''
        self._last_attention = None   # steady time of the last ~/attention image
        self._attention_error = None  # last attention failure since the last success (-> WARN)
        self._attention_skipped = None  # last frame the saliency rejected (InputError)

    # ---------------------------------------------------------------------------------- callbacks

    def _on_imu(self, msg):
        now = time.monotonic()
        self._rates['imu'].add(now)
        try:
            reading = convert.decode_imu(msg)
        except InputError as exc:
            self._input_error = f'imu: {exc}'
            return
        # insert keeping stamp order (samples may arrive slightly out of order)
        i = bisect.bisect_right(self._imu_stamps, reading.stamp)
        if i == len(self._imu_stamps):
            self._imu_stamps.append(reading.stamp)
            self._imu_samples.append((reading.angular_velocity, reading.linear_acceleration))
        else:
            self._imu_stamps.insert(i, reading.stamp)
            self._imu_samples.insert(i, (reading.angular_velocity, reading.linear_acceleration))

    def _imu_window(self, stamp):
        """The buffered samples not used yet with stamps in (stamp - max_dt, stamp]; later samples
        stay for the next frame. A sample that arrived after its own frame was processed (the
        executor takes one message per subscription per turn, so a burst of IMU samples can finish
        arriving after the frame) goes into the next frame's window instead of being lost."""
        lo = stamp - float(self._p('max_dt'))
        stamps, gyro, accel = [], [], []
        while self._imu_stamps and self._imu_stamps[0] <= stamp:
            s = self._imu_stamps.popleft()
            g, a = self._imu_samples.popleft()
            if s > lo:
                stamps.append(s)
                gyro.append(g)
                accel.append(a)
        if self._imu_stamps and self._imu_stamps[-1] > stamp + 5.0:
            # samples far in the future relative to the camera (a clock jump): drop them
            self._imu_stamps.clear()
            self._imu_samples.clear()
        if not stamps:
            return ImuWindow.empty()
        return ImuWindow(np.asarray(stamps), np.asarray(gyro).reshape(-1, 3),
                         np.asarray(accel).reshape(-1, 3))

    def _on_odom(self, msg):
        self._rates['odom'].add(time.monotonic())
        try:
            reading = convert.decode_odometry(msg)
        except InputError as exc:
            self._input_error = self._input_error or f'odom: {exc}'
            return
        self._odom = (reading.stamp, float(reading.linear[0]))

    def _on_range(self, msg):
        self._rates['range'].add(time.monotonic())
        try:
            stamp, value = convert.decode_range(msg)
        except InputError as exc:
            self._input_error = self._input_error or f'range: {exc}'
            return
        self._range = (stamp, value)

    def _on_scan(self, msg):
        self._rates['scan'].add(time.monotonic())
        try:
            stamp = convert.stamp_to_sec(msg.header.stamp, 'header.stamp')
            distance = forward_distance(msg.ranges, msg.angle_min, msg.angle_increment,
                                        msg.range_min, msg.range_max,
                                        float(self._p('scan_half_angle')))
        except InputError as exc:
            self._input_error = self._input_error or f'scan: {exc}'
            return
        self._scan = (stamp, distance)

    def _on_image(self, msg, decoder):
        received = time.monotonic()
        self._rates['image'].add(received)
        ctl = self.controller
        if ctl is None or not self._active:
            return
        t0 = time.perf_counter()
        try:
            frame = decoder(msg)
            stamp = convert.stamp_to_sec(msg.header.stamp, 'header.stamp')
        except (InputError, AttributeError) as exc:
            self._emit(ctl.reject(f'image: {exc}', received), received)
            return
        decode_s = time.perf_counter() - t0
        window = self._imu_window(stamp)
        self._imu_per_frame.add(len(window))
        if self._last_frame_stamp is not None and stamp > self._last_frame_stamp:
            self._dt_stats.add(stamp - self._last_frame_stamp)
        self._last_frame_stamp = stamp
        if self._input_error is not None:
            reason, self._input_error = self._input_error, None
            self._emit(ctl.reject(reason, received), received)
            return
        ranges = [r for r in (self._fresh(self._range, stamp), self._fresh(self._scan, stamp))
                  if r is not None]
        measured = MeasuredState(speed=self._fresh(self._odom, stamp),
                                 range=min(ranges) if ranges else None)
        out = ctl.step(frame, stamp, window, measured, now=received)
        out.timings['decode'] = decode_s
        self._emit(out, received)
        if out.status in (OK, RESET):
            self._maybe_publish_attention(ctl, frame, msg.header)

    def _maybe_publish_attention(self, ctl, frame, header):
        """Publish the ~/attention overlay for this frame when the rate limit allows.

        Runs after the command went out, so it only delays the next frame (at most once per
        1 / attention_rate_hz). The image carries the camera frame's stamp and frame_id. A frame the
        saliency cannot use (InputError) is skipped; any other failure is logged (throttled) and turns
        /diagnostics to WARN until an image succeeds; it never reaches the control path.
        """
        rate = float(self._p('attention_rate_hz'))
        now = time.monotonic()
        if rate <= 0.0 or 'attention' not in self._lc_pubs or (
                self._last_attention is not None and now - self._last_attention < 1.0 / rate):
            return
        self._last_attention = now
        try:
            from liquid_controller.policy.saliency import (attention_image, attention_overlay,
                                                           visual_backprop)
            if not frame.flags.writeable:  # decoded views of the message buffer are read-only
                frame = frame.copy()
            if tuple(frame.shape[:2]) == tuple(ctl.image_size):
                overlay = attention_image(ctl.policy, frame, method='visual_backprop')
            else:  # resize_images: saliency of the network input, drawn on the camera frame
                from liquid_controller.runtime.preprocess import image_to_tensor
                x = image_to_tensor(frame, *ctl.image_size, resize=True)    # (1, 3, h, w)
                overlay = attention_overlay(frame, visual_backprop(ctl.policy, x))
            image = convert.encode_image(overlay, 0.0, frame_id=header.frame_id)
            image.header.stamp = header.stamp
            self._lc_pubs['attention'].publish(image)
            self._attention_error = None
        except InputError as exc:
            self._attention_skipped = str(exc)
        except Exception as exc:  # noqa: BLE001 -- a debug image must never stop control
            self._attention_error = f'{type(exc).__name__}: {exc}'
            self.get_logger().warning(f'~/attention failed: {self._attention_error}',
                                      throttle_duration_sec=5.0)

    @staticmethod
    def _fresh(reading, stamp):
        if reading is None or abs(stamp - reading[0]) > MEASUREMENT_MAX_AGE:
            return None
        return reading[1]

    def _on_watchdog(self):
        if not self._active or self.controller is None:
            return
        out = self.controller.tick(time.monotonic())
        if out is not None:
            self._emit(out, None)

    # ---------------------------------------------------------------------------------- outputs

    def _twist(self, v, w, stamp_msg):
        msg = convert.encode_twist(v, w, stamp=0.0, frame_id=self._p('frame_id'),
                                   stamped=bool(self._p('enable_stamped_cmd_vel')))
        if hasattr(msg, 'header'):
            msg.header.stamp = stamp_msg  # node clock (sim time when use_sim_time) at publish time
        return msg

    def _emit(self, out, received):
        """Publish one ControllerOutput on every output topic and update statistics."""
        stamp_msg = self.get_clock().now().to_msg()
        drive = self._p('mode') == 'drive'
        if drive:
            self._lc_pubs['cmd_vel'].publish(self._twist(out.command[0], out.command[1], stamp_msg))
            self._rates['cmd_vel'].add(time.monotonic())
        if not out.safe or out.certificate is not None:
            self._lc_pubs['nominal'].publish(self._twist(out.nominal[0], out.nominal[1], stamp_msg))
        self._lc_pubs['safety'].publish(diagnostics.safety_status(f'{self.get_name()}: safety', out))
        if self._p('publish_neurons') and out.neurons is not None:
            self._lc_pubs['neurons'].publish(diagnostics.neurons_message(out.neurons, self._neuron_labels))
        if received is not None:
            self._latency.add(time.monotonic() - received)
            for k in self._stage:
                if k in out.timings:
                    self._stage[k].add(out.timings[k])
            self._interventions.add(out.intervened)
        self._status_counts[out.status] = self._status_counts.get(out.status, 0) + 1
        was_safe = self._last_output is not None and self._last_output.safe
        if out.safe and not was_safe:
            self.get_logger().warning(f'braking to zero: {out.status}: {out.reason}')
        elif was_safe and not out.safe:
            self.get_logger().info(f'recovered: {out.status} {out.reason}'.rstrip())
        if out.reason:
            self._last_reason = out.reason
        self._last_output = out

    def _publish_zero(self):
        if 'cmd_vel' not in self._lc_pubs:
            return
        stamp_msg = self.get_clock().now().to_msg()
        if self._p('mode') == 'drive':
            self._lc_pubs['cmd_vel'].publish(self._twist(0.0, 0.0, stamp_msg))

    def _publish_diagnostics(self):
        if self.controller is None or 'diagnostics' not in self._lc_pubs:
            return
        from diagnostic_msgs.msg import DiagnosticStatus
        now = time.monotonic()
        ctl = self.controller
        out = self._last_output
        level, message = DiagnosticStatus.OK, 'ok'
        if out is not None and out.safe:
            level, message = DiagnosticStatus.ERROR, f'{out.status}: {out.reason}'
        elif self._untrained:
            level, message = DiagnosticStatus.WARN, 'running an UNTRAINED model (random weights)'
        values = {'model': self._model_name, 'untrained': self._untrained, 'mode': self._p('mode'),
                  'enabled': ctl.enabled, 'status': out.status if out else 'no output yet',
                  'last_reason': self._last_reason, 'input_age_s': ctl.input_age(now),
                  'intervention_rate': self._interventions.rate()}
        if level == DiagnosticStatus.OK and self._attention_error:
            level, message = DiagnosticStatus.WARN, f'~/attention failed: {self._attention_error}'
        if self._attention_error:
            values['attention_error'] = self._attention_error
        if self._attention_skipped:
            values['attention_skipped'] = self._attention_skipped
        for k, meter in self._rates.items():
            values[f'rate_hz.{k}'] = meter.rate(now)
        dt = self._dt_stats.summary()
        values['imu_samples_per_frame.mean'] = self._imu_per_frame.summary()['mean']
        values.update({f'dt.{k}': v for k, v in dt.items()})
        lat = self._latency.summary()
        values.update({'latency_ms.p50': lat['p50'] * 1e3, 'latency_ms.p99': lat['p99'] * 1e3,
                       'latency_ms.max': lat['max'] * 1e3})
        for k, st in self._stage.items():
            values[f'stage_ms.{k}.p50'] = st.summary()['p50'] * 1e3
        values.update({f'count.{k}': v for k, v in ctl.counters.items()})
        values.update({f'status_count.{k}': v for k, v in self._status_counts.items()})
        status = DiagnosticStatus(level=level, name=f'{self.get_name()}: controller',
                                  message=message[:250], hardware_id='', values=diagnostics.key_values(values))
        self._lc_pubs['diagnostics'].publish(
            diagnostics.diagnostic_array(self.get_clock().now().to_msg(), [status]))

    # ---------------------------------------------------------------------------------- services

    def _on_reset(self, request, response):
        if self.controller is None:
            response.success, response.message = False, 'not configured'
            return response
        self.controller.reset('reset_state service')
        self._last_frame_stamp = None
        response.success, response.message = True, 'hidden state reset'
        return response

    def _on_enable(self, request, response):
        if self.controller is None:
            response.success, response.message = False, 'not configured'
            return response
        self.controller.set_enabled(bool(request.data))
        response.success = True
        response.message = 'output enabled' if request.data else 'output disabled: braking to zero'
        return response


def _msg(module, name):
    import importlib
    return getattr(importlib.import_module(module), name)


def _srv(name):
    return _msg('std_srvs.srv', name)


def _safety_parameter_fields():
    """SafetyConfig fields exposed as ``safety.<name>`` parameters: name -> (default, description)."""
    from liquid_controller.safety.config import SafetyConfig
    out = {}
    defaults = SafetyConfig()
    for f in dataclasses.fields(SafetyConfig):
        value = getattr(defaults, f.name)
        if isinstance(value, bool) or isinstance(value, (int, float, str)):
            out[f.name] = (value, f'safety filter: {f.name} (see liquid_controller.safety.SafetyConfig)')
        elif isinstance(value, (list, tuple)) and value and all(isinstance(v, (int, float)) for v in value):
            out[f.name] = ([float(v) for v in value],
                           f'safety filter: {f.name} (see liquid_controller.safety.SafetyConfig)')
    return out


def main(args=None):
    """Entry point of the ``controller_node`` executable.

    rclpy's own SIGINT handler would invalidate the context while a callback may still publish;
    instead Ctrl-C / SIGINT (and SIGTERM) raise KeyboardInterrupt here, so the node publishes a
    final zero command while the context is still valid, then shuts down.
    """
    import signal

    from rclpy.signals import SignalHandlerOptions
    rclpy.init(args=args, signal_handler_options=SignalHandlerOptions.NO)
    signal.signal(signal.SIGTERM, signal.default_int_handler)
    node = ControllerNode()
    executor = SingleThreadedExecutor()
    executor.add_node(node)
    try:
        executor.spin()
    except (KeyboardInterrupt, ExternalShutdownException):
        pass
    finally:
        if node._active:
            try:
                node._publish_zero()
            except Exception:  # the context may already be shut down (external shutdown)
                pass
        executor.remove_node(node)
        node.destroy_node()
        if rclpy.ok():
            rclpy.shutdown()


if __name__ == '__main__':
    main()
