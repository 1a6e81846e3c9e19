"""ROS-free logic of the simulator bridge node: command watchdog, added latency, real-time pacing.

Kept out of :mod:`liquid_controller.ros.sim_node` so it is testable without DDS and the node stays a
thin adapter. All times are simulation seconds except in :class:`Pacer` (wall clock, monotonic).
"""
import collections
import math
import threading
import time

from liquid_controller.errors import InputError

# Labels of the ground-truth vector (sim_node's ~/ground_truth, the recorder's /sim/ground_truth).
GROUND_TRUTH_FIELDS = ('lateral_offset', 'heading_error', 'progress_laps', 'speed', 'in_lane',
                       'collision', 'x', 'y', 'yaw')


def ground_truth_vector(truth):
    """GroundTruth -> floats in GROUND_TRUTH_FIELDS order (booleans as 1.0 / 0.0)."""
    return [float(getattr(truth, name)) for name in GROUND_TRUTH_FIELDS]


def camera_intrinsics(width, height, fovy_deg):
    """Pinhole intrinsics (fx, fy, cx, cy) of a MuJoCo camera: vertical field of view, square pixels,
    optical axis through the image centre; ROS convention (pixel centres at integer coordinates)."""
    fy = 0.5 * height / math.tan(math.radians(fovy_deg) / 2.0)
    return fy, fy, (width - 1) / 2.0, (height - 1) / 2.0


def _seconds(value, name, low=0.0, high=math.inf):
    try:
        value = float(value)
    except (TypeError, ValueError):
        raise InputError(name, value, 'expected seconds') from None
    if not (math.isfinite(value) and low <= value <= high):
        raise InputError(name, value, f'must be finite and in [{low}, {high}]')
    return value


class CommandGate:
    """The command the simulated rover executes, given the commands received so far.

    - A command received at sim time ``t`` takes effect at ``t + latency`` (actuation delay).
    - When the newest command reached the rover (receipt + latency) more than ``timeout`` ago (sim
      time), the rover gets (0, 0): like diff_drive_controller's cmd_vel_timeout, silence means stop.
      The watchdog sits on the rover side of the delay, as it would on a real robot.
    Thread-safe: subscription callbacks call :meth:`receive`, the stepping loop calls :meth:`command`.
    """

    def __init__(self, timeout=0.5, latency=0.0):
        self.timeout = _seconds(timeout, 'cmd_vel_timeout', 1e-3, 3600.0)
        self.latency = _seconds(latency, 'command_latency', 0.0, 10.0)
        self._lock = threading.Lock()
        self._pending = collections.deque()  # (effective_time, v, w), effective_time increasing
        self._active = (0.0, 0.0)
        self._last_arrival = None  # sim time the newest command reached the rover (receipt + latency)
        self.received = 0
        self.rejected = 0

    def receive(self, v, w, now):
        """Record a command (v m/s, w rad/s) received at sim time ``now``. Non-finite -> rejected."""
        v, w, now = float(v), float(w), float(now)
        if not (math.isfinite(v) and math.isfinite(w)):
            with self._lock:
                self.rejected += 1
            raise InputError('cmd_vel', (v, w), 'command must be finite')
        with self._lock:
            self.received += 1
            self._pending.append((now + self.latency, v, w))

    def command(self, now):
        """The (v, w) to apply at sim time ``now``."""
        with self._lock:
            self._advance(now)
            if self._stale(now):
                return (0.0, 0.0)
            return self._active

    def _advance(self, now):
        """Deliver the commands whose latency has elapsed by ``now``."""
        while self._pending and self._pending[0][0] <= now + 1e-12:
            self._last_arrival, v, w = self._pending.popleft()
            self._active = (v, w)

    def _stale(self, now):
        return self._last_arrival is None or now - self._last_arrival > self.timeout + 1e-12

    def stale(self, now):
        """True when no command has reached the rover within ``timeout`` before ``now``."""
        with self._lock:
            self._advance(now)
            return self._stale(now)

    def clear(self):
        """Forget every command (after a world reset)."""
        with self._lock:
            self._pending.clear()
            self._active = (0.0, 0.0)
            self._last_arrival = None


class Pacer:
    """Paces simulation steps against the wall clock.

    ``real_time_factor`` 1.0 = real time, 2.0 = twice as fast, 0 = as fast as possible. When the
    simulation falls behind by more than one step it does not burst to catch up: the schedule restarts.
    """

    def __init__(self, sim_period, real_time_factor=1.0, clock=time.monotonic, sleep=time.sleep):
        self.sim_period = _seconds(sim_period, 'sim_period', 1e-6, 10.0)
        self.real_time_factor = _seconds(real_time_factor, 'real_time_factor', 0.0, 1000.0)
        self._clock = clock
        self._sleep = sleep
        self._next = None
        self.late_steps = 0

    def wait(self, stop_event=None):
        """Block until the next step is due (returns at once when real_time_factor is 0)."""
        if self.real_time_factor == 0.0:
            return
        wall_period = self.sim_period / self.real_time_factor
        now = self._clock()
        if self._next is None:
            self._next = now
        delay = self._next - now
        if delay > 0:
            if stop_event is not None:
                stop_event.wait(delay)
            else:
                self._sleep(delay)
            self._next += wall_period
        else:
            if -delay > wall_period:
                self.late_steps += 1
                self._next = now + wall_period  # restart the schedule rather than burst
            else:
                self._next += wall_period
