"""Constraint rows of the safety QP, linear in u = (v, w) at the current state (NumPy or torch).

Every row reads ``g . u <= h``. Rows come in fixed slots (``ROW_NAMES``) so a batch shares one layout;
a slot that does not apply at a state is padding (``g = 0, h = 1``, always true, never binds).

Plant model behind the rows (also what the harness simulates): a differential drive whose forward
speed tracks the commanded ``v`` with ``-decel_max <= dv/dt <= accel_max`` and whose yaw rate follows
the command ``w``; the command is held for one control period ``T``.

Hard rows
- ``v_upper`` / ``v_lower``: ``max(v_min, s - decel T) <= v <= min(v_max, s + accel T)``: the actuator
  box and the speeds the drive can reach within one period from the measured speed ``s``.
- ``w_upper`` / ``w_lower``: ``|w| <= min(w_max, a_lat_max / |s|)``: yaw-rate limit, and the lateral
  acceleration while the speed still equals ``s`` at the start of the period.
- ``lat_pos`` / ``lat_neg``: ``|v w| <= a_lat_max`` in a conservative linear form: the tangent of the
  hyperbola ``|w| = a_lat_max / |v|`` at ``v0`` lies below it (the hyperbola is convex), so the rows
  only cut away safe commands, never admit unsafe ones. ``v0`` is the nominal speed clipped to the
  reachable interval (exact at a safe nominal: no intervention) and kept >= half the braking speed so
  braking with ``w = 0`` always satisfies them. When the reachable interval straddles 0 the rows
  become the box ``|w| <= a_lat_max / max|v|`` (merged into ``w_upper``/``w_lower``).
- ``obstacle_a`` / ``obstacle_b``: braking-distance barrier with a one-period sampling margin. With
  ``D = distance - obstacle_margin``, the commanded ``v`` must leave ``f(v) <= D`` where
  ``f(v) = T|v| + ramp(s, v) + stop(v)`` bounds the path length driven during this period (ramping from
  ``s`` to ``v`` at the limit, then holding ``v``) plus the stopping distance from ``v``. ``f`` is
  convex, so its chords over ``[lo, v_brake]`` and ``[v_brake, hi]`` lie above it on the reachable
  interval (conservative) and equal it at the braking command ``v_brake``, where ``f(v_brake)`` is
  exactly the stopping distance from ``s``. Hence: if the barrier ``h = D - stop(s)`` is >= 0 now,
  braking at the limit satisfies both rows, and whatever command the filter returns keeps
  ``h >= 0`` at the next tick (the set stays invariant). If ``h < 0`` already (measurement noise, an
  obstacle appearing close), ``D`` is raised to ``f(v_brake)``: the rows then demand braking at the
  limit, ``v`` no faster than ``v_brake``, and leave the yaw rate free, so the rows never go
  infeasible by themselves and a stopped robot can always turn away. Path length bounds the approach
  to the nearest obstacle in any direction, so turning is covered too.

Soft rows (the BarrierNet part: class-K parameters from the policy)
- ``lane_left`` / ``lane_right``: second-order (HOCBF) rows for ``h = lane_half_width - lane_margin -+ y``
  with ``y' = s sin(psi)``, ``psi' = w`` and ``s' ~ (v - s)/T``:
  ``h'' + (p1 + p2) h' + p1 p2 h >= 0``. Soft because the lane estimate comes from the network and
  HOCBF rows can conflict with the limits; they are relaxed with an exact penalty, never the hard rows.
"""
import math

import numpy as np

ROW_NAMES = ('v_upper', 'v_lower', 'w_upper', 'w_lower', 'lat_pos', 'lat_neg',
             'obstacle_a', 'obstacle_b', 'lane_left', 'lane_right')
SOFT_ROWS = tuple(name.startswith('lane_') for name in ROW_NAMES)
NUM_ROWS = len(ROW_NAMES)
# Chords shorter than this (m/s) collapse to a constant test at the braking speed.
_CHORD_EPS = 1e-9
# Smallest tangent speed for the lateral rows (m/s): avoids dividing by zero.
_V0_MIN = 1e-3


class _Ops:
    """The few array operations the row builder needs, for NumPy or torch."""

    def __init__(self, like):
        # torch is imported only when given tensors: the runtime filter stays NumPy-only
        self.torch = type(like).__module__.startswith('torch')
        if self.torch:
            import torch
            self.tm = torch
        self.like = like

    def t(self, x):
        """Constant as an array of the working type."""
        if self.torch:
            return self.tm.as_tensor(x, dtype=self.like.dtype, device=self.like.device)
        return np.asarray(x, dtype=np.float64)

    def where(self, c, a, b):
        if self.torch:
            T = self.tm.Tensor
            return self.tm.where(c, a if isinstance(a, T) else self.t(a),
                                 b if isinstance(b, T) else self.t(b))
        return np.where(c, a, b)

    def minimum(self, a, b):
        return self.where(a <= b, a, b)

    def maximum(self, a, b):
        return self.where(a >= b, a, b)

    def clip(self, x, lo, hi):
        return self.minimum(self.maximum(x, lo), hi)

    def abs(self, x):
        return x.abs() if self.torch else np.abs(x)

    def sin(self, x):
        return self.tm.sin(x) if self.torch else np.sin(x)

    def cos(self, x):
        return self.tm.cos(x) if self.torch else np.cos(x)

    def pos(self, x):
        return self.maximum(x, self.t(0.0) * x)

    def stack(self, xs, axis):
        return self.tm.stack(xs, dim=axis) if self.torch else np.stack(xs, axis=axis)

    def isfinite(self, x):
        return self.tm.isfinite(x) if self.torch else np.isfinite(x)

    def zeros_like(self, x):
        return self.tm.zeros_like(x) if self.torch else np.zeros_like(x)


def brake_speed(config, s, ops=None):
    """Braking command speed (B,) from measured speed s (B,): one period of braking at the limit.

    Toward 0 at ``decel_max`` when moving forward, at ``accel_max`` when reversing; clipped to the
    reachable interval and the actuator box, so it is always a valid command.
    """
    ops = ops or _Ops(s)
    T = config.control_period
    tgt = ops.where(s > config.decel_max * T, s - config.decel_max * T,
                    ops.where(s < -config.accel_max * T, s + config.accel_max * T,
                              ops.zeros_like(s)))
    lo, hi = speed_interval(config, s, ops)
    return ops.clip(ops.clip(tgt, lo, hi), config.v_min, config.v_max)


def speed_interval(config, s, ops=None):
    """Reachable command speeds ``(lo, hi)`` (B,) each: actuator box within one period's reach."""
    ops = ops or _Ops(s)
    T = config.control_period
    lo = ops.maximum(s - config.decel_max * T, ops.t(config.v_min) + 0 * s)
    hi = ops.minimum(s + config.accel_max * T, ops.t(config.v_max) + 0 * s)
    return lo, hi


def path_bound(config, s, v, ops=None):
    """Convex upper bound f(v) (m) on path length this period plus the stopping distance from v."""
    ops = ops or _Ops(s)
    T, a, b = config.control_period, config.accel_max, config.decel_max
    ramp = ops.where(s >= 0, ops.pos(s - v) ** 2 / (2 * b), ops.pos(v - s) ** 2 / (2 * a))
    return T * ops.abs(v) + ramp + ops.pos(v) ** 2 / (2 * b) + ops.pos(-v) ** 2 / (2 * a)


def stopping_distance(config, s, ops=None):
    """Distance (m) to stop from speed s (B,) braking at the limit."""
    ops = ops or _Ops(s)
    return ops.pos(s) ** 2 / (2 * config.decel_max) + ops.pos(-s) ** 2 / (2 * config.accel_max)


def lane_params(config, params):
    """(p1_left, p2_left, p1_right, p2_right), each (B,), from params (B,K)."""
    if params.shape[-1] == 2:
        return params[:, 0], params[:, 1], params[:, 0], params[:, 1]
    return params[:, 0], params[:, 1], params[:, 2], params[:, 3]


def build_rows(config, speed, u_nom, obstacle_distance=None, lane_offset=None, heading_error=None,
               params=None):
    """Constraint rows for a batch of states; NumPy arrays in, NumPy out (or torch in, torch out).

    speed (B,); u_nom (B,2) finite (the tangent point of the lateral rows); obstacle_distance (B,)
    with +inf (or None) for no obstacle; lane_offset, heading_error (B,) with NaN (or None) for no
    lane estimate; params (B,K) class-K parameters (None: config defaults).
    Returns ``G (B,NUM_ROWS,2), h (B,NUM_ROWS), barriers`` where barriers is a dict of (B,) arrays:
    ``obstacle`` (D - stopping distance; +inf without obstacle), ``lane_left``, ``lane_right`` (NaN
    without lane estimate).
    """
    ops = _Ops(speed)
    s = speed
    c = config
    T = c.control_period
    B = s.shape[0]
    zero = ops.zeros_like(s)
    one = zero + 1.0
    if obstacle_distance is None:
        obstacle_distance = zero + math.inf
    if lane_offset is None or heading_error is None:
        lane_offset = zero + math.nan
        heading_error = zero + math.nan
    if params is None:
        params = ops.t(np.tile(np.asarray(c.default_barrier_params, dtype=np.float64), (B, 1)))

    rows = []                                       # list of (g0, g1, h), each (B,)
    lo, hi = speed_interval(c, s, ops)
    v_b = brake_speed(c, s, ops)
    rows.append((one, zero, hi))                    # v <= hi
    rows.append((-one, zero, -lo))                  # -v <= -lo

    # yaw rate: box, lateral acceleration at the start of the period, and near a stop the whole
    # reachable speed range (where the tangent form below is not linear in v)
    vabs_max = ops.maximum(ops.abs(lo), ops.abs(hi))
    straddle = (lo < 0) & (hi > 0)
    s_abs = ops.abs(s)
    wb = ops.minimum(zero + c.w_max, c.a_lat_max / ops.maximum(s_abs, zero + 1e-12))
    wb = ops.where(straddle, ops.minimum(wb, c.a_lat_max / ops.maximum(vabs_max, zero + 1e-12)), wb)
    rows.append((zero, one, wb))
    rows.append((zero, -one, wb))

    # lateral acceleration |v w| <= a_lat: tangent rows at v0 (in |v| = sgn * v)
    need_lat = (~straddle) & (vabs_max * wb > c.a_lat_max)
    sgn = ops.where(lo >= 0, one, -one)
    abs_lo = ops.minimum(ops.abs(lo), ops.abs(hi))
    v_nom_abs = ops.abs(u_nom[:, 0])
    v0_floor = ops.maximum(ops.maximum(ops.abs(v_b) * 0.5, abs_lo), zero + _V0_MIN)
    v0 = ops.clip(v_nom_abs, v0_floor, ops.maximum(vabs_max, v0_floor))
    k = c.a_lat_max / (v0 * v0)
    h_lat = 2.0 * c.a_lat_max / v0
    for sign_w in (1.0, -1.0):
        rows.append((ops.where(need_lat, k * sgn, zero), ops.where(need_lat, sign_w * one, zero),
                     ops.where(need_lat, h_lat, one)))

    # obstacle: braking-distance barrier, two chords of the convex path bound through v_brake
    has_obs = ops.isfinite(obstacle_distance)
    d = ops.where(has_obs, obstacle_distance, zero)
    f_b = path_bound(c, s, v_b, ops)
    # Already inside the margin (noise, an obstacle that appeared close): the best anyone can do is
    # brake at the limit, so the rows then ask exactly that (v <= v_brake) and leave steering free
    # (no deadlock: the robot may still turn away) instead of going infeasible.
    D = ops.maximum(d - c.obstacle_margin, f_b)
    for left, right in ((lo, v_b), (v_b, hi)):
        width = right - left
        wide = width > _CHORD_EPS
        f_l, f_r = path_bound(c, s, left, ops), path_bound(c, s, right, ops)
        slope = (f_r - f_l) / ops.where(wide, width, one)
        g0 = ops.where(has_obs & wide, slope, zero)
        hh = ops.where(wide, D - f_l + slope * left, D - f_b)
        rows.append((g0, zero, ops.where(has_obs, hh, one)))

    # lane keeping: HOCBF rows with the policy's class-K parameters (soft)
    has_lane = ops.isfinite(lane_offset) & ops.isfinite(heading_error)
    y = ops.where(has_lane, lane_offset, zero)
    psi = ops.where(has_lane, heading_error, zero)
    sn, cs = ops.sin(psi), ops.cos(psi)
    L = c.lane_half_width - c.lane_margin
    p1l, p2l, p1r, p2r = lane_params(c, params)
    h_left, h_right = L - y, L + y
    # left: h'' = -(v - s)/T sin(psi) - s cos(psi) w ; h' = -s sin(psi)
    hl = s * sn / T - (p1l + p2l) * s * sn + p1l * p2l * h_left
    rows.append((ops.where(has_lane, sn / T, zero), ops.where(has_lane, s * cs, zero),
                 ops.where(has_lane, hl, one)))
    # right: h'' = (v - s)/T sin(psi) + s cos(psi) w ; h' = s sin(psi)
    hr = -s * sn / T + (p1r + p2r) * s * sn + p1r * p2r * h_right
    rows.append((ops.where(has_lane, -sn / T, zero), ops.where(has_lane, -s * cs, zero),
                 ops.where(has_lane, hr, one)))

    G = ops.stack([ops.stack([g0, g1], -1) for g0, g1, _ in rows], 1)   # (B,NUM_ROWS,2)
    h = ops.stack([hh for _, _, hh in rows], 1)                         # (B,NUM_ROWS)
    barriers = {
        'obstacle': ops.where(has_obs, d - c.obstacle_margin - stopping_distance(c, s, ops),
                              zero + math.inf),
        'lane_left': ops.where(has_lane, h_left, zero + math.nan),
        'lane_right': ops.where(has_lane, h_right, zero + math.nan),
    }
    return G, h, barriers


def row_labels(config, speed):
    """Names ``slot:limit`` of the rows at one state (for certificates), in slot order."""
    c = config
    T = c.control_period
    s = float(speed)
    names = list(ROW_NAMES)
    names[0] += ':v_max' if c.v_max <= s + c.accel_max * T else ':accel_max'
    names[1] += ':v_min' if c.v_min >= s - c.decel_max * T else ':decel_max'
    lim = ':a_lat_max' if (s != 0.0 and c.a_lat_max / abs(s) < c.w_max) else ':w_max'
    names[2] += lim
    names[3] += lim
    return names
