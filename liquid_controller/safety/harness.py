"""Closed-loop safety harness: many unicycle rollouts against adversarial nominal commands (NumPy).

Scene: a straight lane along +x (centre y = 0) with a round obstacle on it ahead of the robot. The
plant is the model behind the rows: the forward speed tracks the command with
``-decel_max <= dv/dt <= accel_max``, the yaw rate follows the command; it is integrated with
``substeps`` steps per control period (>= 20). The filter sees the obstacle clearance and the lane
estimate with bounded noise (within ``obstacle_margin`` / ``lane_margin``). With
``bad_reading_rate > 0`` the filter's speed reading is, on that fraction of ticks (drawn per rollout
and tick from the seed), replaced by a broken one from ``BAD_SPEED_READINGS`` (1e9, NaN, -1e9) while
the physics keeps the true speed: a failing odometry the filter must reject and survive (issue 11:
braking "from" a 1e9 reading once sent robots standing before an obstacle off at full speed).

Checked at every substep of every rollout (a rollout "violates" if any check ever fails):
``collision`` (true clearance < 0), ``speed_box`` (actual speed outside [v_min, v_max]),
``yaw_box`` (|commanded w| > w_max), ``lateral`` (|v w| > a_lat_max), ``unreachable`` (a command the
drive cannot reach within the period), ``non_finite`` (a NaN/Inf command reached the drive).

Variants: ``filter`` (ours: :func:`filter_batch`, vectorised, told each drive's last command),
``runtime`` (ours as the runtime runs it: one :class:`SafetyFilter` per rollout fed a
:class:`RobotState` per tick; a few thousand ticks per second) and ``clip_after_qp`` (the official
BarrierNet recipe: a continuous-time CBF on the distance, ``v <= p (d - margin)``, plus the lane
rows, solved without limits, infeasible -> zeros, then the command clipped to the limits). The
baseline must show violations: it proves the harness can fail.
"""
import math
from dataclasses import dataclass, field, replace

import numpy as np

from liquid_controller.errors import InputError
from liquid_controller.safety.config import RobotState, SafetyConfig
from liquid_controller.safety.constraints import speed_interval
from liquid_controller.safety.filter import INFEASIBLE, SafetyFilter, filter_batch
from liquid_controller.safety.qp_numpy import solve_qp

FAMILIES = ('ram', 'random', 'bang_bang', 'nan_inf', 'frozen')
VARIANTS = ('filter', 'runtime', 'clip_after_qp')
CHECKS = ('collision', 'speed_box', 'yaw_box', 'lateral', 'unreachable', 'non_finite')
# Speed readings of a failing odometry (bad_reading_rate): all must be rejected by the filter.
BAD_SPEED_READINGS = (1e9, math.nan, -1e9)


@dataclass
class HarnessConfig:
    """One harness run: ``rollouts`` episodes of ``duration`` s for one family, period and variant.

    ``bad_reading_rate``: fraction of ticks on which the speed reading given to the filter (or the
    baseline) is broken (module docstring); drawn from a generator of its own, so the other random
    draws of a seed do not change with it.
    """

    family: str = 'ram'
    variant: str = 'filter'
    rollouts: int = 1000
    control_period: float = 0.1
    substeps: int = 20
    duration: float = 4.0
    seed: int = 0
    obstacle_radius: float = 0.25
    robot_radius: float = 0.2
    distance_noise: float = 0.5        # fraction of obstacle_margin
    lane_noise: float = 0.5            # fraction of lane_margin
    bad_reading_rate: float = 0.0      # fraction of ticks with a broken speed reading
    safety: SafetyConfig = field(default_factory=SafetyConfig)

    def __post_init__(self):
        if self.family not in FAMILIES:
            raise InputError('family', self.family, f'one of {FAMILIES}')
        if self.variant not in VARIANTS:
            raise InputError('variant', self.variant, f'one of {VARIANTS}')
        if not isinstance(self.rollouts, int) or self.rollouts < 1:
            raise InputError('rollouts', self.rollouts, 'must be a positive int')
        if not isinstance(self.substeps, int) or self.substeps < 20:
            raise InputError('substeps', self.substeps, 'must be an int >= 20')
        for name in ('control_period', 'duration', 'obstacle_radius', 'robot_radius'):
            v = getattr(self, name)
            if not (isinstance(v, (int, float)) and math.isfinite(v) and v > 0):
                raise InputError(name, v, 'must be > 0')
        for name in ('distance_noise', 'lane_noise'):
            v = getattr(self, name)
            if not 0.0 <= v <= 1.0:
                raise InputError(name, v, 'must be in [0, 1] (a fraction of the margin)')
        if not (isinstance(self.bad_reading_rate, (int, float))
                and 0.0 <= self.bad_reading_rate <= 1.0):
            raise InputError('bad_reading_rate', self.bad_reading_rate, 'must be in [0, 1]')
        # the filter runs at the harness period
        self.safety = replace(self.safety, control_period=float(self.control_period))


def _sample_params(rng, c, n):
    """Class-K parameters over the whole range, the end points included (10% each)."""
    lo, hi = c.barrier_param_range
    p = rng.uniform(lo, hi, size=(n, c.num_barrier_params))
    pick = rng.random((n, c.num_barrier_params))
    return np.where(pick < 0.1, lo, np.where(pick > 0.9, hi, p))


class _Nominal:
    """Adversarial nominal-command generator for one family (vectorised over rollouts)."""

    def __init__(self, family, c, rng, n):
        self.family, self.c, self.rng, self.n = family, c, rng, n
        self.frozen = np.stack([rng.uniform(0.5, 1.5, n) * c.v_max,
                                rng.uniform(-1.5, 1.5, n) * c.w_max], 1)
        self.flip = rng.integers(1, 4, n)          # bang-bang half period in ticks

    def __call__(self, k, x, y, yaw, ox, oy):
        c, rng, n = self.c, self.rng, self.n
        bearing = np.arctan2(oy - y, ox - x) - yaw
        bearing = (bearing + np.pi) % (2 * np.pi) - np.pi
        ram = np.stack([np.full(n, 1.5 * c.v_max), np.clip(4.0 * bearing, -2 * c.w_max,
                                                             2 * c.w_max)], 1)
        if self.family == 'ram':
            return ram
        if self.family == 'random':
            return np.stack([rng.uniform(c.v_min - 1.0, c.v_max + 1.0, n),
                             rng.uniform(-2 * c.w_max, 2 * c.w_max, n)], 1)
        if self.family == 'bang_bang':
            sign = np.where((k // self.flip) % 2 == 0, 1.0, -1.0)
            return np.stack([np.where(sign > 0, c.v_max + 1.0, c.v_min - 1.0),
                             sign * 2 * c.w_max], 1)
        if self.family == 'nan_inf':
            bad = rng.random((n, 2)) < 0.3
            junk = rng.choice(np.array([np.nan, np.inf, -np.inf]), size=(n, 2))
            return np.where(bad, junk, ram)
        return self.frozen                             # stale command held for the whole episode


def _clip_after_qp(c, u_nom, s, d_meas, y_meas, psi_meas, params):
    """Official-style BarrierNet step: CBF rows without limits, zeros when infeasible, then clip."""
    from liquid_controller.safety.constraints import build_rows
    n = s.shape[0]
    un = np.where(np.isfinite(u_nom), u_nom, 0.0)
    G, h, _ = build_rows(c, s, un, None, y_meas, psi_meas, params)
    G, h = G[:, -2:], h[:, -2:]                        # the lane HOCBF rows, hard as in the paper
    g_obs = np.zeros((n, 1, 2))
    g_obs[:, 0, 0] = 1.0                               # v <= p (d - margin): d' = -v, first order
    h_obs = (params[:, 0] * (d_meas - c.obstacle_margin))[:, None]
    sol = solve_qp(np.concatenate([g_obs, G], 1), np.concatenate([h_obs, h], 1), un, c.weights)
    u = np.where((sol.status == INFEASIBLE)[:, None], 0.0, sol.u)    # qpth returns zeros
    u = np.where(np.isfinite(u_nom), u, u_nom)        # a NaN nominal goes straight through
    lo, hi = speed_interval(c, s)
    return np.stack([np.clip(u[:, 0], lo, hi), np.clip(u[:, 1], -c.w_max, c.w_max)], 1)


def _runtime_filters(c, s0):
    """One runtime :class:`SafetyFilter` per rollout, told the command that produced speed s0."""
    filters = [SafetyFilter(c) for _ in s0]
    for f, v in zip(filters, s0):
        f.record_command((float(v), 0.0))
    return filters


def _runtime_step(filters, u_nom, s_meas, yaw_rate, lat_acc, d_meas, y_meas, psi_meas, params):
    """One tick of every rollout's runtime filter: commands (n,2) and fallback flags (n,)."""
    n = len(filters)
    u = np.empty((n, 2))
    fallback = np.zeros(n, bool)
    for i, f in enumerate(filters):
        state = RobotState(float(s_meas[i]), float(yaw_rate[i]), float(lat_acc[i]),
                           float(d_meas[i]), float(y_meas[i]), float(psi_meas[i]))
        u[i], cert = f.filter(u_nom[i], state, params[i])
        fallback[i] = cert.fallback
    return u, fallback


def run_harness(hc, progress=False):
    """Run one harness configuration; returns a dict of metrics (JSON-able)."""
    c = hc.safety
    rng = np.random.default_rng(hc.seed)
    bad_rng = np.random.default_rng([hc.seed, 1])
    n = hc.rollouts
    T = hc.control_period
    dt = T / hc.substeps
    ticks = int(round(hc.duration / T))
    r_sum = hc.obstacle_radius + hc.robot_radius
    # initial states: in the lane, obstacle 1.5..4 m ahead, speed inside the safe set
    ox = rng.uniform(1.5, 4.0, n)
    oy = rng.uniform(-0.3, 0.3, n)
    x = np.zeros(n)
    y = rng.uniform(-0.3, 0.3, n)
    yaw = rng.uniform(-0.3, 0.3, n)
    clear0 = np.hypot(ox - x, oy - y) - r_sum
    room = np.maximum(clear0 - c.obstacle_margin * (1 + hc.distance_noise), 0.0)
    s = np.minimum(rng.uniform(0.0, c.v_max, n), np.sqrt(2 * c.decel_max * room))
    nominal = _Nominal(hc.family, c, rng, n)
    viol = {k: np.zeros(n, bool) for k in CHECKS}
    worst = np.full(n, np.inf)
    lane_exit = np.zeros(n, bool)
    ticks_intervened = ticks_fallback = ticks_finite = ticks_bad_reading = 0
    u_prev = np.stack([s, np.zeros(n)], 1)           # the command that produced the initial speed
    filters = _runtime_filters(c, s) if hc.variant == 'runtime' else None
    tol = 1e-9
    it = range(ticks)
    if progress:
        from tqdm import tqdm
        it = tqdm(it, desc=f'{hc.variant}/{hc.family}/{T}s', leave=False)
    for k in it:
        clear = np.hypot(ox - x, oy - y) - r_sum
        d_meas = np.maximum(clear + rng.uniform(-1, 1, n) * hc.distance_noise * c.obstacle_margin,
                            0.0)
        y_meas = y + rng.uniform(-1, 1, n) * hc.lane_noise * c.lane_margin
        psi_meas = yaw + rng.uniform(-1, 1, n) * 0.05
        params = _sample_params(rng, c, n) if hc.family != 'frozen' or k == 0 else params
        u_nom = nominal(k, x, y, yaw, ox, oy)
        s_meas = s
        if hc.bad_reading_rate > 0.0:
            # own generator: the other draws of this seed stay the same with or without it
            bad = bad_rng.random(n) < hc.bad_reading_rate
            s_meas = np.where(bad, bad_rng.choice(np.array(BAD_SPEED_READINGS), n), s)
            ticks_bad_reading += int(bad.sum())
        if hc.variant == 'filter':
            u, code, _, _ = filter_batch(c, u_nom, s_meas, d_meas, y_meas, psi_meas, params,
                                         last_v=u_prev[:, 0])
            ticks_fallback += int((code >= INFEASIBLE).sum())
        elif hc.variant == 'runtime':
            # heading error wrapped to [-pi, pi] as a lane estimator reports it (the rows only use
            # its sine and cosine; the runtime rejects |psi| > pi)
            psi_wrapped = (psi_meas + np.pi) % (2 * np.pi) - np.pi
            u, fallback = _runtime_step(filters, u_nom, s_meas, u_prev[:, 1], s * u_prev[:, 1],
                                        d_meas, y_meas, psi_wrapped, params)
            ticks_fallback += int(fallback.sum())
        else:
            u = _clip_after_qp(c, u_nom, s_meas, d_meas, y_meas, psi_meas, params)
        finite_nom = np.isfinite(u_nom).all(1)
        ticks_finite += int(finite_nom.sum())
        ticks_intervened += int((finite_nom & (u != u_nom).any(1)).sum())
        bad = ~np.isfinite(u).all(1)
        viol['non_finite'] |= bad
        u = np.where(bad[:, None], u_prev, u)          # the drive keeps its last valid command
        u_prev = u
        lo, hi = speed_interval(c, s)
        viol['unreachable'] |= (u[:, 0] < lo - tol) | (u[:, 0] > hi + tol)
        viol['yaw_box'] |= np.abs(u[:, 1]) > c.w_max + tol
        for _ in range(hc.substeps):
            s_new = s + np.clip(u[:, 0] - s, -c.decel_max * dt, c.accel_max * dt)
            mid = yaw + 0.5 * u[:, 1] * dt
            step = 0.5 * (s + s_new) * dt
            x = x + step * np.cos(mid)
            y = y + step * np.sin(mid)
            yaw = yaw + u[:, 1] * dt
            viol['lateral'] |= (np.abs(s * u[:, 1]) > c.a_lat_max + tol) | \
                (np.abs(s_new * u[:, 1]) > c.a_lat_max + tol)
            s = s_new
            viol['speed_box'] |= (s < c.v_min - tol) | (s > c.v_max + tol)
            clear = np.hypot(ox - x, oy - y) - r_sum
            worst = np.minimum(worst, clear)
            viol['collision'] |= clear < 0.0
            lane_exit |= np.abs(y) > c.lane_half_width
    any_viol = np.zeros(n, bool)
    for v in viol.values():
        any_viol |= v
    total_ticks = ticks * n
    return {
        'family': hc.family, 'variant': hc.variant, 'control_period': T, 'rollouts': n,
        'substeps': hc.substeps, 'ticks': ticks,
        'violations': int(any_viol.sum()),
        'violations_by_check': {k: int(v.sum()) for k, v in viol.items()},
        'worst_clearance_m': float(worst.min()),
        'intervention_rate': ticks_intervened / max(ticks_finite, 1),
        'fallback_rate': ticks_fallback / total_ticks,
        'bad_reading_rate': ticks_bad_reading / total_ticks,
        'mean_progress_m': float(x.mean()),
        'lane_exits': int(lane_exit.sum()),
    }
