"""Safety-filter configuration (limits, margins, solver settings) and the measured robot state.

Units are SI: m, s, m/s, rad/s, m/s^2. The robot is a differential drive commanded by u = (v, w):
forward speed v (m/s, REP-103 x forward) and yaw rate w (rad/s, z up, positive turns left).
"""
import math
from dataclasses import asdict, dataclass, fields

from liquid_controller.config_base import check_known_keys, config_to_dict
from liquid_controller.errors import InputError
from liquid_controller.validation import check_choice, check_number, check_numbers


@dataclass
class SafetyConfig:
    """Limits and margins of the safety filter; validated on construction.

    Actuator box: ``v_min <= v <= v_max`` (``v_min <= 0 <= v_max`` so that stopping is possible),
    ``|w| <= w_max``. Acceleration limits bound the forward-speed rate of change,
    ``-decel_max <= dv/dt <= accel_max`` (the drive tracks a commanded speed at most this fast), so a
    command must lie within one control period's reach of the measured speed. ``a_lat_max`` bounds the
    lateral (centripetal) acceleration ``|v * w|``.

    ``obstacle_margin`` (m) is kept between the robot and the nearest obstacle; it must cover the
    error of the distance measurement. ``lane_half_width`` and ``lane_margin`` (eps, covering the error
    of the policy's lane estimate) define the lane barriers ``lane_half_width - lane_margin -+ y``.

    ``num_barrier_params`` is 2 (class-K parameters ``p1, p2`` shared by the left and right lane
    barriers) or 4 (``p1_left, p2_left, p1_right, p2_right``); every parameter must lie in
    ``barrier_param_range``. ``weights`` weight the objective ``sum(weights * (u - u_ref)**2)``;
    ``soft_penalty`` is the exact (L1) penalty per unit of normalised violation of a soft row.
    ``speed_tolerance`` / ``yaw_rate_tolerance`` say how far outside the actuator box a measured speed
    or yaw rate may be before the state is rejected as invalid. A nominal command with a component
    larger than ``max_abs_nominal`` in magnitude is treated like NaN (invalid_nominal -> fallback).
    """

    v_min: float = 0.0
    v_max: float = 2.0
    w_max: float = 2.0
    accel_max: float = 1.5
    decel_max: float = 3.0
    a_lat_max: float = 2.0
    control_period: float = 1.0 / 30.0
    obstacle_margin: float = 0.3
    lane_half_width: float = 0.6
    lane_margin: float = 0.1
    num_barrier_params: int = 2
    barrier_param_range: tuple = (0.1, 10.0)
    default_barrier_params: tuple = (1.0, 1.0)
    weights: tuple = (1.0, 0.25)
    soft_penalty: float = 1000.0
    solver_tol: float = 1e-9
    speed_tolerance: float = 0.5
    yaw_rate_tolerance: float = 1.0
    max_abs_lateral_accel: float = 50.0
    max_abs_lane_offset: float = 5.0
    max_abs_nominal: float = 1000.0

    def __post_init__(self):
        for f in fields(self):
            if f.name in ('num_barrier_params', 'barrier_param_range', 'default_barrier_params',
                          'weights'):
                continue
            setattr(self, f.name, check_number(f.name, getattr(self, f.name)))
        if not self.v_min <= 0.0 < self.v_max:
            raise InputError('v_min', (self.v_min, self.v_max), 'need v_min <= 0 < v_max')
        for name in ('w_max', 'accel_max', 'decel_max', 'a_lat_max', 'control_period',
                     'lane_half_width', 'soft_penalty', 'solver_tol', 'max_abs_lateral_accel',
                     'max_abs_lane_offset', 'max_abs_nominal'):
            check_number(name, getattr(self, name), 0.0, low_open=True)
        for name in ('obstacle_margin', 'lane_margin', 'speed_tolerance', 'yaw_rate_tolerance'):
            check_number(name, getattr(self, name), 0.0)
        if self.lane_margin >= self.lane_half_width:
            raise InputError('lane_margin', self.lane_margin, 'must be < lane_half_width')
        if self.control_period > 1.0:
            raise InputError('control_period', self.control_period, 'must be <= 1 s')
        check_choice('num_barrier_params', self.num_barrier_params, (2, 4))
        lo, hi = rng = check_numbers('barrier_param_range', self.barrier_param_range, 2)
        if not 0.0 < lo <= hi:
            raise InputError('barrier_param_range', rng, 'need 0 < low <= high')
        self.barrier_param_range = rng
        dflt = check_numbers('default_barrier_params', self.default_barrier_params)
        if len(dflt) == 2 and self.num_barrier_params == 4:
            dflt = dflt + dflt
        if len(dflt) != self.num_barrier_params or not all(lo <= x <= hi for x in dflt):
            raise InputError('default_barrier_params', self.default_barrier_params,
                             f'need {self.num_barrier_params} values inside {rng}')
        self.default_barrier_params = dflt
        self.weights = check_numbers('weights', self.weights, 2, 0.0, low_open=True)

    def to_dict(self):
        """Plain JSON-able dict (tuples become lists)."""
        return config_to_dict(self, tuples_as_lists=True)

    @classmethod
    def from_dict(cls, d):
        """Inverse of :meth:`to_dict`; unknown keys raise InputError naming the key."""
        check_known_keys(d, {f.name for f in fields(cls)}, 'SafetyConfig')
        kw = {k: (tuple(v) if isinstance(v, list) else v) for k, v in d.items()}
        return cls(**kw)

    def stopping_distance(self, speed):
        """Distance (m) needed to stop from ``speed`` braking at the limit (forward or reverse)."""
        if speed >= 0.0:
            return speed * speed / (2.0 * self.decel_max)
        return speed * speed / (2.0 * self.accel_max)

    def required_sensor_range(self):
        """Smallest obstacle-sensor range (m) that keeps the guarantee from top speed.

        An obstacle first seen at this range still leaves room for one control period at ``v_max``
        plus the stopping distance plus the margin.
        """
        return (self.obstacle_margin + self.control_period * self.v_max
                + self.stopping_distance(self.v_max))


@dataclass
class RobotState:
    """Measured state at one control tick (the filter validates it; bad values -> fallback).

    ``speed``: current forward speed (m/s; odometry, else the last filtered command).
    ``yaw_rate``: IMU gyro z (rad/s). ``lateral_accel``: IMU lateral acceleration (m/s^2, y axis).
    ``obstacle_distance``: distance (m) to the nearest obstacle ahead, ``None`` or ``+inf`` when none
    is sensed. ``lane_offset`` (m, left positive) and ``heading_error`` (rad, robot yaw minus lane
    direction) are the policy's lane estimates; give both or neither.
    """

    speed: float
    yaw_rate: float
    lateral_accel: float
    obstacle_distance: float = None
    lane_offset: float = None
    heading_error: float = None

    def validate(self, config):
        """Return ``None`` when usable with ``config``, else the cause ``'invalid_state:<field>'``.

        Never raises: this runs inside a control tick.
        """
        def bad(x):
            try:
                return not math.isfinite(float(x))
            except (TypeError, ValueError):
                return True

        c = config
        if bad(self.speed) or not (c.v_min - c.speed_tolerance <= float(self.speed)
                                   <= c.v_max + c.speed_tolerance):
            return 'invalid_state:speed'
        if bad(self.yaw_rate) or abs(float(self.yaw_rate)) > c.w_max + c.yaw_rate_tolerance:
            return 'invalid_state:yaw_rate'
        if bad(self.lateral_accel) or abs(float(self.lateral_accel)) > c.max_abs_lateral_accel:
            return 'invalid_state:lateral_accel'
        if self.obstacle_distance is not None:
            try:
                d = float(self.obstacle_distance)
            except (TypeError, ValueError):
                return 'invalid_state:obstacle_distance'
            if math.isnan(d) or d == -math.inf or d < 0.0:
                return 'invalid_state:obstacle_distance'
        if (self.lane_offset is None) != (self.heading_error is None):
            return 'invalid_state:lane_offset' if self.lane_offset is None else \
                'invalid_state:heading_error'
        if self.lane_offset is not None:
            if bad(self.lane_offset) or abs(float(self.lane_offset)) > c.max_abs_lane_offset:
                return 'invalid_state:lane_offset'
            if bad(self.heading_error) or abs(float(self.heading_error)) > math.pi:
                return 'invalid_state:heading_error'
        return None

    def to_dict(self):
        """Plain dict of the fields."""
        return asdict(self)


__all__ = ['SafetyConfig', 'RobotState']
