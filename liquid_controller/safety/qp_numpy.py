"""Exact solver for the safety QP in two variables (NumPy, vectorised over a batch): runtime path.

Problem, per batch element (u in R^2, rows i = 1..m, ``g_i`` the i-th row of ``G``)::

    minimise  sum_k weights_k (u_k - u_ref_k)^2  +  rho * sum_{i soft} max(0, g_i.u - h_i) / |g_i|
    subject to g_i.u <= h_i   for every hard row i

Soft rows carry an exact (L1) penalty on their violation measured as a distance in u space (rows are
normalised to unit length first), so when all rows can hold together and ``rho`` exceeds the soft
rows' multipliers the answer is that of the fully constrained QP. A row with ``g_i = 0`` is a constant
test (``0 <= h_i``): it never binds; padding rows use ``g = 0, h = 1``.

Method: the objective is strictly convex, so the optimum is unique and is the minimiser of the
objective restricted to the affine set of at most two linearly independent active rows, with the set of
strictly violated soft rows fixed (in 2-D any optimum's KKT conditions reduce to <= 2 active rows).
We enumerate all candidates: for each of the 2^s violated-soft patterns the unconstrained minimiser and
its projection on each row line, plus every vertex of two rows (the vertex does not depend on the
objective). Every candidate that satisfies the hard rows is feasible, so the feasible candidate with the
lowest true objective is the optimum. No candidate feasible means the hard rows cannot all hold:
status INFEASIBLE and ``u`` is NaN (callers must use their fallback). This is exact up to rounding.
"""
import math
from dataclasses import dataclass
from itertools import combinations

import numpy as np

OPTIMAL = 0
SOFT_RELAXED = 1
INFEASIBLE = 2
STATUS_NAMES = ('optimal', 'soft_relaxed', 'infeasible')

# Rows shorter than this (after the caller's scaling) are constant tests, not lines.
_ROW_EPS = 1e-12
# Two unit rows whose normals are closer than this to parallel have no usable vertex.
_DET_EPS = 1e-12


@dataclass
class QPSolution:
    """Result of :func:`solve_qp`; leading batch axis dropped when the input had none.

    ``u`` (B,2): the optimum (NaN where infeasible). ``status`` (B,) int: OPTIMAL / SOFT_RELAXED /
    INFEASIBLE. ``active`` (B,m) bool: rows holding with equality (to the tolerance). ``slack`` (B,m):
    normalised violation ``max(0, g.u - h)/|g|`` of soft rows (0 for hard rows). ``objective`` (B,).
    """

    u: np.ndarray
    status: np.ndarray
    active: np.ndarray
    slack: np.ndarray
    objective: np.ndarray


_PATTERNS = {}


def _structure(m, soft_key):
    """Cached index arrays for m rows and a soft-row pattern."""
    key = (m, soft_key)
    s = _PATTERNS.get(key)
    if s is None:
        soft = np.array(soft_key, dtype=bool)
        soft_idx = np.flatnonzero(soft)
        n_reg = 1 << len(soft_idx)
        viol_sets = np.zeros((n_reg, m))
        for r in range(n_reg):
            for b, i in enumerate(soft_idx):
                if r >> b & 1:
                    viol_sets[r, i] = 1.0
        pairs = np.array(list(combinations(range(m), 2)), dtype=np.intp).reshape(-1, 2)
        s = (soft, viol_sets, pairs[:, 0].copy(), pairs[:, 1].copy(), bool(soft.any()))
        _PATTERNS[key] = s
    return s


def candidates(Gn, hn, u_ref, winv, viol_sets, rho, pj, pk):
    """All candidate points (B,C,2) and their validity (B,C) for normalised rows.

    Order: [unconstrained per pattern (R)], [projection per pattern and row (R*m)], [vertices (P)].
    """
    B, m, _ = Gn.shape
    R = viol_sets.shape[0]
    g0, g1 = Gn[..., 0], Gn[..., 1]                                 # (B,m)
    # linear term of the objective from the violated soft rows of each pattern: (B,R,2)
    c = rho * np.stack((g0 @ viol_sets.T, g1 @ viol_sets.T), axis=-1)
    u0 = u_ref[:, None, :] - 0.5 * c * winv                        # (B,R,2)
    gw0, gw1 = g0 * winv[0], g1 * winv[1]                           # (B,m)
    gwg = g0 * gw0 + g1 * gw1                                       # (B,m)
    row_ok = gwg > _ROW_EPS
    res = (u0[:, :, 0, None] * g0[:, None, :] + u0[:, :, 1, None] * g1[:, None, :]
           - hn[:, None, :])                                        # (B,R,m)
    step = res / np.where(row_ok, gwg, 1.0)[:, None, :]
    up = np.stack((u0[:, :, 0, None] - step * gw0[:, None, :],
                   u0[:, :, 1, None] - step * gw1[:, None, :]), axis=-1)   # (B,R,m,2)
    a0, a1, b0, b1 = g0[:, pj], g1[:, pj], g0[:, pk], g1[:, pk]     # (B,P)
    hj, hk = hn[:, pj], hn[:, pk]
    det = a0 * b1 - a1 * b0                                         # (B,P)
    det_ok = np.abs(det) > _DET_EPS
    dsafe = np.where(det_ok, det, 1.0)
    uv = np.stack(((hj * b1 - hk * a1) / dsafe, (a0 * hk - b0 * hj) / dsafe), axis=-1)
    cand = np.concatenate((u0, up.reshape(B, R * m, 2), uv), axis=1)        # (B,C,2)
    ok = np.concatenate((np.ones((B, R), bool),
                         np.broadcast_to(row_ok[:, None, :], (B, R, m)).reshape(B, R * m),
                         det_ok), axis=1)
    return cand, ok


def normalise(G, h):
    """Scale rows to unit normals; zero rows are left as constant tests ``0 <= h``."""
    nrm = np.sqrt(G[..., 0] ** 2 + G[..., 1] ** 2)
    scale = np.where(nrm > _ROW_EPS, nrm, 1.0)
    return G / scale[..., None], h / scale


def solve_qp(G, h, u_ref, weights=(1.0, 1.0), soft=None, rho=1000.0, tol=1e-9):
    """Solve the two-variable safety QP exactly (see module docstring). Never raises on NaN input.

    G: (B,m,2) or (m,2); h: (B,m) or (m,); u_ref: (B,2) or (2,); weights: (2,) positive;
    soft: (m,) bool mask of soft rows (None: all hard); rho: soft penalty; tol: relative feasibility
    tolerance (hard rows hold to ``tol * (1 + |h| + |u|)`` after normalisation).
    """
    G = np.asarray(G, dtype=np.float64)
    single = G.ndim == 2
    if single:
        G = G[None]
    B, m = G.shape[0], G.shape[1]
    h = np.asarray(h, dtype=np.float64).reshape(B, m)
    u_ref = np.asarray(u_ref, dtype=np.float64).reshape(B, 2)
    w = np.asarray(weights, dtype=np.float64)
    soft_key = (False,) * m if soft is None else tuple(bool(x) for x in np.asarray(soft).ravel())
    if B == 1:
        # One instance (a control tick): plain-float kernel, several times faster than array calls.
        u, status, active, slack, obj = _solve_one(
            G[0].tolist(), h[0].tolist(), u_ref[0].tolist(), (float(w[0]), float(w[1])),
            soft_key, float(rho), float(tol))
        sol = QPSolution(np.array(u), np.int64(status), np.array(active, dtype=bool),
                         np.array(slack), np.float64(obj))
        if single:
            return sol
        return QPSolution(sol.u[None], np.array([status]), sol.active[None], sol.slack[None],
                          np.array([obj]))
    soft_mask, viol_sets, pj, pk, any_soft = _structure(m, soft_key)

    Gn, hn = normalise(G, h)
    cand, ok = candidates(Gn, hn, u_ref, 1.0 / w, viol_sets, rho, pj, pk)
    c0, c1 = cand[:, :, 0, None], cand[:, :, 1, None]              # (B,C,1)
    mag = np.maximum(np.abs(c0), np.abs(c1))                        # (B,C,1)
    hard = ~soft_mask
    # hard rows: g.u - h <= tol (1 + |h| + |u|)  <=>  g.u - (h + tol (1 + |h|)) <= tol |u|
    gh0, gh1 = Gn[:, None, hard, 0], Gn[:, None, hard, 1]
    hh = hn[:, hard]
    lim = (hh + tol * (1.0 + np.abs(hh)))[:, None, :]
    hard_ok = np.all(c0 * gh0 + c1 * gh1 - lim <= tol * mag, axis=2)   # NaN fails the test
    d0, d1 = c0[..., 0] - u_ref[:, None, 0], c1[..., 0] - u_ref[:, None, 1]
    F = w[0] * d0 * d0 + w[1] * d1 * d1                             # (B,C)
    if any_soft:
        vs = (c0 * Gn[:, None, soft_mask, 0] + c1 * Gn[:, None, soft_mask, 1]
              - hn[:, None, soft_mask])
        F = F + rho * np.maximum(vs, 0.0).sum(axis=2)
    F = np.where(ok & hard_ok, F, np.inf)
    best = np.argmin(F, axis=1)                                     # (B,)
    ar = np.arange(B)
    feasible = np.isfinite(F[ar, best])
    ub = cand[ar, best]                                             # (B,2)
    u = np.where(feasible[:, None], ub, np.nan)
    v = ub[:, None, 0] * Gn[..., 0] + ub[:, None, 1] * Gn[..., 1] - hn   # (B,m)
    act_bound = tol * (1.0 + np.abs(hn) + np.abs(ub).max(axis=1, keepdims=True))
    active = feasible[:, None] & (np.abs(v) <= 10.0 * act_bound) & (np.abs(Gn).sum(axis=2) > 0)
    slack = np.where(soft_mask & feasible[:, None], np.maximum(v, 0.0), 0.0)
    slack = np.where(slack > act_bound, slack, 0.0)
    status = np.where(feasible, np.where(slack.any(axis=1), SOFT_RELAXED, OPTIMAL), INFEASIBLE)
    obj = np.where(feasible, F[ar, best], np.nan)
    if single:
        return QPSolution(u[0], status[0], active[0], slack[0], obj[0])
    return QPSolution(u, status, active, slack, obj)


def _solve_one(G, h, r, w, soft, rho, tol):
    """Scalar version of :func:`solve_qp` for one instance (same candidates, order and tests).

    G: list of m (g0, g1); h: list of m; r: (r0, r1); w: (w0, w1); soft: tuple of m bools.
    Returns (u (2,), status, active list, slack list, objective).
    """
    m = len(h)
    rows = []                                       # normalised (g0, g1, h, soft, is_line)
    for i in range(m):
        g0, g1 = G[i]
        n = math.sqrt(g0 * g0 + g1 * g1)
        if n > _ROW_EPS:
            rows.append((g0 / n, g1 / n, h[i] / n, soft[i], True))
        else:
            rows.append((g0, g1, h[i], soft[i], False))
    r0, r1 = r
    w0, w1 = w
    wi0, wi1 = 1.0 / w0, 1.0 / w1

    def evaluate(x, y):
        """(feasible, objective, violations) of a candidate."""
        if x != x or y != y:
            return False, math.inf, None
        mag = abs(x) if abs(x) > abs(y) else abs(y)
        dx, dy = x - r0, y - r1
        F = w0 * dx * dx + w1 * dy * dy          # products overflow to inf, ** would raise
        vs = []
        for g0, g1, hh, sf, _ in rows:
            v = g0 * x + g1 * y - hh
            if sf:
                if v > 0.0:
                    F += rho * v
            elif not v <= tol * (1.0 + abs(hh) + mag):
                return False, math.inf, None
            vs.append(v)
        return True, F, vs

    ok, F, vs = evaluate(r0, r1)
    if ok and F == 0.0:                             # the reference itself is feasible: done
        return _finish(rows, (r0, r1), vs, F, tol, m)
    soft_idx = [i for i in range(m) if rows[i][3]]
    cands = []
    for pattern in range(1 << len(soft_idx)):
        c0 = c1 = 0.0
        for b, i in enumerate(soft_idx):
            if pattern >> b & 1:
                c0 += rho * rows[i][0]
                c1 += rho * rows[i][1]
        x0, y0 = r0 - 0.5 * c0 * wi0, r1 - 0.5 * c1 * wi1
        cands.append((x0, y0))
        for g0, g1, hh, _, line in rows:
            if not line:
                continue
            gw0, gw1 = g0 * wi0, g1 * wi1
            gwg = g0 * gw0 + g1 * gw1
            if gwg > _ROW_EPS:
                st = (g0 * x0 + g1 * y0 - hh) / gwg
                cands.append((x0 - st * gw0, y0 - st * gw1))
    for j in range(m):
        a0, a1, ha, _, la = rows[j]
        if not la:
            continue
        for k in range(j + 1, m):
            b0, b1, hb, _, lb = rows[k]
            det = a0 * b1 - a1 * b0
            if lb and abs(det) > _DET_EPS:
                cands.append(((ha * b1 - hb * a1) / det, (a0 * hb - b0 * ha) / det))
    best, best_F, best_v = None, math.inf, None
    for x, y in cands:
        ok, F, vs = evaluate(x, y)
        if ok and F < best_F:
            best, best_F, best_v = (x, y), F, vs
            if F == 0.0:
                break                               # the reference itself: nothing can beat it
    if best is None:
        return ((math.nan, math.nan), INFEASIBLE, [False] * m, [0.0] * m, math.nan)
    return _finish(rows, best, best_v, best_F, tol, m)


def _finish(rows, best, best_v, best_F, tol, m):
    """Active rows, slack and status of the chosen point (scalar kernel)."""
    mag = max(abs(best[0]), abs(best[1]))
    active, slack = [], []
    for (g0, g1, hh, sf, line), v in zip(rows, best_v):
        bound = tol * (1.0 + abs(hh) + mag)
        active.append(bool(line and abs(v) <= 10.0 * bound))
        slack.append(v if (sf and v > bound) else 0.0)
    status = SOFT_RELAXED if any(s > 0.0 for s in slack) else OPTIMAL
    return best, status, active, slack, best_F
