"""Assemble the Controller's per-frame inputs from asynchronous sensor streams (ROS-free).

Sensors arrive on their own schedules: IMU at 200 Hz, odometry at 20-50 Hz, range or scan at their own
rates, camera frames at 30 Hz. :class:`FrameAssembler` buffers them and, for each camera frame, hands
the Controller exactly what belongs to that frame:

- IMU window: the buffered samples not used by an earlier frame with stamps in
  ``(frame stamp - max_window, frame stamp]``, in stamp order (arrival order does not matter). When
  samples arrive on time this is exactly ``(previous frame stamp, frame stamp]``, the window of offline
  replay and training. A sample that arrives after its own frame was processed (a loaded machine, a
  burst of IMU messages behind a frame) is not lost: it joins the next frame's window (counted in
  ``late_imu``); dropping it would starve the network of IMU under load.
- Measurements: the newest odometry speed and range/scan distance whose stamp is within
  ``measurement_max_age`` of the frame stamp (one age rule for all of them); older ones are not used.
- Sensor errors: a reading its decoder rejected (NaN IMU, bad odometry) is reported with
  :meth:`FrameAssembler.report_error`; the next frame gets the first such error since the previous
  frame (the caller brakes on it), then it is cleared.
- Clock skew: when a sensor that is still arriving (by steady arrival time) carries stamps more than
  ``max_clock_skew`` away from the camera's, the frame is bad input naming the sensor and the skew;
  the old behaviour (silently dropping the samples, ignoring odometry) hid a misconfigured clock.

Buffers are bounded: the IMU buffer keeps ``imu_capacity`` samples and drops the oldest when full, so a
flood of samples (or a silent camera) can never grow memory or raise. All methods are thread-safe: the
node's sensor callbacks may run in another thread than its camera callback.
"""
from __future__ import annotations

import bisect
import math
import threading
import time
from dataclasses import dataclass

import numpy as np

from liquid_controller.errors import InputError
from liquid_controller.runtime.preprocess import ImuWindow

IMU_CAPACITY = 4000          # samples kept (20 s at 200 Hz): bounded memory under a flood
MEASUREMENT_MAX_AGE = 0.5    # s (by stamps): older odometry / range / scan readings are not used
MAX_CLOCK_SKEW = 0.5         # s: a live sensor whose stamps differ more from the camera's is bad input


@dataclass
class AssembledInputs:
    """What one camera frame gets: its IMU window, the fresh measurements (None: not available) and the
    first sensor error reported since the previous frame (None: none)."""
    imu: ImuWindow
    speed: float | None = None
    range: float | None = None
    error: str | None = None


class FrameAssembler:
    """Buffers IMU, odometry, range and scan readings and cuts them per camera frame (see module doc).

    ``max_window``: s, the window of the first frame after a reset (the Controller's ``max_dt``).
    ``clock``: steady clock for arrival times (skew is only judged for sensors that are still arriving).
    """

    def __init__(self, max_window, *, imu_capacity=IMU_CAPACITY, measurement_max_age=MEASUREMENT_MAX_AGE,
                 max_clock_skew=MAX_CLOCK_SKEW, clock=time.monotonic):
        for name, value in (('max_window', max_window), ('measurement_max_age', measurement_max_age),
                            ('max_clock_skew', max_clock_skew)):
            if not isinstance(value, (int, float)) or not math.isfinite(value) or value <= 0:
                raise InputError(name, value, 'must be a finite number > 0')
        if not isinstance(imu_capacity, int) or imu_capacity < 1:
            raise InputError('imu_capacity', imu_capacity, 'must be an integer >= 1')
        self.max_window = float(max_window)
        self.imu_capacity = imu_capacity
        self.measurement_max_age = float(measurement_max_age)
        self.max_clock_skew = float(max_clock_skew)
        self.clock = clock
        self._lock = threading.Lock()
        self.counters = {'imu_dropped_full': 0, 'late_imu': 0, 'imu_clock_resets': 0}
        self.reset()

    def reset(self):
        """Forget every buffered reading and the previous frame stamp (node activation, new episode)."""
        with self._lock:
            self._imu_stamps = []          # sorted, float s
            self._imu_samples = []         # (gyro (3,), accel (3,)) in stamp order
            self._imu_arrival = None       # steady time of the newest IMU arrival
            self._last_frame = None        # stamp of the previous assembled frame
            self._readings = {}            # name -> (stamp, value, steady arrival time)
            self._error = None             # first sensor error since the last frame

    # ------------------------------------------------------------------------------------- inputs

    def add_imu(self, stamp, angular_velocity, linear_acceleration):
        """Buffer one decoded IMU sample (stamp s; (3,) rad/s; (3,) m/s^2), keeping stamp order."""
        stamp = float(stamp)
        now = self.clock()
        with self._lock:
            self._imu_arrival = now
            restarted = ((self._last_frame is not None and self._last_frame - stamp > self.max_clock_skew)
                         or (self._imu_stamps and self._imu_stamps[-1] - stamp > self.max_clock_skew))
            if restarted:
                # far in the past: the IMU clock restarted (bag loop, sim reset); old samples are void
                self.counters['imu_clock_resets'] += 1
                self._imu_stamps.clear()
                self._imu_samples.clear()
                self._last_frame = None
            elif self._last_frame is not None and stamp <= self._last_frame:
                self.counters['late_imu'] += 1     # its frame was processed: it joins the next window
            i = bisect.bisect_right(self._imu_stamps, stamp)
            self._imu_stamps.insert(i, stamp)
            self._imu_samples.insert(i, (angular_velocity, linear_acceleration))
            overflow = len(self._imu_stamps) - self.imu_capacity
            if overflow > 0:                                   # drop the oldest, never raise
                del self._imu_stamps[:overflow]
                del self._imu_samples[:overflow]
                self.counters['imu_dropped_full'] += overflow

    def set_reading(self, name, stamp, value):
        """Newest reading of a measurement ('odom' speed m/s, 'range' or 'scan' distance m)."""
        with self._lock:
            self._readings[name] = (float(stamp), value, self.clock())

    def report_error(self, text):
        """A sensor reading was rejected (``text`` names the sensor, field and value): the next frame
        gets it as its ``error`` unless an earlier one since the last frame is already pending."""
        with self._lock:
            if self._error is None:
                self._error = str(text)

    # ------------------------------------------------------------------------------------- output

    def assemble(self, frame_stamp):
        """Inputs for the camera frame stamped ``frame_stamp``; raises InputError on clock skew.

        Consumes the IMU samples up to ``frame_stamp``; a repeated or older frame stamp (the Controller
        drops or resets on those) gets an empty window and leaves the buffer as it is.
        """
        stamp = float(frame_stamp)
        now = self.clock()
        with self._lock:
            self._check_skew(stamp, now)
            error, self._error = self._error, None
            if self._last_frame is not None and stamp <= self._last_frame:
                if stamp < self._last_frame:   # time went backwards: start a new window from here
                    self._last_frame = None
                return AssembledInputs(ImuWindow.empty(), *self._measurements(stamp), error)
            lo = stamp - self.max_window
            hi = bisect.bisect_right(self._imu_stamps, stamp)
            start = bisect.bisect_right(self._imu_stamps, lo, 0, hi)
            stamps = self._imu_stamps[start:hi]
            samples = self._imu_samples[start:hi]
            del self._imu_stamps[:hi]
            del self._imu_samples[:hi]
            self._last_frame = stamp
            measurements = self._measurements(stamp)
        if not stamps:
            return AssembledInputs(ImuWindow.empty(), *measurements, error)
        gyro = np.asarray([g for g, _ in samples], dtype=np.float64).reshape(-1, 3)
        accel = np.asarray([a for _, a in samples], dtype=np.float64).reshape(-1, 3)
        return AssembledInputs(ImuWindow(np.asarray(stamps), gyro, accel), *measurements, error)

    def _measurements(self, stamp):
        """(speed, range) fresh for ``stamp``; range is the nearer of range and scan."""
        speed = self._fresh('odom', stamp)
        ranges = [r for r in (self._fresh('range', stamp), self._fresh('scan', stamp)) if r is not None]
        return speed, (min(ranges) if ranges else None)

    def _fresh(self, name, stamp):
        reading = self._readings.get(name)
        if reading is None or abs(stamp - reading[0]) > self.measurement_max_age:
            return None
        return reading[1]

    def _check_skew(self, stamp, now):
        """Raise when a sensor that is still arriving is stamped far from the camera frame."""
        live = self.max_clock_skew      # arrived within this long (steady): the sensor is running
        if self._imu_stamps and self._imu_arrival is not None and now - self._imu_arrival <= live:
            newest = self._imu_stamps[-1]
            if abs(newest - stamp) > self.max_clock_skew:
                raise InputError('clock skew', f'imu {newest - stamp:+.3f} s',
                                 f'camera stamp {stamp:.3f} vs newest IMU stamp {newest:.3f}: more than '
                                 f'max_clock_skew={self.max_clock_skew} s apart (are both clocks the '
                                 'same time source?)')
        reading = self._readings.get('odom')
        if reading is not None and now - reading[2] <= live and abs(reading[0] - stamp) > self.max_clock_skew:
            raise InputError('clock skew', f'odom {reading[0] - stamp:+.3f} s',
                             f'camera stamp {stamp:.3f} vs odometry stamp {reading[0]:.3f}: more than '
                             f'max_clock_skew={self.max_clock_skew} s apart')

    def __len__(self):
        """Number of buffered IMU samples."""
        with self._lock:
            return len(self._imu_stamps)
