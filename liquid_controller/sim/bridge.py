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


# ------------------------------------------------------------------------------------------------- TF

# Frame names of the simulated rover (REP-105 odom -> base_link; sensor frames REP-103: x forward,
# y left, z up, except the optical frame).
ODOM_FRAME = 'odom'
BASE_FRAME = 'base_link'
CAMERA_FRAME = 'camera_link'
CAMERA_OPTICAL_FRAME = 'camera_optical_frame'
IMU_FRAME = 'imu_link'
RANGE_FRAME = 'range_link'

# camera_link (x forward, y left, z up) -> optical frame (z forward, x right, y down), REP-103's
# "_optical" suffix convention: roll -90 deg then yaw -90 deg, as quaternion x, y, z, w.
OPTICAL_ROTATION = (-0.5, 0.5, -0.5, 0.5)


class FrameTransform:
    """One edge of the TF tree: pose of ``child`` in ``parent`` (translation m, rotation x, y, z, w).

    ROS-free; :mod:`liquid_controller.ros.sim_node` packs it into geometry_msgs/TransformStamped.
    """

    __slots__ = ('parent', 'child', 'translation', 'rotation')

    def __init__(self, parent, child, translation, rotation):
        if not (isinstance(parent, str) and parent and isinstance(child, str) and child):
            raise InputError('frame', (parent, child), 'parent and child must be non-empty strings')
        if parent == child:
            raise InputError('frame', child, 'a frame cannot be its own parent')
        t = tuple(float(v) for v in translation)
        q = tuple(float(v) for v in rotation)
        if len(t) != 3 or not all(math.isfinite(v) for v in t):
            raise InputError(f'{child}.translation', translation, 'expected 3 finite numbers')
        norm = math.sqrt(sum(v * v for v in q)) if len(q) == 4 else 0.0
        if len(q) != 4 or not all(math.isfinite(v) for v in q) or abs(norm - 1.0) > 1e-6:
            raise InputError(f'{child}.rotation', rotation, 'expected a unit quaternion x, y, z, w')
        self.parent, self.child = parent, child
        self.translation, self.rotation = t, q

    def matrix(self):
        """4x4 homogeneous transform: maps points in ``child`` to ``parent``."""
        x, y, z, w = self.rotation
        m = [[1 - 2 * (y * y + z * z), 2 * (x * y - w * z), 2 * (x * z + w * y), self.translation[0]],
             [2 * (x * y + w * z), 1 - 2 * (x * x + z * z), 2 * (y * z - w * x), self.translation[1]],
             [2 * (x * z - w * y), 2 * (y * z + w * x), 1 - 2 * (x * x + y * y), self.translation[2]],
             [0.0, 0.0, 0.0, 1.0]]
        return m

    def __repr__(self):
        return (f'FrameTransform({self.parent!r} -> {self.child!r}, t={self.translation}, '
                f'q={self.rotation})')


def static_transforms(mount_poses):
    """The static part of the sim rover's TF tree, from ``DrivingWorld.mount_poses()``.

    ``mount_poses``: sensor frame name -> (xyz in base_link, quaternion x, y, z, w), the rover
    description of the MuJoCo model (so TF and the simulated sensors cannot disagree). Returns
    base_link -> camera_link, camera_link -> camera_optical_frame, base_link -> imu_link and, when
    the range sensor exists, base_link -> range_link. Unknown names are published as given (children
    of base_link), so a sensor added to the world needs no change here.
    """
    if not isinstance(mount_poses, dict) or CAMERA_FRAME not in mount_poses:
        raise InputError('mount_poses', type(mount_poses).__name__,
                         f'expected a dict of sensor poses with {CAMERA_FRAME!r}')
    out = []
    for name, (xyz, quat) in mount_poses.items():
        out.append(FrameTransform(BASE_FRAME, name, xyz, quat))
        if name == CAMERA_FRAME:
            out.append(FrameTransform(CAMERA_FRAME, CAMERA_OPTICAL_FRAME, (0.0, 0.0, 0.0), OPTICAL_ROTATION))
    return out


def odom_transform(x, y, yaw):
    """The dynamic odom -> base_link transform of planar odometry (same numbers as /odom's pose)."""
    values = []
    for name, value in (('x', x), ('y', y), ('yaw', yaw)):
        try:
            number = float(value)
        except (TypeError, ValueError):
            raise InputError(f'odom.{name}', value, 'must be a finite number') from None
        if isinstance(value, bool) or not math.isfinite(number):
            raise InputError(f'odom.{name}', value, 'must be a finite number')
        values.append(number)
    x, y, yaw = values
    half = 0.5 * yaw
    return FrameTransform(ODOM_FRAME, BASE_FRAME, (x, y, 0.0), (0.0, 0.0, math.sin(half), math.cos(half)))
