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
"""
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
