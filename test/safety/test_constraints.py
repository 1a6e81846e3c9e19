"""The rows are conservative and always satisfiable: checked against the plant, not the formulas."""
import numpy as np
import pytest

from liquid_controller.safety import SafetyConfig
from liquid_controller.safety.constraints import (ROW_NAMES, SOFT_ROWS, brake_speed, build_rows,
                                                  path_bound, speed_interval, stopping_distance)
from liquid_controller.safety.qp_numpy import INFEASIBLE, solve_qp

HARD = ~np.array(SOFT_ROWS)


def _absint(a, b, tau):
    """Integral of |speed| when speed moves linearly from a to b over tau seconds."""
    if a * b < 0:
        return tau * (a * a + b * b) / (2 * abs(a - b))
    return tau * abs(a + b) / 2


def _plant(c, s, v, w, n=400):
    """One period of the drive, integrated exactly per substep (ramp at the limit, then hold).

    Returns path length, end speed and max |speed * w|. Independent of the row formulas.
    """
    dt = c.control_period / n
    path, lat = 0.0, abs(s * w)
    for _ in range(n):
        rate = c.accel_max if v > s else c.decel_max
        tau = min(abs(v - s) / rate, dt)
        s_new = s + np.sign(v - s) * rate * tau
        path += _absint(s, s_new, tau) + abs(s_new) * (dt - tau)
        s = s_new
        lat = max(lat, abs(s * w))
    return path, s, lat


@pytest.mark.parametrize('v_min', [0.0, -0.5])
def test_rows_keep_barrier_invariant_through_the_plant(v_min):
    """From any state with barrier >= 0, every command meeting the hard rows keeps it >= 0."""
    c = SafetyConfig(v_min=v_min, control_period=0.1)
    rng = np.random.default_rng(1)
    n = 250
    s = rng.uniform(v_min, c.v_max, n)
    stop = stopping_distance(c, s)
    d = c.obstacle_margin + stop + rng.uniform(0, 0.5, n) * (rng.random(n) < 0.8)
    u_nom = np.stack([rng.uniform(v_min - 1, c.v_max + 1, n), rng.uniform(-3, 3, n)], 1)
    G, h, bar = build_rows(c, s, u_nom, d)
    assert np.all(bar['obstacle'] >= -1e-12)
    checked = 0
    for i in range(n):
        lo, hi = speed_interval(c, s[i:i + 1])
        for v in np.linspace(lo[0], hi[0], 25):
            for w in (-c.w_max, -0.7, 0.0, 0.9, c.w_max):
                u = np.array([v, w])
                if not np.all(G[i][HARD] @ u <= h[i][HARD] + 1e-12):
                    continue
                path, s_end, lat = _plant(c, s[i], v, w, n=4)
                # next tick: distance shrank at most by the path; speed is now v
                barrier_next = d[i] - path - c.obstacle_margin - stopping_distance(
                    c, np.array([s_end]))[0]
                assert barrier_next >= -1e-9, (s[i], d[i], v)
                assert lat <= c.a_lat_max + 1e-9
                checked += 1
    assert checked > 2000


def test_path_bound_is_an_upper_bound_and_exact_when_braking():
    c = SafetyConfig(v_min=-0.5, control_period=0.1)
    rng = np.random.default_rng(2)
    for _ in range(300):
        s = rng.uniform(c.v_min, c.v_max)
        lo, hi = speed_interval(c, np.array([s]))
        for v in np.linspace(lo[0], hi[0], 9):
            path, s_end, _ = _plant(c, s, v, 0.0, n=4)
            bound = path_bound(c, np.array([s]), np.array([v]))[0]
            assert path + stopping_distance(c, np.array([s_end]))[0] <= bound + 1e-12
        vb = brake_speed(c, np.array([s]))
        assert path_bound(c, np.array([s]), vb)[0] == pytest.approx(
            stopping_distance(c, np.array([s]))[0], abs=1e-12)


def test_hard_rows_always_feasible_for_valid_states():
    """Valid speed and any obstacle distance: the braking command meets every hard row."""
    for v_min in (0.0, -0.5):
        c = SafetyConfig(v_min=v_min)
        rng = np.random.default_rng(3)
        n = 20000
        s = rng.uniform(c.v_min, c.v_max, n)
        d = np.where(rng.random(n) < 0.2, np.inf, rng.uniform(0, 5, n))   # inside margin too
        u_nom = np.stack([rng.uniform(-3, 3, n), rng.uniform(-3, 3, n)], 1)
        y = rng.uniform(-1, 1, n)
        psi = rng.uniform(-1.5, 1.5, n)
        p = rng.uniform(0.1, 10, (n, 2))
        G, h, _ = build_rows(c, s, u_nom, d, y, psi, p)
        brake = np.stack([brake_speed(c, s), np.zeros(n)], 1)
        res = np.einsum('bmk,bk->bm', G, brake) - h
        assert np.all(res[:, HARD] <= 1e-12)
        sol = solve_qp(G, h, u_nom, c.weights, SOFT_ROWS, c.soft_penalty)
        assert not np.any(sol.status == INFEASIBLE)


def test_lateral_rows_are_conservative_and_exact_at_a_safe_nominal():
    c = SafetyConfig()
    rng = np.random.default_rng(4)
    n = 3000
    s = rng.uniform(0.5, c.v_max, n)
    lo, hi = speed_interval(c, s)
    v = rng.uniform(lo, hi)
    w = rng.uniform(-c.w_max, c.w_max, n)
    u = np.stack([v, w], 1)
    G, h, _ = build_rows(c, s, u, None)
    lat = [ROW_NAMES.index('lat_pos'), ROW_NAMES.index('lat_neg'),
           ROW_NAMES.index('w_upper'), ROW_NAMES.index('w_lower')]
    meets = np.all(np.einsum('bmk,bk->bm', G[:, lat], u) <= h[:, lat] + 1e-12, axis=1)
    truly_safe = (np.abs(v * w) <= c.a_lat_max) & (np.abs(s * w) <= c.a_lat_max)
    assert np.all(truly_safe[meets])                     # conservative
    assert np.all(meets[truly_safe])                     # and exact at the tangent point
    assert (~truly_safe).sum() > 100
    # a different command at the same state may be cut (the tangent lies below the hyperbola)
    probe = np.stack([v * 0.6 + 0.4 * hi, np.sign(w) * c.a_lat_max / np.maximum(v, 1e-3)], 1)
    cut = np.einsum('bmk,bk->bm', G[:, lat], probe) > h[:, lat] + 1e-12
    assert np.all((np.abs(probe[:, 0] * probe[:, 1]) <= c.a_lat_max + 1e-12) | cut.any(1))


def test_lane_rows_use_the_class_k_parameters():
    c = SafetyConfig()
    s = np.array([1.0, 1.0])
    y = np.array([0.3, 0.3])
    psi = np.array([0.2, 0.2])
    p = np.array([[0.5, 0.5], [5.0, 5.0]])
    G, h, bar = build_rows(c, s, np.array([[1.0, 0.0]] * 2), None, y, psi, p)
    i = ROW_NAMES.index('lane_left')
    assert np.array_equal(G[0, i], G[1, i]) and h[1, i] > h[0, i]     # larger gains: looser
    L = c.lane_half_width - c.lane_margin
    # h'' + (p1 + p2) h' + p1 p2 h >= 0 with h = L - y, h' = -s sin(psi),
    # h'' = -(v - s)/T sin(psi) - s cos(psi) w; check at a command on the row's boundary
    T = c.control_period
    w = 0.0
    v = (h[0, i] - G[0, i, 1] * w) / G[0, i, 0]
    hb, hd = L - 0.3, -np.sin(0.2)
    hdd = -(v - 1.0) / T * np.sin(0.2) - np.cos(0.2) * w
    assert hdd + 1.0 * hd + 0.25 * hb == pytest.approx(0.0, abs=1e-12)
    assert bar['lane_left'][0] == pytest.approx(L - 0.3)
