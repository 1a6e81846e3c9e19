"""The safety filter used at every control tick: rows -> exact QP -> safe command + certificate.

:class:`SafetyFilter` is what the runtime calls once per tick; it never raises. :func:`filter_batch`
is the same computation over a batch of states in arrays (used by the closed-loop harness).

Fallback (bad state, nominal or parameters, infeasible rows, internal error): brake at the limit for
one period from the speed LAST COMMANDED (0 when there is none), yaw rate 0; see
:func:`fallback_command`. Never from the measured speed: a reading the filter rejects (or one that
makes the rows infeasible) says nothing reliable about the robot, and braking "from" a reading of
1e9 m/s would command full speed. The previous command was certified by the rows at the previous
tick (braking at the limit from it keeps every barrier >= 0), and the drive tracks commands, so this
brakes the robot without ever asking it to go faster than it was told to last.
"""
import math
import time
from dataclasses import asdict, dataclass, field

import numpy as np

from liquid_controller.safety.config import RobotState, SafetyConfig
from liquid_controller.safety.constraints import (NUM_ROWS, ROW_NAMES, SOFT_ROWS, brake_speed,
                                                  build_rows, row_labels)
from liquid_controller.safety.qp_numpy import INFEASIBLE, SOFT_RELAXED, solve_qp

# Per-tick outcome codes of filter_batch (codes >= INFEASIBLE mean the fallback command was used).
OPTIMAL = 0
CODE_NAMES = ('optimal', 'soft_relaxed', 'infeasible', 'invalid_nominal', 'invalid_params',
              'invalid_state')
INVALID_NOMINAL = 3
INVALID_PARAMS = 4
INVALID_STATE = 5


@dataclass
class Certificate:
    """What the filter did at one tick (published by the controller node).

    ``status``: 'optimal' | 'soft_relaxed' | 'infeasible' | 'invalid_nominal' | 'invalid_params' |
    'invalid_state:<field>' | 'internal_error:<type>'. ``fallback``: the fallback command was sent:
    one period of braking at the limit from the last commanded speed (not the measured one), yaw
    rate 0, so ``|filtered v|`` never exceeds the previous command's. ``barrier_values``: obstacle
    (m; distance - margin - stopping distance, inf without an obstacle; negative means the filter is
    braking at the limit), lane_left / lane_right (m; NaN without a lane estimate), lateral_accel
    (m/s^2; a_lat_max - |measured lateral acceleration|).
    ``active_rows``: rows holding with equality, named ``slot:limit``. ``slack``: normalised violation of each relaxed soft row.
    ``solve_time_s``: wall time of the whole filter call. ``nominal`` / ``filtered``: (v, w).
    """

    status: str
    fallback: bool
    nominal: tuple
    filtered: tuple
    intervened: bool
    barrier_values: dict = field(default_factory=dict)
    active_rows: list = field(default_factory=list)
    slack: dict = field(default_factory=dict)
    solve_time_s: float = 0.0

    def to_dict(self):
        """JSON-able dict; non-finite numbers become None (JSON has no NaN/Inf)."""
        def clean(x):
            if isinstance(x, float):
                return x if math.isfinite(x) else None
            if isinstance(x, dict):
                return {k: clean(v) for k, v in x.items()}
            if isinstance(x, (list, tuple)):
                return [clean(v) for v in x]
            return x
        return clean(asdict(self))

    @classmethod
    def from_dict(cls, d):
        """Inverse of :meth:`to_dict` (None numbers come back as NaN)."""
        def num(x):
            return math.nan if x is None else float(x)
        return cls(status=d['status'], fallback=bool(d['fallback']),
                   nominal=tuple(num(x) for x in d['nominal']),
                   filtered=tuple(num(x) for x in d['filtered']),
                   intervened=bool(d['intervened']),
                   barrier_values={k: num(v) for k, v in d['barrier_values'].items()},
                   active_rows=list(d['active_rows']),
                   slack={k: num(v) for k, v in d['slack'].items()},
                   solve_time_s=num(d['solve_time_s']))


def fallback_command(config, last_v):
    """Fallback commands (B,2): one period of braking at the limit from ``last_v``, yaw rate 0.

    ``last_v`` (B,): the speed last commanded to each drive. Non-finite values count as 0 (no usable
    previous command: stop) and the rest are clipped to the actuator box first, so the result is
    always finite, inside the box, reachable from ``last_v`` and ``|v| <= |last_v|``.
    """
    c = config
    v = np.asarray(last_v, dtype=np.float64)
    v = np.where(np.isfinite(v), np.clip(v, c.v_min, c.v_max), 0.0)
    return np.stack([brake_speed(c, v), np.zeros_like(v)], -1)


def filter_batch(config, u_nom, speed, obstacle_distance=None, lane_offset=None,
                 heading_error=None, params=None, last_v=None):
    """Filter a batch of nominal commands (NumPy; never raises on NaN/Inf values).

    u_nom (B,2); speed (B,) measured; obstacle_distance (B,) (+inf: none); lane_offset,
    heading_error (B,) (NaN: none); params (B,K) or None (config defaults); last_v (B,): the speed
    last commanded to each drive (None: none, i.e. 0). Returns ``(u (B,2), code (B,), sol,
    barriers)`` with ``code`` in CODE_NAMES order; codes >= 2 got :func:`fallback_command` from
    ``last_v`` (never from ``speed``). Only speed, distance, nominal and params are checked here;
    :class:`SafetyFilter` checks the whole :class:`RobotState`.
    """
    c = config
    u_nom = np.asarray(u_nom, dtype=np.float64)
    speed = np.asarray(speed, dtype=np.float64)
    B = speed.shape[0]
    with np.errstate(invalid='ignore'):
        nominal_ok = (np.abs(u_nom) <= c.max_abs_nominal).all(axis=1)     # False for NaN/Inf
    state_ok = np.isfinite(speed)
    if obstacle_distance is not None:
        obstacle_distance = np.asarray(obstacle_distance, dtype=np.float64)
        state_ok &= ~np.isnan(obstacle_distance) & (obstacle_distance >= 0)
    if params is None:
        params = np.tile(np.asarray(c.default_barrier_params), (B, 1))
    params = np.asarray(params, dtype=np.float64)
    lo_p, hi_p = c.barrier_param_range
    params_ok = np.isfinite(params).all(1) & (params >= lo_p).all(1) & (params <= hi_p).all(1)
    # safe stand-ins so the row builder and solver see finite numbers everywhere
    s = np.where(state_ok, speed, 0.0)
    un = np.where(nominal_ok[:, None], u_nom, np.stack([s, np.zeros(B)], 1))
    pr = np.where(params_ok[:, None], params, np.asarray(c.default_barrier_params)[None])
    d = None if obstacle_distance is None else np.where(state_ok, obstacle_distance, np.inf)
    G, h, barriers = build_rows(c, s, un, d, lane_offset, heading_error, pr)
    sol = solve_qp(G, h, un, c.weights, SOFT_ROWS, c.soft_penalty, c.solver_tol)
    code = np.asarray(sol.status).copy()
    code = np.where(state_ok, np.where(params_ok, np.where(nominal_ok, code, INVALID_NOMINAL),
                                       INVALID_PARAMS), INVALID_STATE)
    fallback = code >= INFEASIBLE
    brake = fallback_command(c, np.zeros(B) if last_v is None else np.broadcast_to(last_v, (B,)))
    u = np.where(fallback[:, None], brake, sol.u)
    # The solver meets every row to within its tolerance; the actuator box is known exactly, so the
    # last few ulps are removed (a nominal of -7e-12 with v_min 0 is accepted as feasible by the
    # scale-free test and must not reach the actuators as a reverse command).
    u = np.clip(u, [c.v_min, -c.w_max], [c.v_max, c.w_max])
    return u, code, sol, barriers


class SafetyFilter:
    """Per-tick BarrierNet safety filter for the runtime (NumPy, float64). Never raises.

    ``filter(u_nominal, state, barrier_params)`` returns the safe command and a :class:`Certificate`.
    It keeps the last command it returned (``last_command``); the fallback brakes from that, never
    from a measurement (module docstring). A caller that also sends commands of its own (e.g.
    braking while its inputs are stale) must report them with :meth:`record_command`, or the
    fallback would brake from an older, faster command.
    """

    def __init__(self, config=None):
        self.config = config if config is not None else SafetyConfig()
        if not isinstance(self.config, SafetyConfig):
            from liquid_controller.errors import InputError
            raise InputError('config', config, 'must be a SafetyConfig')
        self.last_command = None

    def reset(self):
        """Forget the last command (new episode): the next fallback commands a stop."""
        self.last_command = None

    def record_command(self, u):
        """Record ``u = (v, w)`` as the command last sent to the drive (one not from ``filter``).

        Non-finite components are recorded as 0 and v is clipped to the actuator box, as the
        fallback would treat them anyway.
        """
        c = self.config
        v, w = _pair(u)
        self.last_command = (min(max(v, c.v_min), c.v_max) if math.isfinite(v) else 0.0,
                             w if math.isfinite(w) else 0.0)

    def brake_command(self):
        """Deterministic fallback (2,): :func:`fallback_command` from the last command (0 if none).

        One period of braking at the limit toward 0 from the last commanded speed, yaw rate 0.
        Always finite, inside the actuator box, and never faster than the last command.
        """
        last_v = self.last_command[0] if self.last_command is not None else 0.0
        return fallback_command(self.config, np.array([last_v]))[0]

    def filter(self, u_nominal, state, barrier_params=None):
        """Safe command ``(2,)`` and certificate for one tick. Never raises.

        u_nominal: (v, w) from the policy (anything: NaN/Inf/wrong shape -> fallback);
        state: :class:`RobotState`; barrier_params: (K,) class-K parameters or None (defaults).
        """
        t0 = time.perf_counter()
        try:
            u, cert = self._filter(u_nominal, state, barrier_params)
        except Exception as exc:        # last line of defence: a control tick never raises
            u = self.brake_command()
            cert = Certificate(status=f'internal_error:{type(exc).__name__}', fallback=True,
                               nominal=_pair(u_nominal), filtered=tuple(float(x) for x in u),
                               intervened=True)
        cert.solve_time_s = time.perf_counter() - t0
        self.last_command = (float(u[0]), float(u[1]))
        return u, cert

    def _filter(self, u_nominal, state, barrier_params):
        c = self.config
        nominal = _pair(u_nominal)
        cause = state.validate(c) if isinstance(state, RobotState) else 'invalid_state:type'
        params = self._params(barrier_params)
        if cause is None and params is None:
            cause = 'invalid_params'
        if cause is None and not all(abs(x) <= c.max_abs_nominal for x in nominal):
            cause = 'invalid_nominal'
        if cause is not None:
            u = self.brake_command()
            return u, Certificate(status=cause, fallback=True, nominal=nominal,
                                  filtered=(float(u[0]), float(u[1])), intervened=True)
        d = state.obstacle_distance
        d = math.inf if d is None else float(d)
        y = math.nan if state.lane_offset is None else float(state.lane_offset)
        psi = math.nan if state.heading_error is None else float(state.heading_error)
        last_v = self.last_command[0] if self.last_command is not None else 0.0
        u, code, sol, barriers = filter_batch(
            c, np.array([nominal]), np.array([float(state.speed)]), np.array([d]), np.array([y]),
            np.array([psi]), params[None], last_v=np.array([last_v]))
        u = u[0]
        code = int(code[0])
        labels = row_labels(c, state.speed)
        active = [labels[i] for i in range(NUM_ROWS) if sol.active[0, i]]
        slack = {ROW_NAMES[i]: float(sol.slack[0, i]) for i in range(NUM_ROWS)
                 if SOFT_ROWS[i] and sol.slack[0, i] > 0}
        filtered = (float(u[0]), float(u[1]))
        values = {k: float(v[0]) for k, v in barriers.items()}
        # measured lateral acceleration (IMU) against its limit: information, not a row
        values['lateral_accel'] = c.a_lat_max - abs(float(state.lateral_accel))
        cert = Certificate(
            status=CODE_NAMES[code], fallback=code >= INFEASIBLE, nominal=nominal,
            filtered=filtered, intervened=filtered != nominal,
            barrier_values=values,
            active_rows=active if code <= SOFT_RELAXED else [], slack=slack)
        return u, cert

    def _params(self, barrier_params):
        """Validated (K,) parameters, or None when unusable."""
        c = self.config
        if barrier_params is None:
            return np.asarray(c.default_barrier_params, dtype=np.float64)
        try:
            p = np.asarray(_plain(barrier_params), dtype=np.float64).reshape(-1)
        except Exception:                   # anything unusable is 'invalid_params'
            return None
        lo, hi = c.barrier_param_range
        if p.shape != (c.num_barrier_params,) or not np.all(np.isfinite(p)) \
                or np.any(p < lo) or np.any(p > hi):
            return None
        return p


def _pair(u):
    """(v, w) as two floats; anything unusable becomes (NaN, NaN)."""
    try:
        a = np.asarray(_plain(u), dtype=np.float64).reshape(-1)
        if a.shape == (2,):
            return (float(a[0]), float(a[1]))
    except Exception:
        pass
    return (math.nan, math.nan)


def _plain(x):
    """Torch tensors (even ones that require grad, or on a GPU) as NumPy; anything else as is."""
    if hasattr(x, 'detach') and hasattr(x, 'cpu'):
        return x.detach().cpu().numpy()
    return x
