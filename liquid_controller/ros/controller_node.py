"""The controller lifecycle node (executable ``controller_node``): camera + IMU in, cmd_vel out.

Thin adapter around :class:`liquid_controller.runtime.controller.Controller` and
:class:`liquid_controller.runtime.frame_assembler.FrameAssembler`:

- configure: check the parameter overrides (an unknown key, e.g. a misspelled one in the params file, is
  an error naming it), snapshot and validate the parameters, load the model file (card validated
  against the configured image size and topics), build and warm up the Controller, create publishers.
  Any failure -> FAILURE (the node stays unconfigured, the cause is logged).
- activate: subscriptions + watchdog timer (steady clock) on; commands flow.
- deactivate: publishes one zero command, then stops output. cleanup/shutdown release everything.

Parameters are read once at configure. Only ``mode`` and ``publish_neurons`` may change while the node
is configured (``runtime.settings.LIVE_PARAMETERS``); a change of any other parameter is refused with a reason until
the node is cleaned up (unconfigured), and applies at the next configure.

Inputs (relative names, remappable): ``camera/image_raw`` (sensor_msgs/Image; CompressedImage on
``camera/image_raw/compressed`` when ``image_transport`` is ``compressed``), ``imu/data``, ``odom``
(optional), ``range`` / ``scan`` (optional). Camera QoS is ``image_reliability`` + ``image_depth``
(default auto, depth 1: reliable, because on one host best effort loses most frames of 640x480 and
larger; when a best-effort camera publisher appears, which a reliable subscription cannot match, the
subscription is made again best effort and /diagnostics says so). IMU, odometry, range and scan
subscriptions are best effort, which matches reliable and best-effort publishers alike.

Outputs: ``cmd_vel`` (TwistStamped, or Twist when ``enable_stamped_cmd_vel`` is false; stamped with the
node clock at publish time, frame ``frame_id``), ``~/nominal_cmd_vel``, ``~/safety``, ``~/neurons``,
``/diagnostics`` (layouts in liquid_controller/messages/diagnostics.py), ``~/attention`` (sensor_msgs/Image
rgb8: VisualBackProp saliency blended on the newest camera frame, at most ``attention_rate_hz`` per
second, computed in a worker thread of its own, never in the control path; 0 = off, the default),
``~/ood`` (std_msgs/Float32: the OOD monitor's score, when the model card holds its statistics).
Services ``~/reset_state`` (std_srvs/Trigger) and ``~/enable`` (std_srvs/SetBool). Parameter ``mode``:
``drive`` or ``shadow`` (shadow: everything computed and published except cmd_vel).

Executor: :func:`main` spins rclpy's EventsExecutor (SingleThreadedExecutor where rclpy lacks it).
Measured with ``liquid-controller bench latency`` on an idle 2-core machine (image -> cmd_vel, p50 /
p99, commands received of those due): MultiThreadedExecutor 10.6 / 33.0 ms, 588 of 900 (its thread-pool
dispatch delays frames until the next one replaces them); SingleThreadedExecutor 5.7 / 8.7 ms, all;
EventsExecutor 5.4 / 7.4 ms, all. The EventsExecutor also serves callbacks in arrival order, so IMU
samples queued before a frame are buffered before that frame is processed, however busy the camera
is. The callbacks still sit in separate callback groups (camera, sensors, watchdog + diagnostics), which
keeps the node correct under a multi-threaded executor: one lock serialises everything that touches the
Controller or publishes a command, and the frame assembler is thread-safe.
"""
from __future__ import annotations

import difflib
import math
import os
import signal
import sys
import threading
import time

import rclpy
from rcl_interfaces.msg import (FloatingPointRange, IntegerRange, ParameterDescriptor,
                                SetParametersResult)
from rclpy.callback_groups import MutuallyExclusiveCallbackGroup
from rclpy.clock import Clock, ClockType
from rclpy.duration import Duration
from rclpy.executors import ExternalShutdownException, SingleThreadedExecutor
from rclpy.lifecycle import LifecycleNode, LifecycleState, TransitionCallbackReturn

from liquid_controller.errors import InputError, ModelFileError
from liquid_controller.messages import convert, diagnostics, qos
from liquid_controller.runtime.controller import OK, RESET, Controller, MeasuredState
from liquid_controller.runtime.preprocess import forward_distance
from liquid_controller.runtime.settings import LIVE_PARAMETERS, Settings, all_parameters
from liquid_controller.runtime.stats import RateMeter, RollingStats

# Relative topic names (remappable). The Gazebo bridge config and the launch file use the same names.
TOPICS = {'image': 'camera/image_raw', 'compressed_image': 'camera/image_raw/compressed',
          'imu': 'imu/data', 'odom': 'odom', 'range': 'range', 'scan': 'scan', 'cmd_vel': 'cmd_vel'}
IMU_DRAIN_MAX = 200      # IMU messages a camera callback takes at most before cutting the window
ZERO_ACK_TIMEOUT = 0.5   # s a final zero command waits for reliable subscribers to acknowledge it
# Parameters every ROS node may get that are not ours (set by rclpy or by ROS tools).
FOREIGN_PARAMETER_PREFIXES = ('qos_overrides.',)
FOREIGN_PARAMETERS = ('use_sim_time', 'start_type_description_service')


class ControllerNode(LifecycleNode):
    """Lifecycle node around the runtime Controller (see the module docstring)."""

    def __init__(self, node_name='controller', **kwargs):
        super().__init__(node_name, **kwargs)
        self._lock = threading.RLock()     # Controller, publishers and lifecycle state
        self._configured = False
        self._active = False
        self.controller = None
        self.assembler = None
        self._settings = None          # runtime.settings.Settings, taken at configure
        self._scan_pose = (0.0, 0.0, 0.0)   # the scanner in base_link (x, y, yaw), from scan_pose
        self._parameter_table = all_parameters()   # runtime/settings.py: one definition
        for name, p in self._parameter_table.items():
            self.declare_parameter(name, p.default, _descriptor(p))
        self.add_on_set_parameters_callback(self._on_set_parameters)
        self._groups = {k: MutuallyExclusiveCallbackGroup()
                        for k in ('camera', 'sensors', 'watchdog')}
        self._lc_pubs = {}
        self._lc_subs = []
        self._lc_timers = []
        self._attention_thread = None
        self._reset_state_buffers()
        self._lc_services = [self.create_service(_srv('Trigger'), '~/reset_state', self._on_reset),
                          self.create_service(_srv('SetBool'), '~/enable', self._on_enable)]
        unknown = self.unknown_parameter_overrides()
        if unknown:   # reported now; configure refuses them
            self.get_logger().error(f'unknown parameters (configure will fail): {"; ".join(unknown)}')
        self.get_logger().info('controller node created (unconfigured)')

    # --------------------------------------------------------------------------------- parameters

    def _s(self, name):
        """A configure-time setting (snapshot taken at configure)."""
        return self._settings[name]

    def unknown_parameter_overrides(self):
        """Overrides (params file, command line) that name no parameter of this node, each with the
        closest known name: a misspelled safety parameter must not silently keep its default."""
        known = set(self._parameters)
        out = []
        for name in sorted(self._parameter_overrides):
            if name in known or name in FOREIGN_PARAMETERS or name.startswith(FOREIGN_PARAMETER_PREFIXES):
                continue
            close = difflib.get_close_matches(name, known, n=1)
            out.append(f'{name!r} is not a parameter of this node'
                       + (f' (did you mean {close[0]!r}?)' if close else ''))
        return out

    def _on_set_parameters(self, params):
        for p in params:
            choices = getattr(self._parameter_table.get(p.name), 'choices', None)
            if choices is not None and p.value not in choices:
                return SetParametersResult(successful=False, reason=f'{p.name}={p.value!r}: one of {choices}')
            if self._configured and p.name not in LIVE_PARAMETERS and p.name not in FOREIGN_PARAMETERS:
                return SetParametersResult(
                    successful=False,
                    reason=f'{p.name} is read at configure: deactivate and clean up the node, set it, '
                           f'then configure again (live parameters: {", ".join(LIVE_PARAMETERS)})')
        # numeric checks across parameters (a single changed value is checked with the others)
        values = {n: self.get_parameter(n).value for n in ('max_dt', 'reset_gap')
                  if self.has_parameter(n)}
        values.update({p.name: p.value for p in params if p.name in ('max_dt', 'reset_gap')})
        if len(values) == 2 and values['max_dt'] > values['reset_gap']:
            return SetParametersResult(successful=False,
                                       reason=f"max_dt={values['max_dt']} must not exceed "
                                              f"reset_gap={values['reset_gap']}")
        for p in params:
            if p.name == 'mode' and p.value == 'shadow' and self._active:
                self._publish_zero()  # leaving drive: the robot must not keep the last command
        return SetParametersResult(successful=True)

    def _snapshot_settings(self):
        """Settings from the current parameter values (arrays as lists), validated together."""
        values = {}
        for name in self._parameter_table:
            value = self.get_parameter(name).value
            values[name] = list(value) if not isinstance(value, (str, bytes)) and hasattr(value, '__len__') \
                else value
        return Settings(values)

    # ---------------------------------------------------------------------------------- lifecycle

    def on_configure(self, state: LifecycleState) -> TransitionCallbackReturn:
        with self._lock:
            try:
                unknown = self.unknown_parameter_overrides()
                if unknown:
                    raise InputError('parameters', '; '.join(unknown), 'unknown parameter names')
                self._settings = self._snapshot_settings()
                loaded = self._load_model()
                self.controller = Controller(loaded, self._settings.controller_config(),
                                             self._settings.safety_config())
                self.assembler = self._settings.frame_assembler()
                self._scan_pose = self._settings.scan_pose()
            except (ModelFileError, InputError, ValueError, TypeError) as exc:
                self.get_logger().error(f'configure failed: {exc}')
                self.controller = None
                self._settings = None
                return TransitionCallbackReturn.FAILURE
            card = loaded.card
            if card.untrained:
                self.get_logger().warning(f'model {card.name!r} is UNTRAINED (random weights): it will '
                                          'not drive well; use it only to bring up the system')
            self._model_name = card.name
            self._untrained = card.untrained
            self._neuron_labels = diagnostics.neuron_labels(self.controller.neuron_groups,
                                                            self.controller.neurons().size)
            twist = _msg('geometry_msgs.msg',
                         'TwistStamped' if self._s('enable_stamped_cmd_vel') else 'Twist')
            self._lc_pubs = {
                'cmd_vel': self.create_publisher(twist, TOPICS['cmd_vel'], qos.command_qos()),
                'nominal': self.create_publisher(twist, '~/nominal_cmd_vel', qos.command_qos()),
                'safety': self.create_publisher(_msg('diagnostic_msgs.msg', 'DiagnosticStatus'),
                                                '~/safety', qos.state_qos()),
                'neurons': self.create_publisher(_msg('std_msgs.msg', 'Float32MultiArray'),
                                                 '~/neurons', qos.state_qos()),
                'diagnostics': self.create_publisher(_msg('diagnostic_msgs.msg', 'DiagnosticArray'),
                                                     '/diagnostics', qos.state_qos()),
            }
            if self.controller.ood is not None:     # the card holds OOD statistics
                self._lc_pubs['ood'] = self.create_publisher(_msg('std_msgs.msg', 'Float32'), '~/ood',
                                                             qos.state_qos())
            elif self.controller.ood_unavailable:   # statistics this backend cannot score
                self.get_logger().warning(f'{self.controller.ood_unavailable}; ~/ood is not published')
            else:
                self.get_logger().info(f'model {card.name!r} has no OOD statistics: ~/ood is not '
                                       'published (liquid-controller calibrate-ood adds them)')
            if self._attention_rate() > 0:
                self._lc_pubs['attention'] = self.create_publisher(
                    _msg('sensor_msgs.msg', 'Image'), '~/attention', qos.image_qos(1))
            if self._s('attention_rate_hz') > 0 and self._attention_rate() == 0:
                self.get_logger().warning(
                    f'attention_rate_hz={self._s("attention_rate_hz")} ignored: ~/attention needs the '
                    f'torch backend (saliency backpropagates through the torch policy); this node '
                    f'runs backend {self.controller.backend!r}, so ~/attention is off')
            self._configured = True
            self.get_logger().info(f'configured with model {card.name!r} ({loaded.json_path}, '
                                   f'backend {self.controller.backend})')
            return TransitionCallbackReturn.SUCCESS

    def _attention_rate(self):
        """attention_rate_hz, or 0 on the onnx backend: the saliency backpropagates through the torch
        policy (policy/saliency.py), which an edge node does not have (warned at configure)."""
        rate = self._s('attention_rate_hz')
        if rate > 0 and self.controller is not None and self.controller.backend != 'torch':
            return 0.0
        return rate

    def _load_model(self):
        from liquid_controller.runtime.model_file import best_available_model
        from liquid_controller.runtime.policy_backend import load_runtime_model
        model = self._s('model')
        if not model:
            best = best_available_model()
            if best is None:
                raise ModelFileError('parameter model is empty and models/ has no model file')
            model = str(best[0])
        topics = {'image', 'imu'} | ({'odom'} if self._s('use_odometry') else set()) \
            | ({'range'} if self._s('use_range') else set()) \
            | ({'scan'} if self._s('use_scan') else set())
        size = None if self._s('resize_images') else (self._s('image_height'), self._s('image_width'))
        # backend torch: model card + safetensors; onnx: an exported graph, no torch (docs/edge.md)
        return load_runtime_model(model, self._s('backend'), expected_image_size=size,
                                  available_topics=topics,
                                  num_threads=self._settings.controller_config().num_threads)

    def on_activate(self, state: LifecycleState) -> TransitionCallbackReturn:
        with self._lock:
            self._reset_state_buffers()
            self.assembler.reset()
            self.controller.start(time.monotonic())
            self._create_subscriptions()
            steady = Clock(clock_type=ClockType.STEADY_TIME)
            self._lc_timers = [
                self.create_timer(self._s('watchdog_period'), self._on_watchdog, clock=steady,
                                  callback_group=self._groups['watchdog']),
                self.create_timer(self._s('diagnostics_period'), self._publish_diagnostics,
                                  clock=steady, callback_group=self._groups['watchdog']),
            ]
            rate = self._attention_rate()
            if rate > 0:
                self._attention_stop = threading.Event()
                self._attention_thread = threading.Thread(
                    target=self._attention_loop, args=(1.0 / rate, self._attention_stop),
                    name='attention', daemon=True)
                self._attention_thread.start()
            self._active = True
            self.get_logger().info(f"active (mode {self.get_parameter('mode').value})")
            return TransitionCallbackReturn.SUCCESS

    def on_deactivate(self, state: LifecycleState) -> TransitionCallbackReturn:
        self.stop_output()
        self.get_logger().info('deactivated: zero command published')
        return TransitionCallbackReturn.SUCCESS

    def on_cleanup(self, state: LifecycleState) -> TransitionCallbackReturn:
        with self._lock:
            self._destroy_runtime_entities()
            for pub in self._lc_pubs.values():
                self.destroy_publisher(pub)
            self._lc_pubs = {}
            self.controller = None
            self.assembler = None
            self._configured = False
            self._settings = None
            return TransitionCallbackReturn.SUCCESS

    def on_shutdown(self, state: LifecycleState) -> TransitionCallbackReturn:
        self.stop_output()
        return TransitionCallbackReturn.SUCCESS

    def on_error(self, state: LifecycleState) -> TransitionCallbackReturn:
        self.stop_output()
        return TransitionCallbackReturn.SUCCESS

    def stop_output(self, wait_ack=ZERO_ACK_TIMEOUT):
        """Stop commanding: no callback publishes a command after this returns, and when output was
        active one zero command is published and (up to ``wait_ack`` s) acknowledged by reliable
        subscribers, so it is not lost when the process exits right after. Never raises."""
        with self._lock:
            was_active, self._active = self._active, False
            self._destroy_runtime_entities()
            if was_active:
                self._publish_zero(wait_ack)

    def _create_subscriptions(self):
        sensors = self._groups['sensors']
        self._imu_sub = self.create_subscription(_msg('sensor_msgs.msg', 'Imu'), TOPICS['imu'],
                                                 self._on_imu, qos.imu_qos(), callback_group=sensors)
        self._lc_subs.append(self._imu_sub)
        if self._s('use_odometry'):
            # best effort matches reliable and best-effort odometry publishers alike
            self._lc_subs.append(self.create_subscription(_msg('nav_msgs.msg', 'Odometry'),
                                                          TOPICS['odom'], self._on_odom,
                                                          qos.sensor_qos(), callback_group=sensors))
        if self._s('use_range'):
            self._lc_subs.append(self.create_subscription(_msg('sensor_msgs.msg', 'Range'),
                                                          TOPICS['range'], self._on_range,
                                                          qos.sensor_qos(), callback_group=sensors))
        if self._s('use_scan'):
            self._lc_subs.append(self.create_subscription(_msg('sensor_msgs.msg', 'LaserScan'),
                                                          TOPICS['scan'], self._on_scan,
                                                          qos.sensor_qos(), callback_group=sensors))
        self._create_image_subscription()

    def _create_image_subscription(self):
        image_qos = qos.image_qos(self._s('image_depth'), self._image_reliability)
        events = _incompatible_qos_events(self._on_image_qos_incompatible)
        if self._s('image_transport') == 'compressed':
            msg_type, topic, decoder = (_msg('sensor_msgs.msg', 'CompressedImage'),
                                        TOPICS['compressed_image'], convert.decode_compressed_image)
        else:
            msg_type, topic, decoder = _msg('sensor_msgs.msg', 'Image'), TOPICS['image'], convert.decode_image
        self._image_sub = self.create_subscription(
            msg_type, topic, lambda m: self._on_image(m, decoder), image_qos,
            callback_group=self._groups['camera'], event_callbacks=events)
        self._lc_subs.append(self._image_sub)

    def _destroy_runtime_entities(self):
        if self._attention_thread is not None:
            self._attention_stop.set()
            self._attention_thread.join(5.0)
            self._attention_thread = None
        for sub in self._lc_subs:
            self.destroy_subscription(sub)
        for timer in self._lc_timers:
            self.destroy_timer(timer)
        self._lc_subs, self._lc_timers = [], []

    def _reset_state_buffers(self):
        self._last_frame_stamp = None
        self._rates = {k: RateMeter() for k in ('image', 'imu', 'odom', 'range', 'scan', 'cmd_vel')}
        self._dt_stats = RollingStats()
        self._imu_per_frame = RollingStats()  # IMU samples in each frame's window
        self._latency = RollingStats()      # receive -> publish (s)
        self._stage = {k: RollingStats() for k in ('decode', 'preprocess', 'policy', 'filter')}
        self._last_output = None
        self._last_reason = ''
        self._qos_problem = None      # camera publisher whose QoS cannot match ours
        self._image_sub = None
        self._imu_sub = None
        self._switch_to_best_effort = False   # auto: make the camera subscription best effort
        setting = self._settings['image_reliability'] if self._settings is not None else 'auto'
        self._image_reliability = 'reliable' if setting == 'auto' else setting
        self._attention_frame = None  # (frame, header) of the newest good frame, for ~/attention
        self._attention_error = None  # last attention failure since the last success (-> WARN)
        self._attention_skipped = None  # last frame the saliency rejected (InputError)

    # ---------------------------------------------------------------------------------- callbacks

    def _on_imu(self, msg):
        self._rates['imu'].add(time.monotonic())
        try:
            reading = convert.decode_imu(msg)
        except InputError as exc:
            self._report_error(f'imu: {exc}')
            return
        assembler = self.assembler
        if assembler is not None:
            assembler.add_imu(reading.stamp, reading.angular_velocity, reading.linear_acceleration)

    def _drain_imu(self):
        """Buffer the IMU samples already delivered to the subscription but not yet called back.

        When frames arrive faster than the node processes them, the executor's queue of pending
        callbacks grows and IMU callbacks run later and later behind the frames: the newest frame then
        looks as if the IMU had stopped (measured: 64 false IMU-timeout brakes in 3 s of a 1 kHz image
        flood). Taking them here, as the executor itself does (``handle.take_message``), makes every
        frame see every sample that has arrived. Bounded: one second of samples at 200 Hz.
        """
        sub = self._imu_sub
        for _ in range(IMU_DRAIN_MAX):
            try:
                with sub.handle:
                    taken = sub.handle.take_message(sub.msg_type, sub.raw)
            except Exception:  # noqa: BLE001 -- destroyed or shutting down: the executor will see it
                return
            if taken is None:
                return
            self._on_imu(taken[0])

    def _on_odom(self, msg):
        self._rates['odom'].add(time.monotonic())
        try:
            reading = convert.decode_odometry(msg)
        except InputError as exc:
            self._report_error(f'odom: {exc}')
            return
        self._set_reading('odom', reading.stamp, float(reading.linear[0]))

    def _on_range(self, msg):
        self._rates['range'].add(time.monotonic())
        try:
            stamp, value = convert.decode_range(msg)
        except InputError as exc:
            self._report_error(f'range: {exc}')
            return
        self._set_reading('range', stamp, value)

    def _on_scan(self, msg):
        self._rates['scan'].add(time.monotonic())
        try:
            stamp = convert.stamp_to_sec(msg.header.stamp, 'header.stamp')
            distance = forward_distance(msg.ranges, msg.angle_min, msg.angle_increment,
                                        msg.range_min, msg.range_max, self._s('scan_half_angle'),
                                        self._scan_pose)
        except InputError as exc:
            self._report_error(f'scan: {exc}')
            return
        self._set_reading('scan', stamp, distance)

    def _report_error(self, text):
        assembler = self.assembler
        if assembler is not None:
            assembler.report_error(text)

    def _set_reading(self, name, stamp, value):
        assembler = self.assembler
        if assembler is not None:
            assembler.set_reading(name, stamp, value)

    def _on_image(self, msg, decoder):
        received = time.monotonic()
        self._rates['image'].add(received)
        with self._lock:
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
            self._drain_imu()
            try:
                inputs = self.assembler.assemble(stamp)
            except InputError as exc:       # clock skew between the camera and IMU / odometry
                self._emit(ctl.reject(str(exc), received), received)
                return
            self._imu_per_frame.add(len(inputs.imu))
            if self._last_frame_stamp is not None and stamp > self._last_frame_stamp:
                self._dt_stats.add(stamp - self._last_frame_stamp)
            self._last_frame_stamp = stamp
            if inputs.error is not None:     # a sensor reading rejected since the last frame
                self._emit(ctl.reject(inputs.error, received), received)
                return
            measured = MeasuredState(speed=inputs.speed, range=inputs.range)
            out = ctl.step(frame, stamp, inputs.imu, measured, now=received)
            out.timings['decode'] = decode_s
            self._emit(out, received)
            if out.status in (OK, RESET) and 'attention' in self._lc_pubs:
                # a copy: the decoded frame may be a view of the message buffer
                self._attention_frame = (frame.copy(), msg.header)

    def _on_image_qos_incompatible(self, info):
        if self._s('image_reliability') == 'auto' and self._image_reliability == 'reliable':
            self._switch_to_best_effort = True    # done by the watchdog, outside this sub's callback
            return
        self._qos_problem = (f'a camera publisher offers QoS incompatible with image_reliability='
                             f"{self._s('image_reliability')!r} (policy {info.last_policy_kind}); "
                             "set image_reliability: best_effort (or auto)")
        self.get_logger().error(self._qos_problem, throttle_duration_sec=5.0)

    def _make_image_subscription_best_effort(self):
        self._switch_to_best_effort = False
        if self._image_sub is not None:
            self._lc_subs.remove(self._image_sub)
            self.destroy_subscription(self._image_sub)
        self._image_reliability = 'best_effort'
        self._create_image_subscription()
        self.get_logger().warning('image_reliability auto: a best-effort camera publisher appeared; '
                                  'the camera subscription is now best effort (large frames may be '
                                  'lost on one host; a reliable camera publisher avoids that)')

    def _attention_loop(self, period, stop):
        """Worker thread: one ~/attention overlay per ``period`` (steady clock) until ``stop``."""
        while not stop.wait(period):
            self._publish_attention()

    def _publish_attention(self):
        """Publish the ~/attention overlay of the newest good frame (in the attention thread: the
        saliency never runs in, or delays, the executor's callbacks). The image carries the camera
        frame's stamp and frame_id. A frame the saliency cannot use (InputError) is skipped; any other
        failure is logged (throttled) and turns /diagnostics to WARN until an image succeeds."""
        item, self._attention_frame = self._attention_frame, None
        ctl = self.controller
        pub = self._lc_pubs.get('attention')
        if item is None or ctl is None or pub is None:
            return
        frame, header = item
        try:
            from liquid_controller.policy.saliency import (attention_image, attention_overlay,
                                                           visual_backprop)
            if tuple(frame.shape[:2]) == tuple(ctl.image_size):
                overlay = attention_image(ctl.policy, frame, method='visual_backprop')
            else:  # resize_images: saliency of the network input, drawn on the camera frame
                from liquid_controller.runtime.preprocess import image_to_tensor
                x = image_to_tensor(frame, *ctl.image_size, resize=True)    # (1, 3, h, w)
                overlay = attention_overlay(frame, visual_backprop(ctl.policy, x))
            image = convert.encode_image(overlay, 0.0, frame_id=header.frame_id)
            image.header.stamp = header.stamp
            pub.publish(image)
            self._attention_error = None
        except InputError as exc:
            self._attention_skipped = str(exc)
        except Exception as exc:  # noqa: BLE001 -- a debug image must never stop the node
            self._attention_error = f'{type(exc).__name__}: {exc}'
            self.get_logger().warning(f'~/attention failed: {self._attention_error}',
                                      throttle_duration_sec=5.0)

    def _on_watchdog(self):
        with self._lock:
            if not self._active or self.controller is None:
                return
            if self._switch_to_best_effort:
                self._make_image_subscription_best_effort()
            out = self.controller.tick(time.monotonic())
            if out is not None:
                self._emit(out, None)

    # ---------------------------------------------------------------------------------- outputs

    def _twist(self, v, w, stamp_msg):
        msg = convert.encode_twist(v, w, stamp=0.0, frame_id=self._s('frame_id'),
                                   stamped=self._s('enable_stamped_cmd_vel'))
        if hasattr(msg, 'header'):
            msg.header.stamp = stamp_msg  # node clock (sim time when use_sim_time) at publish time
        return msg

    def _emit(self, out, received):
        """Publish one ControllerOutput on every output topic and update statistics."""
        stamp_msg = self.get_clock().now().to_msg()
        if self.get_parameter('mode').value == 'drive':
            self._lc_pubs['cmd_vel'].publish(self._twist(out.command[0], out.command[1], stamp_msg))
            self._rates['cmd_vel'].add(time.monotonic())
        if not out.safe or out.certificate is not None:
            self._lc_pubs['nominal'].publish(self._twist(out.nominal[0], out.nominal[1], stamp_msg))
        self._lc_pubs['safety'].publish(diagnostics.safety_status(f'{self.get_name()}: safety', out))
        if self.get_parameter('publish_neurons').value and out.neurons is not None:
            self._lc_pubs['neurons'].publish(diagnostics.neurons_message(out.neurons, self._neuron_labels))
        if 'ood' in self._lc_pubs and not math.isnan(out.ood_score):
            self._lc_pubs['ood'].publish(diagnostics.ood_message(out.ood_score))
        if received is not None:
            self._latency.add(time.monotonic() - received)
            for k in self._stage:
                if k in out.timings:
                    self._stage[k].add(out.timings[k])
        was_safe = self._last_output is not None and self._last_output.safe
        if out.safe and not was_safe:
            self.get_logger().warning(f'braking to zero: {out.status}: {out.reason}')
        elif was_safe and not out.safe:
            self.get_logger().info(f'recovered: {out.status} {out.reason}'.rstrip())
        if out.reason:
            self._last_reason = out.reason
        self._last_output = out

    def _publish_zero(self, wait_ack=0.0):
        pub = self._lc_pubs.get('cmd_vel')
        if pub is None or self.get_parameter('mode').value != 'drive':
            return
        try:
            pub.publish(self._twist(0.0, 0.0, self.get_clock().now().to_msg()))
            if wait_ack > 0:
                pub.wait_for_all_acked(Duration(seconds=wait_ack))
        except Exception as exc:  # noqa: BLE001 -- the context may be shutting down; say so
            self.get_logger().error(f'could not publish the zero command: {type(exc).__name__}: {exc}')

    def _publish_diagnostics(self):
        with self._lock:
            if self.controller is None or 'diagnostics' not in self._lc_pubs:
                return
            status = self._diagnostic_status(time.monotonic())
            self._lc_pubs['diagnostics'].publish(
                diagnostics.diagnostic_array(self.get_clock().now().to_msg(), [status]))

    def _diagnostic_status(self, now):
        """The node's DiagnosticStatus: level and message name the current cause (field and value)."""
        from diagnostic_msgs.msg import DiagnosticStatus
        ctl = self.controller
        out = self._last_output
        level, message = DiagnosticStatus.OK, 'ok'
        if out is not None and out.safe:
            level, message = DiagnosticStatus.ERROR, f'{out.status}: {out.reason}'
        elif self._qos_problem:
            level, message = DiagnosticStatus.ERROR, self._qos_problem
        elif self._untrained:
            level, message = DiagnosticStatus.WARN, 'running an UNTRAINED model (random weights)'
        elif out is not None and out.ood_score > 1.0:
            level, message = DiagnosticStatus.WARN, (
                f'out of distribution: OOD score {out.ood_score:.2f} > 1 for {ctl.ood.seconds_over:.2f} s '
                f"(ood_action {ctl.config.ood_action})")
        elif self._attention_error:
            level, message = DiagnosticStatus.WARN, f'~/attention failed: {self._attention_error}'
        values = {'model': self._model_name, 'untrained': self._untrained,
                  'camera_reliability': self._image_reliability,
                  'mode': self.get_parameter('mode').value, 'enabled': ctl.enabled,
                  'status': out.status if out else 'no output yet',
                  'cause': out.reason if out is not None and out.safe else '',
                  'last_reason': self._last_reason, 'input_age_s': ctl.input_age(now),
                  'intervention_rate': ctl.intervention_rate(),
                  'ood_available': ctl.ood is not None,
                  'ood_score': out.ood_score if out is not None else float('nan')}
        if self._qos_problem:
            values['camera_qos'] = self._qos_problem
        if self._attention_error:
            values['attention_error'] = self._attention_error
        if self._attention_skipped:
            values['attention_skipped'] = self._attention_skipped
        for k, meter in self._rates.items():
            values[f'rate_hz.{k}'] = meter.rate(now)
        values['imu_samples_per_frame.mean'] = self._imu_per_frame.summary()['mean']
        values.update({f'dt.{k}': v for k, v in self._dt_stats.summary().items()})
        lat = self._latency.summary()
        values.update({'latency_ms.p50': lat['p50'] * 1e3, 'latency_ms.p99': lat['p99'] * 1e3,
                       'latency_ms.max': lat['max'] * 1e3})
        for k, st in self._stage.items():
            values[f'stage_ms.{k}.p50'] = st.summary()['p50'] * 1e3
        values.update({f'count.{k}': v for k, v in ctl.counters.items()})
        values.update({f'count.{k}': v for k, v in self.assembler.counters.items()})
        values.update({f'status_count.{k}': v for k, v in ctl.status_counts.items()})
        return DiagnosticStatus(level=level, name=f'{self.get_name()}: controller',
                                message=message[:250], hardware_id='',
                                values=diagnostics.key_values(values))

    # ---------------------------------------------------------------------------------- services

    def _on_reset(self, request, response):
        with self._lock:
            if self.controller is None:
                response.success, response.message = False, 'not configured'
                return response
            self.controller.reset('reset_state service')
            self.assembler.reset()
            self._last_frame_stamp = None
        response.success, response.message = True, 'hidden state reset'
        return response

    def _on_enable(self, request, response):
        with self._lock:
            if self.controller is None:
                response.success, response.message = False, 'not configured'
                return response
            self.controller.set_enabled(bool(request.data))
        response.success = True
        response.message = 'output enabled' if request.data else 'output disabled: braking to zero'
        return response


def _descriptor(p):
    """ParameterDescriptor of a runtime.settings.Param: description, range, allowed choices."""
    desc = ParameterDescriptor(description=p.description)
    if p.range is not None and isinstance(p.default, float):
        desc.floating_point_range = [FloatingPointRange(from_value=float(p.range[0]),
                                                        to_value=float(p.range[1]), step=0.0)]
    elif p.range is not None:
        step = p.range[2] if len(p.range) > 2 else 1
        desc.integer_range = [IntegerRange(from_value=int(p.range[0]), to_value=int(p.range[1]),
                                           step=int(step))]
    if p.choices is not None:
        desc.additional_constraints = 'one of: ' + ', '.join(p.choices)
    return desc


def _incompatible_qos_events(callback):
    from rclpy.event_handler import SubscriptionEventCallbacks
    return SubscriptionEventCallbacks(incompatible_qos=callback)


def _msg(module, name):
    import importlib
    return getattr(importlib.import_module(module), name)


def _srv(name):
    return _msg('std_srvs.srv', name)


def _executor():
    """rclpy's EventsExecutor (measured fastest, see the module docstring), else single-threaded."""
    try:
        from rclpy.experimental import EventsExecutor
    except ImportError:
        return SingleThreadedExecutor()
    return EventsExecutor()


def main(args=None):
    """Entry point of the ``controller_node`` executable.

    SIGINT and SIGTERM set a flag that the spin loop checks at least every 0.1 s, in every lifecycle
    state (a blocking spin with no timers would never look at it). The node then stops output (one zero
    command, acknowledged by reliable subscribers) while the context is still valid, and shuts down.
    """
    from rclpy.signals import SignalHandlerOptions
    rclpy.init(args=args, signal_handler_options=SignalHandlerOptions.NO)
    stop = threading.Event()

    def on_signal(signum, frame):
        stop.set()
    signal.signal(signal.SIGINT, on_signal)
    signal.signal(signal.SIGTERM, on_signal)
    node = ControllerNode()
    executor = _executor()
    executor.add_node(node)
    try:
        while not stop.is_set() and rclpy.ok():
            executor.spin_once(timeout_sec=0.1)
    except (KeyboardInterrupt, ExternalShutdownException):
        pass
    finally:
        node.stop_output()
        executor.shutdown(timeout_sec=1.0)
        node.destroy_node()
        rclpy.try_shutdown()
    # Everything is stopped, the zero is acknowledged and ROS is shut down. The interpreter's own
    # teardown (torch and DDS libraries) takes about 1.3 s more here, which a launch system counts
    # against its SIGINT -> SIGKILL grace period: end the process now.
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(0)


if __name__ == '__main__':
    main()
