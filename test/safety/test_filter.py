"""SafetyFilter: limits always hold, minimal intervention, no deadlock, bad input -> fallback."""
import json
import math

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from liquid_controller.safety import Certificate, RobotState, SafetyConfig, SafetyFilter
from liquid_controller.safety.constraints import SOFT_ROWS, build_rows, speed_interval

CFG = SafetyConfig()
T = CFG.control_period
ANY_FLOAT = st.floats(allow_nan=True, allow_infinity=True, width=64)


def _valid_states():
    c = CFG
    return st.builds(
        RobotState,
        speed=st.floats(c.v_min, c.v_max),
        yaw_rate=st.floats(-c.w_max, c.w_max),
        lateral_accel=st.floats(-5, 5),
        obstacle_distance=st.one_of(st.none(), st.just(math.inf), st.floats(0.0, 20.0)),
        lane_offset=st.one_of(st.none(), st.floats(-1.0, 1.0)),
        heading_error=st.floats(-1.0, 1.0),
    ).map(lambda s: s if s.lane_offset is not None else RobotState(
        s.speed, s.yaw_rate, s.lateral_accel, s.obstacle_distance))


def _check_limits(u, state, cert):
    c = CFG
    assert u.shape == (2,) and np.all(np.isfinite(u))
    assert c.v_min - 1e-12 <= u[0] <= c.v_max + 1e-12
    assert abs(u[1]) <= c.w_max + 1e-12
    if not cert.status.startswith('invalid_state'):
        lo, hi = speed_interval(c, np.array([state.speed]))
        assert lo[0] - 1e-9 <= u[0] <= hi[0] + 1e-9           # reachable within one period
        assert abs(u[0] * u[1]) <= c.a_lat_max + 1e-9          # lateral acceleration
        assert abs(state.speed * u[1]) <= c.a_lat_max + 1e-9


@settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(v=ANY_FLOAT, w=ANY_FLOAT, state=_valid_states(),
       params=st.lists(st.floats(0.1, 10.0), min_size=2, max_size=2))
def test_any_nominal_gives_finite_command_inside_limits(v, w, state, params):
    f = SafetyFilter(CFG)
    u, cert = f.filter((v, w), state, params)
    _check_limits(u, state, cert)
    if not (abs(v) <= CFG.max_abs_nominal and abs(w) <= CFG.max_abs_nominal):
        assert cert.status == 'invalid_nominal' and cert.fallback
    else:
        assert cert.status in ('optimal', 'soft_relaxed')      # valid state: never infeasible
    json.dumps(cert.to_dict(), allow_nan=False)


@settings(max_examples=300, deadline=None)
@given(speed=ANY_FLOAT, yaw=ANY_FLOAT, acc=ANY_FLOAT, dist=st.one_of(st.none(), ANY_FLOAT),
       lane=st.one_of(st.none(), ANY_FLOAT), head=st.one_of(st.none(), ANY_FLOAT),
       params=st.one_of(st.none(), st.lists(ANY_FLOAT, min_size=0, max_size=5)),
       nominal=st.one_of(st.lists(ANY_FLOAT, min_size=0, max_size=3), st.text(max_size=3)))
def test_garbage_never_raises(speed, yaw, acc, dist, lane, head, params, nominal):
    f = SafetyFilter(CFG)
    state = RobotState(speed, yaw, acc, dist, lane, head)
    u, cert = f.filter(nominal, state, params)
    assert u.shape == (2,) and np.all(np.isfinite(u))
    assert CFG.v_min <= u[0] <= CFG.v_max and abs(u[1]) <= CFG.w_max
    if cert.fallback:
        assert u[1] == 0.0
    json.dumps(cert.to_dict(), allow_nan=False)


@pytest.mark.parametrize('state,params,nominal,cause', [
    (RobotState(math.nan, 0, 0), None, (1, 0), 'invalid_state:speed'),
    (RobotState(9.0, 0, 0), None, (1, 0), 'invalid_state:speed'),
    (RobotState(1.0, math.inf, 0), None, (1, 0), 'invalid_state:yaw_rate'),
    (RobotState(1.0, 0, math.nan), None, (1, 0), 'invalid_state:lateral_accel'),
    (RobotState(1.0, 0, 0, math.nan), None, (1, 0), 'invalid_state:obstacle_distance'),
    (RobotState(1.0, 0, 0, -0.5), None, (1, 0), 'invalid_state:obstacle_distance'),
    (RobotState(1.0, 0, 0, None, 0.1, None), None, (1, 0), 'invalid_state:heading_error'),
    (RobotState(1.0, 0, 0, None, math.nan, 0.0), None, (1, 0), 'invalid_state:lane_offset'),
    (RobotState(1.0, 0, 0, None, 0.0, 4.0), None, (1, 0), 'invalid_state:heading_error'),
    (RobotState(1.0, 0, 0), [1.0], (1, 0), 'invalid_params'),
    (RobotState(1.0, 0, 0), [1.0, math.nan], (1, 0), 'invalid_params'),
    (RobotState(1.0, 0, 0), [1.0, 50.0], (1, 0), 'invalid_params'),
    (RobotState(1.0, 0, 0), [1.0, 0.0], (1, 0), 'invalid_params'),
    (RobotState(1.0, 0, 0), None, (math.inf, 0), 'invalid_nominal'),
    (RobotState(1.0, 0, 0), None, 'fast', 'invalid_nominal'),
    (None, None, (1, 0), 'invalid_state:type'),
])
def test_bad_input_gives_fallback_with_cause(state, params, nominal, cause):
    f = SafetyFilter(CFG)
    u, cert = f.filter(nominal, state, params)
    assert cert.status == cause and cert.fallback
    assert np.all(np.isfinite(u)) and u[1] == 0.0
    speed = getattr(state, 'speed', math.nan)
    if isinstance(speed, float) and math.isfinite(speed) and abs(speed) < CFG.v_max:
        # brake at the limit: one period of maximal deceleration
        assert u[0] == pytest.approx(max(speed - CFG.decel_max * T, 0.0))


def test_brake_command_uses_last_command_when_speed_is_bad():
    f = SafetyFilter(CFG)
    u, _ = f.filter((1.0, 0.0), RobotState(1.0, 0, 0), None)
    assert u[0] == pytest.approx(1.0)
    b = f.brake_command(RobotState(math.nan, 0, 0))
    assert b[0] == pytest.approx(1.0 - CFG.decel_max * T) and b[1] == 0.0
    f.reset()
    assert f.brake_command(RobotState(math.nan, 0, 0)).tolist() == [0.0, 0.0]


def test_brake_command_reverse_and_box():
    c = SafetyConfig(v_min=-0.5)
    f = SafetyFilter(c)
    assert f.brake_command(RobotState(-0.4, 0, 0))[0] == pytest.approx(-0.4 + c.accel_max * T)
    assert f.brake_command(RobotState(0.01, 0, 0))[0] == 0.0
    assert f.brake_command(RobotState(2.3, 0, 0))[0] == pytest.approx(c.v_max)


def test_minimal_intervention_safe_nominal_returned_exactly():
    """Nominal commands that satisfy every row come back bit for bit, on random states."""
    rng = np.random.default_rng(3)
    f = SafetyFilter(CFG)
    returned = 0
    for _ in range(3000):
        s = rng.uniform(0, CFG.v_max)
        state = RobotState(s, 0.0, 0.0, obstacle_distance=float(rng.uniform(0, 6)),
                           lane_offset=float(rng.uniform(-0.4, 0.4)),
                           heading_error=float(rng.uniform(-0.3, 0.3)))
        p = rng.uniform(0.1, 10, 2)
        lo, hi = speed_interval(CFG, np.array([s]))
        u = np.array([rng.uniform(lo[0], hi[0]), rng.uniform(-CFG.w_max, CFG.w_max)])
        G, h, _ = build_rows(CFG, np.array([s]), u[None], np.array([state.obstacle_distance]),
                             np.array([state.lane_offset]), np.array([state.heading_error]), p[None])
        if not np.all(G[0] @ u <= h[0]):
            continue                          # not a safe nominal
        out, cert = f.filter(u, state, p)
        assert out[0] == u[0] and out[1] == u[1] and not cert.intervened
        assert cert.status == 'optimal'
        returned += 1
    assert returned > 300


def test_minimal_intervention_cruise_far_from_everything():
    f = SafetyFilter(CFG)
    state = RobotState(1.0, 0.1, 0.1, obstacle_distance=None, lane_offset=0.0, heading_error=0.0)
    u, cert = f.filter((1.02, 0.1), state, (1.0, 1.0))
    assert u.tolist() == [1.02, 0.1] and cert.status == 'optimal' and cert.active_rows == []


def test_unsafe_nominal_is_projected_and_certificate_names_rows():
    f = SafetyFilter(CFG)
    stop = 1.0 / (2 * CFG.decel_max)
    # barrier exactly 0: only braking at the limit keeps distance - margin >= stopping distance
    state = RobotState(1.0, 0.0, 0.0, obstacle_distance=CFG.obstacle_margin + stop)
    u, cert = f.filter((2.0, 0.3), state, None)
    assert u[0] == pytest.approx(1.0 - CFG.decel_max * T, abs=1e-9) and u[1] == 0.3
    assert cert.intervened and 'obstacle_b' in cert.active_rows
    assert cert.barrier_values['obstacle'] == pytest.approx(0.0, abs=1e-12)
    # with room to spare the speed is limited by the acceleration row instead
    state = RobotState(1.0, 0.0, 0.0, obstacle_distance=3.0)
    u, cert = f.filter((2.0, 0.3), state, None)
    assert u[0] == pytest.approx(1.0 + CFG.accel_max * T) and cert.active_rows == [
        'v_upper:accel_max']
    assert cert.barrier_values['obstacle'] == pytest.approx(3.0 - 0.3 - stop)


def test_no_deadlock_stopped_robot_facing_obstacle_can_turn_away():
    f = SafetyFilter(CFG)
    for dist in (CFG.obstacle_margin + 0.01, CFG.obstacle_margin - 0.05):   # even inside margin
        state = RobotState(0.0, 0.0, 0.0, obstacle_distance=dist)
        u, cert = f.filter((0.0, 1.5), state, None)
        assert u.tolist() == [0.0, 1.5] and not cert.fallback       # turning in place: untouched
        u, cert = f.filter((1.0, 1.5), state, None)
        assert u[1] == 1.5 and not cert.fallback                      # steering untouched
        room = dist - CFG.obstacle_margin
        # forward: one period at v plus the stopping distance from v must fit in the room left
        assert T * u[0] + u[0] ** 2 / (2 * CFG.decel_max) <= max(room, 0.0) + 1e-12
    # once turned away the obstacle is no longer ahead: driving off is allowed
    u, cert = f.filter((1.0, 0.0), RobotState(0.0, 0.0, 0.0, obstacle_distance=None), None)
    assert u[0] == pytest.approx(CFG.accel_max * T) and cert.status == 'optimal'


def test_soft_lane_rows_relax_instead_of_failing():
    f = SafetyFilter(CFG)
    # far outside the lane, heading further out, high class-K gains: lane rows cannot hold
    state = RobotState(2.0, 0.0, 0.0, lane_offset=0.9, heading_error=0.8)
    u, cert = f.filter((2.0, 0.0), state, (10.0, 10.0))
    assert cert.status == 'soft_relaxed' and cert.slack and not cert.fallback
    assert u[1] < 0                                   # steering back toward the lane


def test_certificate_round_trip_and_json():
    f = SafetyFilter(CFG)
    _, cert = f.filter((2.0, 0.5), RobotState(1.0, 0.0, 0.0, 2.0, 0.1, 0.05), (2.0, 3.0))
    d = cert.to_dict()
    text = json.dumps(d, allow_nan=False)
    back = Certificate.from_dict(json.loads(text))
    assert back == cert
    assert set(d) >= {'status', 'barrier_values', 'active_rows', 'slack', 'solve_time_s',
                      'nominal', 'filtered'}
    assert d['solve_time_s'] > 0
    _, cert = f.filter((math.nan, 0.0), RobotState(1.0, 0.0, 0.0), None)
    d = cert.to_dict()
    assert d['nominal'][0] is None
    json.dumps(d, allow_nan=False)


def test_four_barrier_params_per_side():
    c = SafetyConfig(num_barrier_params=4)
    f = SafetyFilter(c)
    state = RobotState(1.0, 0.0, 0.0, lane_offset=0.4, heading_error=0.3)
    u_strict, _ = f.filter((1.0, 0.5), state, (0.1, 0.1, 10.0, 10.0))
    u_loose, _ = f.filter((1.0, 0.5), state, (10.0, 10.0, 0.1, 0.1))
    # the left barrier (heading toward it) is the one whose gains matter here
    assert u_strict[1] < u_loose[1]
    assert SOFT_ROWS.count(True) == 2


def test_torch_tensors_from_the_policy_are_accepted():
    torch = pytest.importorskip('torch')
    f = SafetyFilter(CFG)
    u_nom = torch.tensor([0.5, 0.1], requires_grad=True)
    params = torch.tensor([2.0, 2.0], requires_grad=True)
    u, cert = f.filter(u_nom * 1.0, RobotState(0.5, 0.0, 0.0), params * 1.0)
    assert cert.status == 'optimal' and u[0] == pytest.approx(0.5) and u[1] == pytest.approx(0.1)
