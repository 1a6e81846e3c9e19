"""The streaming Controller: one call per camera frame, ROS-free.

It owns the policy (rebuilt from a model file), the liquid network's hidden state and the safety filter,
and turns (frame, frame stamp, IMU window, measured state) into a filtered velocity command. The live
node, bag replay and closed-loop evaluation all drive this class, so they behave identically.

Time handling (the liquid cells are continuous-time, so dt is an input, not an assumption):
- dt = difference of consecutive *frame header stamps* (not arrival times): jitter and dropped frames
  are absorbed by the network's dynamics. dt is clipped to ``max_dt``.
- Stamps going backwards (bag loop, sim reset, clock jump) or a gap above ``reset_gap`` reset the
  hidden state; the step after a reset uses the model's nominal dt. A repeated stamp is dropped (the
  previous command is repeated); while the controller is already braking, a repeated stamp keeps it
  braking in the same state, so a camera stuck on one stamp is one steady state, not a flapping one.

Safety:
- The nominal command is rate limited (``max_linear_accel``, ``max_angular_accel``) *before* the filter,
  so the limiter can never undo an intervention of the filter (clipping after the QP would break its
  guarantee).
- Bad input (wrong image size, NaN IMU, missing IMU, non-finite policy output, ...) never raises: the
  step returns a braking command and a reason; the next good frame recovers.
- Watchdog: :meth:`Controller.tick` is called on a steady clock; when no good frame has been processed
  for ``input_timeout`` seconds it brakes to a stop at the filter's deceleration limits, then commands
  exactly zero. Braking is integrated over steady-clock time since the last output, so it never exceeds
  the limits however often step/tick are called.

Backends: the policy step runs through runtime/policy_backend.py's numpy interface, so this module
imports no torch; with an onnx model (``backend: onnx``) the whole path preprocessing -> policy ->
safety filter -> command is torch-free.
"""
from __future__ import annotations

import logging
import math
import time
from dataclasses import dataclass, field

import numpy as np

from liquid_controller.config_base import config_from_dict, config_to_dict
from liquid_controller.errors import InputError
from liquid_controller.runtime import preprocess
from liquid_controller.runtime.preprocess import ImuWindow
from liquid_controller.validation import check_bool, check_choice, check_int, check_number

# status values of ControllerOutput
OK = 'ok'                # policy command, filtered
RESET = 'reset'          # policy command after a hidden-state reset (reason says why)
DROPPED = 'dropped'      # repeated stamp: frame ignored, previous command repeated
BAD_INPUT = 'bad_input'  # braking because this frame's data was unusable
STALE = 'stale'          # watchdog: braking because inputs are too old
STOPPED = 'stopped'      # braking finished: exact zero command
DISABLED = 'disabled'    # output disabled (service ~/enable false): braking then zero
OOD_BRAKE = 'ood'        # ood_action brake: the scene stayed out of distribution; braking then zero
SAFE_STATUSES = (BAD_INPUT, STALE, STOPPED, DISABLED, OOD_BRAKE)
OOD_ACTIONS = ('none', 'slow', 'brake')

_log = logging.getLogger(__name__)


@dataclass
class ControllerConfig:
    """Streaming-controller settings (all times in seconds). Validated on construction."""
    max_dt: float = 0.2              # dt fed to the network is clipped to this
    reset_gap: float = 0.5           # frame-stamp gap above this resets the hidden state
    input_timeout: float = 0.5       # watchdog: no good frame for this long (steady clock) -> brake
    imu_timeout: float = 0.25        # newest IMU sample older than this (by stamps) -> bad input
    require_imu: bool = True         # False: an absent IMU is tolerated (zero features)
    max_linear_accel: float = 2.0    # m/s^2, rate limit of the nominal command
    max_angular_accel: float = 8.0   # rad/s^2, rate limit of the nominal command
    brake_decel: float = 0.0         # m/s^2 when braking; 0 = the safety filter's limit
    brake_angular_decel: float = 0.0  # rad/s^2 when braking; 0 = max_angular_accel
    stop_speed: float = 0.01         # |v| and |w| below this while braking -> exact zero
    resize_images: bool = False      # True: area-resample frames of another size to the model's
    use_predicted_lane: bool = True  # feed the policy's lane offset / heading error to the filter
    num_threads: int = 1             # torch / ONNX Runtime intra-op threads (1: fastest at batch 1)
    ood_action: str = 'none'         # OOD monitor above threshold for ood_hold s: none | slow | brake
    ood_hold: float = 1.0            # s the OOD score must stay above 1 before ood_action acts
    ood_speed: float = 0.3           # m/s: the speed cap of ood_action slow

    def __post_init__(self):
        for name in ('max_dt', 'reset_gap', 'input_timeout', 'imu_timeout', 'max_linear_accel',
                     'max_angular_accel'):
            setattr(self, name, check_number(name, getattr(self, name), 0.0, low_open=True))
        for name in ('brake_decel', 'brake_angular_decel', 'stop_speed', 'ood_hold', 'ood_speed'):
            setattr(self, name, check_number(name, getattr(self, name), 0.0))
        if self.max_dt > self.reset_gap:
            raise InputError('max_dt', self.max_dt, f'must not exceed reset_gap={self.reset_gap}')
        self.num_threads = check_int('num_threads', self.num_threads, 1)
        for name in ('require_imu', 'resize_images', 'use_predicted_lane'):
            check_bool(name, getattr(self, name))
        check_choice('ood_action', self.ood_action, OOD_ACTIONS)

    def to_dict(self):
        return config_to_dict(self)

    @classmethod
    def from_dict(cls, d):
        return config_from_dict(cls, d, 'controller config')


@dataclass
class MeasuredState:
    """Optional measurements: speed (m/s, from odometry) and forward range (m, from a range sensor)."""
    speed: float | None = None
    range: float | None = None


@dataclass
class ControllerOutput:
    """What one step/tick produced. Commands are (v m/s, w rad/s) float64 arrays."""
    command: np.ndarray                  # (2,) what to send to the robot (filtered / braking)
    nominal: np.ndarray                  # (2,) the policy's reference command (before rate limit)
    status: str = OK
    reason: str = ''
    certificate: object = None           # safety Certificate, None when the filter did not run
    neurons: np.ndarray | None = None    # (S,) hidden state after the step (ncps order)
    features: np.ndarray | None = None   # (F,) this step's perception features (conv head output, the
                                         # cnn's latent); None when no policy step ran for this output
                                         # or the backend hands none out (an older ONNX export)
    aux: np.ndarray | None = None        # (2,) predicted lane offset m, heading error rad
    barrier_params: np.ndarray | None = None  # (K,)
    imu_features: np.ndarray | None = None    # (imu_size,) the normalised IMU features fed to the network
    dt: float = 0.0                      # dt fed to the network
    stamp: float = float('nan')          # frame stamp this output belongs to
    timings: dict = field(default_factory=dict)  # seconds per stage: preprocess, policy, filter, total
    intervened: bool = False             # the filter changed the (rate-limited) nominal command
    ood_score: float = float('nan')      # smoothed OOD score / threshold (> 1: out of distribution);
                                         # nan when the model has no OOD statistics or no step ran

    @property
    def safe(self):
        """True when this output is a safety action (braking / zero), not a policy command."""
        return self.status in SAFE_STATUSES

    def certificate_dict(self):
        """The certificate as plain data (empty dict when the filter did not run)."""
        if self.certificate is None:
            return {}
        return self.certificate.to_dict()


class Controller:
    """Streaming controller around a loaded model and a safety filter (see module docstring).

    ``model``: a :class:`~liquid_controller.runtime.model_file.LoadedModel` of either backend
    (``runtime.policy_backend.load_runtime_model``).
    ``safety_config``: a :class:`liquid_controller.safety.SafetyConfig` (None: defaults matching the
    model's limits). ``clock``: steady-clock function used when ``now`` is not passed.
    """

    def __init__(self, model, config=None, safety_config=None, clock=time.monotonic):
        from liquid_controller.safety.config import SafetyConfig
        from liquid_controller.safety.filter import SafetyFilter
        from liquid_controller.runtime.policy_backend import policy_stepper
        self.model = model
        self.policy = model.policy
        self.card = model.card
        self.config = config or ControllerConfig()
        # numpy in, numpy out; torch (backend 'torch') or ONNX Runtime (backend 'onnx') inside
        self._stepper = policy_stepper(model, self.config.num_threads)
        self.backend = self._stepper.backend
        self.safety_config = safety_config if safety_config is not None else SafetyConfig()
        self.filter = SafetyFilter(self.safety_config)
        self.clock = clock
        self.image_size = (self.card.input.image_height, self.card.input.image_width)
        self._imu_mean = np.asarray(self.card.input.imu_mean, dtype=np.float64)
        self._imu_std = np.asarray(self.card.input.imu_std, dtype=np.float64)
        self.nominal_dt = float(self.card.nominal_dt)
        self.neuron_groups = self._neuron_groups()
        self.ood_unavailable = ''      # why the card's OOD statistics cannot be scored here ('' = they can)
        self.ood = self._ood_monitor()
        self._brake_decel = float(self.config.brake_decel or _safety_decel(self.safety_config))
        self._brake_ang = float(self.config.brake_angular_decel or self.config.max_angular_accel)
        # the one count of what happened (the node's /diagnostics report these, nothing of its own)
        self.counters = {'frames': 0, 'ok': 0, 'resets': 0, 'bad_input': 0, 'stale_ticks': 0,
                         'dropped': 0, 'interventions': 0, 'ood_frames': 0, 'ood_actions': 0}
        self.status_counts = {}        # outputs per status
        self.reset('initial')
        self.enabled = True
        self._last_status = None       # status of the last output
        self._last_rejected = None     # why the last frame was rejected; cleared by a good frame
        self._last_good = None        # steady time of the last good frame
        self._last_output_time = None  # steady time of the last command output
        self.warm_up()

    # ------------------------------------------------------------------------------------ lifecycle

    def _neuron_groups(self):
        try:
            groups = self._stepper.neuron_groups()
        except Exception:
            return {}
        return {str(k): [int(i) for i in np.asarray(v).ravel()] for k, v in dict(groups).items()}

    def _ood_monitor(self):
        """The OOD monitor from the card's statistics, for either source: 'neurons' scores the
        hidden state after each step, 'features' the step's perception features. None when the card
        has none, or when this backend cannot hand out what they model (an ONNX export made before
        the graph had its ``features`` output): the score is then reported as nan (unavailable), the
        model still drives, and ``ood_unavailable`` says why (also logged as a warning), so that an
        ``ood_action`` that can never act is not silent."""
        from liquid_controller.runtime.ood import OodMonitor, OodStatistics
        if not self.card.ood:
            return None
        stats = OodStatistics.from_dict(self.card.ood)
        if stats.source == 'features' and not getattr(self._stepper, 'provides_features', False):
            self.ood_unavailable = (
                f'model {self.card.name!r}: the OOD statistics model the perception features, but '
                f'this {self.backend} backend hands none out (an ONNX export made before the graph '
                f'had its features output): OOD score unavailable, ood_action '
                f'{self.config.ood_action!r} cannot act; export the model again')
            _log.warning(self.ood_unavailable)
            return None
        return OodMonitor(stats)

    def reset(self, reason='requested'):
        """Reset the hidden state and the time base (the next frame uses the nominal dt)."""
        self._state = self._stepper.initial_state()        # (1, S) float32
        if getattr(self, 'ood', None) is not None:
            self.ood.reset()
        self._last_stamp = None
        self._last_imu_stamp = None
        self._imu_feat = np.zeros(self.card.input.imu_size, dtype=np.float32)
        self._pending_reset = reason
        self._command = np.zeros(2)
        self.counters['resets'] += reason not in ('initial', 'activated')

    def start(self, now=None):
        """Begin a fresh output session (node activation): watchdog armed from ``now``."""
        now = self.clock() if now is None else float(now)
        self.reset('activated')
        self._last_good = now
        self._last_output_time = now
        self._last_status = None
        self._last_rejected = None

    def warm_up(self, steps=3):
        """Run a few full steps (preprocess, policy, filter) on a blank frame so that allocations
        and lazy initialisation happen before the first real frame, check the model against the
        safety configuration, then reset. Raises ValueError when they disagree."""
        n = self.card.input.imu_size
        if n != 6:
            raise ValueError(f'imu_size={n}: the runtime computes 6 IMU features (gyro, accel means)')
        want = int(self.safety_config.num_barrier_params)
        have = int(self.policy.config.num_barrier_params)
        if have != want:
            raise ValueError(f'model outputs {have} barrier parameters, safety config '
                             f'num_barrier_params={want}')
        frame = np.zeros(self.image_size + (3,), np.uint8)
        monitor, self.ood = self.ood, None      # a blank frame is out of distribution: do not act on it
        for i in range(steps):
            t = i * self.nominal_dt
            window = ImuWindow(np.array([t]), np.zeros((1, 3)), np.array([[0.0, 0.0, 9.81]]))
            out = self.step(frame, t, window, MeasuredState(speed=0.0), now=0.0)
            if out.safe:
                raise ValueError(f'warm-up step failed: {out.status}: {out.reason}')
        self.ood = monitor
        self.reset('initial')
        self.filter.reset()
        self.counters = {k: 0 for k in self.counters}
        self.status_counts = {}
        self._last_good = None
        self._last_output_time = None
        self._last_status = None
        self._last_rejected = None

    def set_enabled(self, enabled):
        """Enable or disable command output (disabled: brake then zero; policy keeps running)."""
        self.enabled = bool(enabled)

    # ----------------------------------------------------------------------------------- main step

    def step(self, frame, frame_stamp, imu=None, measured=None, now=None):
        """Process one camera frame. Never raises on bad data: returns a safe command and a reason.

        frame: (H, W, 3) uint8 RGB; frame_stamp: float s (header stamp); imu: ImuWindow of the samples
        since the previous frame (or None); measured: MeasuredState or None; now: steady-clock time.
        """
        t0 = time.perf_counter()
        now = self.clock() if now is None else float(now)
        self.counters['frames'] += 1
        timings = {}
        try:
            stamp = _finite_float(frame_stamp, 'frame_stamp')
        except InputError as exc:
            return self._brake(BAD_INPUT, str(exc), now, t0)
        # --- time base: dt from header stamps
        reset_reason = None
        if self._last_stamp is None:
            dt = self.nominal_dt
            reset_reason = self._pending_reset
        else:
            gap = stamp - self._last_stamp
            if gap == 0.0:
                self.counters['dropped'] += 1
                return self._repeat(stamp, now, t0)
            if gap < 0.0:
                reset_reason = f'stamp went backwards by {-gap:.3f} s'
            elif gap > self.config.reset_gap:
                reset_reason = f'gap of {gap:.3f} s between frames > reset_gap {self.config.reset_gap}'
            dt = self.nominal_dt if reset_reason else min(gap, self.config.max_dt)
        # --- preprocess (validates)
        try:
            image = preprocess.image_to_array(frame, *self.image_size, resize=self.config.resize_images)
            imu_feat, yaw_rate, lat_acc = self._imu_features(imu, stamp)
            measured = measured or MeasuredState()
            speed = _optional_finite(measured.speed, 'measured.speed')
            rng = _optional_range(measured.range)
        except InputError as exc:
            return self._brake(BAD_INPUT, str(exc), now, t0)
        t1 = time.perf_counter()
        timings['preprocess'] = t1 - t0
        if reset_reason:
            self._state = self._stepper.initial_state()
            if self._last_stamp is not None:
                self.counters['resets'] += 1
        # --- policy (validated inputs cannot make it raise; the guard keeps step() total anyway)
        try:
            out = self._policy_step(image, imu_feat, dt)
        except Exception as exc:  # noqa: BLE001 - a control step must never raise
            self._last_stamp = None
            self._pending_reset = f'policy error: {type(exc).__name__}'
            return self._brake(BAD_INPUT, f'policy error: {exc}', now, t0)
        t2 = time.perf_counter()
        timings['policy'] = t2 - t1
        new_state = out.state                                                  # (1, S) float32
        nominal = out.command.astype(np.float64)                               # (2,)
        aux = out.aux.astype(np.float64)                                       # (2,)
        bp = out.barrier_params.astype(np.float64)                             # (K,)
        if not (np.isfinite(nominal).all() and np.isfinite(aux).all() and np.isfinite(bp).all()
                and np.isfinite(new_state).all()):
            # A network gone numerically wrong must not keep its state: reset and brake.
            self._state = self._stepper.initial_state()
            self._last_stamp = None
            self._pending_reset = 'non-finite policy output'
            return self._brake(BAD_INPUT, 'policy produced a non-finite output; state reset', now, t0)
        self._state = new_state
        self._last_stamp = stamp
        self._pending_reset = None
        self._last_good = now
        self._last_rejected = None
        features = None if out.features is None else np.array(out.features, np.float32)  # (F,)
        ood_score, ood_act = self._ood_update(new_state, features, stamp)
        if ood_act == 'brake':
            return self._brake(OOD_BRAKE, f'out of distribution: OOD score {ood_score:.2f} above 1 for '
                                          f'{self.ood.seconds_over:.2f} s (ood_action brake)', now, t0,
                               stamp=stamp, nominal=nominal, out=(None, aux, bp, dt), ood_score=ood_score,
                               features=features)
        if ood_act == 'slow':   # cap the reference speed; the rate limit and the filter follow
            nominal = nominal.copy()
            nominal[0] = min(nominal[0], self.config.ood_speed)
        # --- rate limit the nominal (before the filter), then filter
        prev = self._command
        limits = np.array([self.config.max_linear_accel, self.config.max_angular_accel]) * dt
        limited = prev + np.clip(nominal - prev, -limits, limits)
        v_meas = speed if speed is not None else float(prev[0])
        w_meas = yaw_rate if yaw_rate is not None else float(prev[1])
        a_lat = lat_acc if lat_acc is not None else v_meas * w_meas
        state = self._robot_state(v_meas, w_meas, a_lat, rng, aux)
        safe, cert = self.filter.filter(limited, state, bp)
        safe = np.asarray(safe, dtype=np.float64).reshape(2)
        t3 = time.perf_counter()
        timings['filter'] = t3 - t2
        intervened = bool(np.abs(safe - limited).max() > 1e-6)
        self.counters['interventions'] += intervened
        if not self.enabled:
            return self._brake(DISABLED, 'output disabled (~/enable false)', now, t0, stamp=stamp,
                               nominal=nominal, out=(cert, aux, bp, dt), ood_score=ood_score,
                               features=features)
        self.counters['ok'] += 1
        self._command = safe
        self._last_output_time = now
        self._record_status(RESET if reset_reason else OK)
        timings['total'] = time.perf_counter() - t0
        return ControllerOutput(command=safe.copy(), nominal=nominal, status=RESET if reset_reason else OK,
                                reason=reset_reason or '', certificate=cert, neurons=self.neurons(),
                                features=features, aux=aux, barrier_params=bp,
                                imu_features=np.array(imu_feat, np.float32),
                                dt=dt, stamp=stamp, timings=timings, intervened=intervened,
                                ood_score=ood_score)

    def _ood_update(self, state, features, stamp):
        """Score this step's monitored vector (the new state (1, S) for source 'neurons', the
        features (F,) for 'features'); returns (score or nan, the ood_action to apply now or None)."""
        if self.ood is None:
            return float('nan'), None
        vector = features if self.ood.stats.source == 'features' else state
        if vector is None:    # a backend that promised features gave none: unscored, never raise
            return float('nan'), None
        score = self.ood.update(vector.reshape(-1), stamp)
        self.counters['ood_frames'] += score > 1.0
        if self.config.ood_action == 'none' or score <= 1.0 or self.ood.seconds_over < self.config.ood_hold:
            return score, None
        self.counters['ood_actions'] += 1
        return score, self.config.ood_action

    def reject(self, reason, now=None):
        """An upstream decoder rejected this frame's data (e.g. a malformed Image message): brake and
        report ``reason``. Never raises."""
        now = self.clock() if now is None else float(now)
        self.counters['frames'] += 1
        return self._brake(BAD_INPUT, str(reason), now, time.perf_counter())

    def tick(self, now=None):
        """Watchdog, called periodically on a steady clock. Returns a braking/zero ControllerOutput when
        inputs are stale (or output is disabled), None while the frames are fresh."""
        now = self.clock() if now is None else float(now)
        if self._last_good is None:
            self._last_good = now
        age = now - self._last_good
        if age <= self.config.input_timeout and self.enabled:
            return None
        if self._last_output_time is not None and now - self._last_output_time < 1e-4:
            return None  # step() just produced an output at this instant
        self.counters['stale_ticks'] += 1
        if not self.enabled:
            return self._brake(DISABLED, 'output disabled (~/enable false)', now, time.perf_counter())
        return self._brake(STALE, self._stale_reason(age), now, time.perf_counter())

    def _stale_reason(self, age):
        """Why the watchdog brakes; names the last rejected input while that is still the cause."""
        reason = f'no valid camera frame for {age:.3f} s (timeout {self.config.input_timeout} s)'
        if self._last_rejected:
            reason += f'; last rejected: {self._last_rejected}'
        return reason

    def input_age(self, now=None):
        """Seconds (steady clock) since the last good frame; inf before any."""
        now = self.clock() if now is None else float(now)
        return math.inf if self._last_good is None else now - self._last_good

    def neurons(self):
        """Hidden state after the last step as float32 (S,) (ncps order: motor neurons first)."""
        return self._state.reshape(-1).astype(np.float32)

    @property
    def command(self):
        """The last command output (v, w)."""
        return self._command.copy()

    # ------------------------------------------------------------------------------------ internals

    def _policy_step(self, image, imu_feat, dt):
        """The backend's step from the current state: image (1, 3, H, W), imu (6,), dt s."""
        return self._stepper.step(image, imu_feat, dt, self._state)

    def _imu_features(self, window, stamp):
        """Features for this frame; an empty window holds the previous features unless the IMU is
        older than imu_timeout. Returns (features (6,), measured yaw rate, lateral acceleration; the
        last two None when the window is empty)."""
        stamps, gyro, accel = preprocess.validate_imu_window(window)
        if stamps.shape[0]:
            feat = preprocess.imu_features(window, self._imu_mean, self._imu_std)
            self._imu_feat = feat
            self._last_imu_stamp = float(stamps.max())
            return feat, float(gyro[:, 2].mean()), float(accel[:, 1].mean())
        if not self.config.require_imu:
            return self._imu_feat, None, None
        if self._last_imu_stamp is None or stamp - self._last_imu_stamp > self.config.imu_timeout:
            last = 'never' if self._last_imu_stamp is None else f'{stamp - self._last_imu_stamp:.3f} s ago'
            raise InputError('imu', last, f'no IMU sample within imu_timeout={self.config.imu_timeout} s')
        return self._imu_feat, None, None

    def _robot_state(self, speed, yaw_rate, lateral_accel, rng, aux):
        from liquid_controller.safety.config import RobotState
        kwargs = dict(speed=float(speed), yaw_rate=float(yaw_rate),
                      lateral_accel=float(lateral_accel), obstacle_distance=rng)
        if self.config.use_predicted_lane:
            kwargs.update(lane_offset=float(aux[0]), heading_error=float(aux[1]))
        return RobotState(**kwargs)

    def _brake(self, status, reason, now, t0, stamp=float('nan'), nominal=None, out=None,
               new_rejection=True, ood_score=float('nan'), features=None):
        """Decelerate the last command toward zero at the braking limits, integrated over the steady
        time since the last output (so call frequency does not change the deceleration).
        ``new_rejection`` False: a BAD_INPUT that continues the previous rejection (not counted again).
        ``features``: the perception features when a policy step ran for this output."""
        if status == BAD_INPUT:
            self.counters['bad_input'] += new_rejection
            self._last_rejected = reason
        last_t = self._last_output_time if self._last_output_time is not None else now
        elapsed = min(max(now - last_t, 0.0), self.config.max_dt)
        v, w = self._command
        v = math.copysign(max(abs(v) - self._brake_decel * elapsed, 0.0), v)
        w = math.copysign(max(abs(w) - self._brake_ang * elapsed, 0.0), w)
        if abs(v) < self.config.stop_speed and abs(w) < self.config.stop_speed:
            v, w = 0.0, 0.0
        cmd = np.array([v, w], dtype=np.float64)
        self._command = cmd
        self.filter.record_command(cmd)   # the filter's fallback must brake from what was sent last
        self._last_output_time = now
        if cmd[0] == 0.0 and cmd[1] == 0.0 and status in (STALE, BAD_INPUT):
            status_out = STOPPED if status == STALE else BAD_INPUT
        else:
            status_out = status
        cert, aux, bp, dt = out if out is not None else (None, None, None, 0.0)
        self._record_status(status_out)
        return ControllerOutput(command=cmd.copy(), nominal=nominal if nominal is not None else np.zeros(2),
                                status=status_out, reason=reason, certificate=cert,
                                neurons=self.neurons(), features=features, aux=aux, barrier_params=bp,
                                dt=dt, stamp=stamp, timings={'total': time.perf_counter() - t0},
                                ood_score=ood_score)

    def _record_status(self, status):
        self._last_status = status
        self.status_counts[status] = self.status_counts.get(status, 0) + 1

    def intervention_rate(self):
        """Share of the policy steps whose command the safety filter changed (0 before any)."""
        return self.counters['interventions'] / self.counters['ok'] if self.counters['ok'] else 0.0

    def _repeat(self, stamp, now, t0):
        """A frame with the previous frame's stamp: repeat the last command, or keep braking."""
        if self._last_status in SAFE_STATUSES:
            # Already braking: a repeated stamp is no recovery. Stay in the same safe state (a
            # finished stop reads as the watchdog's) so ~/safety and the logs do not flap.
            if self._last_status == DISABLED:
                return self._brake(DISABLED, 'output disabled (~/enable false)', now, t0, stamp=stamp)
            if self._last_status == BAD_INPUT and self._last_rejected:
                return self._brake(BAD_INPUT, self._last_rejected, now, t0, stamp=stamp,
                                   new_rejection=False)
            reason = self._stale_reason(self.input_age(now)) + '; frame stamp repeated'
            return self._brake(STALE, reason, now, t0, stamp=stamp)
        self._record_status(DROPPED)
        return ControllerOutput(command=self._command.copy(), nominal=np.zeros(2), status=DROPPED,
                                reason='repeated frame stamp: frame ignored', neurons=self.neurons(),
                                stamp=stamp, timings={'total': time.perf_counter() - t0})


def _finite_float(value, name):
    try:
        f = float(value)
    except (TypeError, ValueError):
        raise InputError(name, value, 'expected a number') from None
    if not math.isfinite(f):
        raise InputError(name, value, 'must be finite')
    return f


def _optional_finite(value, name):
    return None if value is None else _finite_float(value, name)


def _optional_range(value):
    """Range reading: None/inf = nothing detected (None to the filter); NaN or negative is bad input."""
    if value is None:
        return None
    try:
        r = float(value)
    except (TypeError, ValueError):
        raise InputError('measured.range', value, 'expected a number') from None
    if math.isnan(r) or r < 0:
        raise InputError('measured.range', value, 'must be >= 0 (inf = nothing in range)')
    return None if math.isinf(r) else r


def _safety_decel(safety_config):
    """The braking deceleration the safety filter allows (m/s^2)."""
    return float(safety_config.decel_max)
