"""Independent oracle for the safety QP: cvxpy + Clarabel, with an exact polish of its answer.

Random instances of ``min sum w (u - r)^2 + rho sum_soft max(0, g.u - h)/|g|  s.t. hard rows``,
solved by Clarabel through cvxpy (tight tolerances, slack variables for the soft rows). An interior
point solver stops about 1e-9 away from the optimum, so for the 1e-9 comparison the oracle's answer is
*polished*: its active set (rows at equality, soft rows with positive slack) is read off the oracle
solution, and the equality-constrained KKT system of that active set is solved with general dense
linear algebra (``numpy.linalg.lstsq``, nothing shared with the code under test). The polished point
is used only if it is within 1e-6 of Clarabel's point and satisfies the KKT conditions itself
(primal feasible, multipliers >= 0, soft multipliers <= rho); otherwise the instance is reported as
ambiguous. Instances within 1e-7 of the feasibility boundary (measured with a HiGHS LP) are skipped,
since any two solvers may disagree there.

Near-parallel rows (:func:`near_parallel_instance`) need a second referee: there Clarabel itself
misjudges feasibility (it calls thin feasible wedges whose feasible points lie far away infeasible,
and fails or stops inaccurate), so disagreements are settled by :func:`exact_feasible` and
:func:`exact_optimum`, exact rational arithmetic on the given floats (:mod:`fractions`; nothing
shared with the code under test).
"""
from fractions import Fraction

import cvxpy as cp
import numpy as np
from scipy.optimize import linprog

_PROBLEMS = {}
_DEFAULT = dict(warm_start=False, tol_gap_abs=1e-8, tol_gap_rel=1e-8, tol_feas=1e-8,
                tol_ktratio=1e-6, max_iter=200)
_TIGHT = dict(warm_start=False, tol_gap_abs=1e-11, tol_gap_rel=1e-11, tol_feas=1e-11,
              tol_ktratio=1e-9, max_iter=500)


def random_instance(rng):
    """One random instance: dict(G (m,2), h (m,), r (2,), w (2,), soft (m,) bool, rho)."""
    m = int(rng.integers(1, 9))
    ns = int(rng.integers(0, min(2, m) + 1))
    ang = rng.uniform(0, 2 * np.pi, m)
    mag = 10.0 ** rng.uniform(-1, 1, m)
    G = np.stack([np.cos(ang), np.sin(ang)], 1) * mag[:, None]
    kind = rng.random(m)
    G[kind < 0.15, 1] = 0.0                     # rows of the actuator-box kind
    G[(kind >= 0.15) & (kind < 0.3), 0] = 0.0
    G[G.sum(1) == 0, 0] = 1.0
    h = rng.normal(0, 2, m) * mag
    r = rng.normal(0, 3, 2)
    w = rng.uniform(0.2, 5.0, 2)
    soft = np.zeros(m, bool)
    soft[m - ns:] = True
    rho = float(rng.choice([1.0, 10.0, 1000.0]))
    return dict(G=G, h=h, r=r, w=w, soft=soft, rho=rho)


def feasibility_margin(G, h, soft):
    """Largest t with g_i.u/|g_i| + t <= h_i/|g_i| for all hard rows (|u| <= 1e6, t <= 1)."""
    hard = ~soft
    if not hard.any():
        return 1.0
    n = np.linalg.norm(G[hard], axis=1)
    A = np.hstack([G[hard] / n[:, None], np.ones((hard.sum(), 1))])
    b = h[hard] / n
    res = linprog([0, 0, -1], A_ub=A, b_ub=b, bounds=[(-1e6, 1e6), (-1e6, 1e6), (None, 1.0)],
                  method='highs')
    return -res.fun if res.status == 0 else -np.inf


def _problem(m, ns):
    key = (m, ns)
    if key not in _PROBLEMS:
        u = cp.Variable(2)
        G = cp.Parameter((m, 2))
        h = cp.Parameter(m)
        r = cp.Parameter(2)                    # sqrt(w) * r_ref (keeps the problem DPP)
        w = cp.Parameter(2, nonneg=True)       # sqrt(w)
        rho = cp.Parameter(nonneg=True)
        cons = []
        obj = cp.sum_squares(cp.multiply(w, u) - r)
        if m - ns:
            cons.append(G[:m - ns] @ u <= h[:m - ns])
        if ns:
            sig = cp.Variable(ns)
            cons += [G[m - ns:] @ u - sig <= h[m - ns:], sig >= 0]
            obj = obj + rho * cp.sum(sig)
        _PROBLEMS[key] = (cp.Problem(cp.Minimize(obj), cons), u, G, h, r, w, rho)
    return _PROBLEMS[key]


def oracle(inst, tight=False):
    """Clarabel's answer: (status, u (2,) or None).

    status: 'optimal' | 'optimal_inaccurate' | 'infeasible' | 'failed'.
    """
    G, h, soft = inst['G'], inst['h'], inst['soft']
    m, ns = len(h), int(soft.sum())
    n = np.linalg.norm(G, axis=1)
    Gs, hs = G.copy(), h.copy()
    Gs[soft] /= n[soft, None]                  # the soft penalty is per unit distance
    hs[soft] /= n[soft]
    prob, u, Gp, hp, rp, wp, rhop = _problem(m, ns)
    sw = np.sqrt(inst['w'])
    Gp.value, hp.value, rp.value, wp.value, rhop.value = Gs, hs, sw * inst['r'], sw, inst['rho']
    # warm_start=False: cvxpy would otherwise update the previous Clarabel solver in place
    try:
        prob.solve(solver='CLARABEL', **_DEFAULT)          # default settings decide feasibility
    except cp.error.SolverError:
        return 'failed', None
    if prob.status in ('infeasible', 'infeasible_inaccurate'):
        return 'infeasible', None
    if tight:                                              # tighten before the polish
        try:
            prob.solve(solver='CLARABEL', **_TIGHT)
        except cp.error.SolverError:
            try:
                prob.solve(solver='CLARABEL', **_DEFAULT)
            except cp.error.SolverError:
                return 'failed', None
    # 'optimal_inaccurate': Clarabel stopped early; the caller must not treat it as exact
    return prob.status, np.asarray(u.value, dtype=np.float64)


def objective(inst, u):
    """The problem's objective at u (soft penalty on normalised rows)."""
    G, h, soft = inst['G'], inst['h'], inst['soft']
    n = np.linalg.norm(G, axis=1)
    viol = np.maximum((G @ u - h) / n, 0.0)
    return float((inst['w'] * (u - inst['r']) ** 2).sum() + inst['rho'] * viol[soft].sum())


def polish(inst, u_o, act_tol=1e-6):
    """Exact optimum from the oracle's active set, or None when it cannot be confirmed."""
    G, h, soft, r, w, rho = inst['G'], inst['h'], inst['soft'], inst['r'], inst['w'], inst['rho']
    n = np.linalg.norm(G, axis=1)
    Gn, hn = G / n[:, None], h / n
    res = Gn @ u_o - hn
    violated = soft & (res > act_tol)
    active = np.abs(res) <= act_tol
    q = 2 * w * r - rho * Gn[violated].sum(axis=0)          # stationarity: 2W u + c + A'l = 2W r
    A = Gn[active]
    k = A.shape[0]
    K = np.zeros((2 + k, 2 + k))
    K[:2, :2] = np.diag(2 * w)
    K[:2, 2:] = A.T
    K[2:, :2] = A
    sol = np.linalg.lstsq(K, np.concatenate([q, hn[active]]), rcond=None)[0]
    u_p, lam = sol[:2], sol[2:]
    if k >= 2 and np.linalg.matrix_rank(A) == 2:
        # a vertex: the active rows alone fix u (better conditioned than the full KKT system)
        u_p = np.linalg.lstsq(A, hn[active], rcond=None)[0]
    if np.linalg.norm(u_p - u_o) > 1e-6:
        return None
    res_p = Gn @ u_p - hn
    if np.any(res_p[~soft] > 1e-9 * (1 + np.abs(hn[~soft]))):
        return None
    # multipliers: unique only when the active rows are independent; otherwise accept (vertex)
    if k <= 2 and np.linalg.matrix_rank(A) == k:
        if np.any(lam < -1e-7) or np.any(lam[soft[active]] > rho + 1e-7):
            return None
    return u_p


def _unit(a):
    return np.array([np.cos(a), np.sin(a)])


def near_parallel_instance(rng):
    """A random instance built around near-parallel rows, without box rows (infeasibility is real).

    One of: a thin wedge (two rows 1e-10..1e-1 rad from anti-parallel) with its tip up to 1e6 away,
    cut across near the tip on either side (1e-9..10 from it: infeasible or a far sliver); a strip
    between two exactly or nearly anti-parallel rows whose width (1e-9..10) may be negative; a fan
    of rows exactly or nearly (1e-10..1e-2 rad) parallel or anti-parallel, random offsets. Plus
    0..2 unrelated rows, random row scales (0.1..10), sometimes one soft row, reference near the
    tip. Exactly parallel rows are exact multiples (negation, a shared scale), so that they are
    parallel in floating point too.
    """
    kind = int(rng.integers(0, 3))
    tip = _unit(rng.uniform(0, 2 * np.pi)) * 10 ** rng.uniform(0, 6)
    th = rng.uniform(0, 2 * np.pi)
    d, nrm = _unit(th), _unit(th + np.pi / 2)

    def scale():
        return 10.0 ** rng.uniform(-1, 1)

    def tilt():
        return rng.choice([-1, 1]) * 10 ** rng.uniform(-10, -2)

    rows, hs = [], []
    if kind == 0:                       # thin wedge opening along d, cut across near its tip
        half = 10 ** rng.uniform(-10, -1)
        for n in (np.cos(half) * nrm - np.sin(half) * d, -np.cos(half) * nrm - np.sin(half) * d):
            k = scale()
            rows.append(n * k)
            hs.append((n @ tip) * k)
        c = _unit(th + rng.normal(0, 0.3))
        k = scale()
        rows.append(c * k)
        hs.append((c @ tip + rng.choice([-1, 1]) * 10 ** rng.uniform(-9, 1)) * k)
    elif kind == 1:                     # strip between (nearly) anti-parallel rows
        width = rng.choice([-1, 1]) * 10 ** rng.uniform(-9, 1)
        n1 = nrm * scale()
        n2 = -n1 if rng.random() < 0.3 else -_unit(th + np.pi / 2 + tilt()) * scale()
        for n in (n1, n2):
            rows.append(n)
            hs.append(n @ tip + width / 2 * np.linalg.norm(n))
    else:                               # fan of (nearly) parallel and anti-parallel rows
        k = scale()
        for _ in range(int(rng.integers(2, 5))):
            sense = -1.0 if rng.random() < 0.5 else 1.0
            if rng.random() < 0.3:
                n = sense * nrm * k
            else:
                n = sense * _unit(th + np.pi / 2 + tilt()) * scale()
            rows.append(n)
            hs.append(n @ tip + rng.normal(0, 2) * np.linalg.norm(n))
    for _ in range(int(rng.integers(0, 3))):
        n = _unit(rng.uniform(0, 2 * np.pi)) * scale()
        rows.append(n)
        hs.append(n @ tip + rng.normal(0.5, 2) * np.linalg.norm(n))
    m = len(rows)
    perm = rng.permutation(m)
    soft = np.zeros(m, bool)
    if m >= 3 and rng.random() < 0.3:
        soft[-1] = True
    return dict(G=np.array(rows)[perm], h=np.array(hs)[perm],
                r=tip + rng.normal(0, 3, 2) * 10 ** rng.uniform(0, 2),
                w=rng.uniform(0.2, 5.0, 2), soft=soft, rho=float(rng.choice([1.0, 10.0, 1000.0])))


def _exact_rows(G, h, soft):
    """Hard rows as exact rationals (g0, g1, h) plus the float norm |g|."""
    return [(Fraction(float(G[i][0])), Fraction(float(G[i][1])), Fraction(float(h[i])),
             float(np.hypot(G[i][0], G[i][1]))) for i in range(len(h)) if not soft[i]]


def exact_feasible(G, h, soft):
    """Whether some u in R^2 satisfies every hard row exactly (rational arithmetic, no rounding).

    A nonempty polyhedron whose row normals span the plane has a vertex, so: any vertex of two
    independent rows satisfying all rows -> feasible; normals spanning the plane and no such vertex
    -> infeasible; all normals parallel -> an interval test along the common normal.
    """
    rows = []
    for g0, g1, hh, _ in _exact_rows(G, h, soft):
        if g0 == 0 and g1 == 0:
            if hh < 0:
                return False                # 0 <= h fails
        else:
            rows.append((g0, g1, hh))
    spans = False
    for j, (a0, a1, ha) in enumerate(rows):
        for b0, b1, hb in rows[j + 1:]:
            det = a0 * b1 - a1 * b0
            if det == 0:
                continue
            spans = True
            x, y = (ha * b1 - hb * a1) / det, (a0 * hb - b0 * ha) / det
            if all(c0 * x + c1 * y <= c for c0, c1, c in rows):
                return True
    if spans:
        return False
    if not rows:
        return True
    n0, n1, _ = rows[0]
    lo = hi = None
    for a0, a1, c in rows:              # a = lam n: lam (n.u) <= c bounds the scalar n.u
        lam = a0 / n0 if n0 != 0 else a1 / n1
        if lam > 0:
            hi = c / lam if hi is None else min(hi, c / lam)
        else:
            lo = c / lam if lo is None else max(lo, c / lam)
    return lo is None or hi is None or lo <= hi


def exact_excess(G, h, soft, u, tol, rounding):
    """Largest exact violation of a hard row at the float point u, minus its allowed bound.

    Violation ``(g.u - h)/|g|`` (exact numerator); bound ``tol + rounding (|g0 u0| + |g1 u1| +
    |h|)/|g|``. <= 0 when every hard row holds to that bound.
    """
    x, y = Fraction(float(u[0])), Fraction(float(u[1]))
    worst = -np.inf
    for g0, g1, hh, n in _exact_rows(G, h, soft):
        if n == 0:
            continue
        viol = float(g0 * x + g1 * y - hh) / n
        bound = tol + rounding * float(abs(g0 * x) + abs(g1 * y) + abs(hh)) / n
        worst = max(worst, viol - bound)
    return worst


def exact_optimum(inst):
    """The instance's optimum in exact rational arithmetic: ``(u (2,), rows)`` or ``(None, None)``.

    Soft rows are divided by their float norm (the same problem as :func:`oracle`). The optimum of
    this strictly convex problem minimises the objective on the affine set of its active rows
    (at most two independent ones in 2-D) with its set of violated soft rows fixed, so it is among:
    per guess of the violated soft rows, the unconstrained minimiser and its weighted projection on
    every row line; and every vertex of two rows. The feasible one with the lowest true objective is
    the optimum; ``rows`` names the rows that define it (empty, one, or a pair).
    """
    G, h, soft = inst['G'], inst['h'], inst['soft']
    F = Fraction
    rows = []
    for i in range(len(h)):
        g0, g1, hh = F(float(G[i][0])), F(float(G[i][1])), F(float(h[i]))
        if soft[i]:
            n = F(float(np.hypot(G[i][0], G[i][1])))
            g0, g1, hh = g0 / n, g1 / n, hh / n
        rows.append((g0, g1, hh, bool(soft[i])))
    r0, r1 = F(float(inst['r'][0])), F(float(inst['r'][1]))
    w0, w1 = F(float(inst['w'][0])), F(float(inst['w'][1]))
    rho = F(float(inst['rho']))
    soft_idx = [i for i in range(len(h)) if soft[i]]

    def objective_at(x, y):
        f = w0 * (x - r0) ** 2 + w1 * (y - r1) ** 2
        return f + sum(rho * max(g0 * x + g1 * y - hh, 0) for g0, g1, hh, sf in rows if sf)

    cands = []
    for pattern in range(1 << len(soft_idx)):
        c0 = sum((rho * rows[i][0] for b, i in enumerate(soft_idx) if pattern >> b & 1), F(0))
        c1 = sum((rho * rows[i][1] for b, i in enumerate(soft_idx) if pattern >> b & 1), F(0))
        x0, y0 = r0 - c0 / (2 * w0), r1 - c1 / (2 * w1)
        cands.append((x0, y0, ()))
        for i, (g0, g1, hh, _) in enumerate(rows):
            gwg = g0 * g0 / w0 + g1 * g1 / w1
            if gwg != 0:
                t = (g0 * x0 + g1 * y0 - hh) / gwg
                cands.append((x0 - t * g0 / w0, y0 - t * g1 / w1, (i,)))
    for j in range(len(rows)):
        for k in range(j + 1, len(rows)):
            (a0, a1, ha, _), (b0, b1, hb, _) = rows[j], rows[k]
            det = a0 * b1 - a1 * b0
            if det != 0:
                cands.append(((ha * b1 - hb * a1) / det, (a0 * hb - b0 * ha) / det, (j, k)))
    best = None
    for x, y, which in cands:
        if all(g0 * x + g1 * y <= hh for g0, g1, hh, sf in rows if not sf):
            f = objective_at(x, y)
            if best is None or f < best[0]:
                best = (f, x, y, which)
    if best is None:
        return None, None
    return np.array([float(best[1]), float(best[2])]), best[3]
