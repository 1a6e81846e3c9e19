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
objective). A candidate whose own point contradicts the pattern it was built for (a soft row
assumed violated that holds, or the reverse, beyond rounding) is dropped: it is never the optimum,
and along a row nearly parallel to a soft row its objective can tie the optimum's within rounding
and win at sqrt(eps) from it. Every remaining candidate that satisfies the hard rows is feasible, so
the feasible candidate with the lowest true objective is the optimum. No candidate feasible means
the hard rows cannot all hold: status INFEASIBLE and ``u`` is NaN (callers must use their fallback).
This is exact up to rounding.

Feasibility test (scale-free): with unit rows, a candidate ``u`` satisfies hard row i when::

    g_i.u - h_i  <=  tol + ROUNDING * (|g_i0 u_0| + |g_i1 u_1| + |h_i|)

``tol`` is an absolute distance (the rows are unit length, so ``g_i.u - h_i`` is how far ``u`` lies
outside row i); the second term is only the floating-point error of evaluating that sum and of
computing the candidate (8 units of 2^-53 of the magnitudes involved). So a hard row never holds
more loosely because the candidate or the row lies far from the origin. The former test,
``tol * (1 + |h| + |u|)``, accepted infeasible near-parallel problems as optimal at far vertices
violating hard rows by up to 1e-9 |u| (about 3 at |u| ~ 1e9). So: every hard row holds at the
returned point to the bound above; a problem infeasible by less than that bound (the ambiguity
band, about 1e-9 for |u| <= 1e6) may read as feasible; a feasible problem reads as feasible (its
optimum is a candidate, computed to within the bound), except as below.
The flip side is that candidates must be computed to that accuracy, vertices of near-parallel rows
included: :func:`vertex` does so (Cramer's rule loses ``eps / sin(angle)`` relative). Rows closer
than ``_DET_EPS`` (1e-12 rad) to parallel are treated as parallel (no vertex): a problem whose only
feasible points lie at such a vertex (at least 1e12 times the rows' gap away) reads as infeasible.
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
# Rounding allowance of the row test, per unit of |g0 u0| + |g1 u1| + |h|: the float64 error of
# evaluating g.u - h and of computing the candidate (projection or vertex) is a few units of 2^-53.
ROUNDING = 8 * 2.0 ** -53


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
    """Cached index arrays for m rows and a soft-row pattern.

    Returns ``(soft (m,), viol_sets (R,m), pj (P,), pk (P,), any_soft, assumed_on (C,m),
    assumed_off (C,m))``: the last two say, per candidate in :func:`candidates` order, which soft
    rows its pattern assumes violated / not violated (vertices assume nothing).
    """
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
        on = viol_sets > 0                                          # (R,m)
        off = soft & ~on
        none = np.zeros((len(pairs), m), bool)
        assumed_on = np.concatenate((on, np.repeat(on, m, axis=0), none))
        assumed_off = np.concatenate((off, np.repeat(off, m, axis=0), none))
        s = (soft, viol_sets, pairs[:, 0].copy(), pairs[:, 1].copy(), bool(soft.any()),
             assumed_on, assumed_off)
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
    uv0, uv1, det_ok = vertex(g0[:, pj], g1[:, pj], hn[:, pj], g0[:, pk], g1[:, pk], hn[:, pk])
    uv = np.stack((uv0, uv1), axis=-1)                              # (B,P,2)
    cand = np.concatenate((u0, up.reshape(B, R * m, 2), uv), axis=1)        # (B,C,2)
    ok = np.concatenate((np.ones((B, R), bool),
                         np.broadcast_to(row_ok[:, None, :], (B, R, m)).reshape(B, R * m),
                         det_ok), axis=1)
    return cand, ok


def vertex(a0, a1, ha, b0, b1, hb):
    """Intersection of the unit row lines ``a.u = ha`` and ``b.u = hb`` (arrays): ``(x, y, ok)``.

    ``ok`` is False where the rows are within ``_DET_EPS`` of parallel (x, y are then meaningless).
    Accurate for near-parallel rows, where Cramer's rule is not: its determinant ``a0 b1 - a1 b0``
    cancels to an error of ``eps / det`` relative, which moves the vertex off both lines by that
    fraction of |h|. Here ``det = a x (b - s a)`` with ``s = sign(a.b)`` (the same value, since
    ``a x a = 0``) is a sum of two terms of one sign, so it keeps full relative accuracy; the vertex
    is written as ``ha a + t a_perp`` (on line a up to rounding) with ``t = (hb - ha a.b) / det``,
    whose error only slides it along line a. Both rows then hold to a few ulps of their terms.
    """
    dot = a0 * b0 + a1 * b1
    s = np.where(dot < 0, -1.0, 1.0)
    det = a0 * (b1 - s * a1) - a1 * (b0 - s * a0)
    ok = np.abs(det) > _DET_EPS
    t = (hb - ha * dot) / np.where(ok, det, 1.0)
    return ha * a0 - t * a1, ha * a1 + t * a0, ok


def normalise(G, h):
    """Scale rows to unit normals; zero rows are left as constant tests ``0 <= h``."""
    nrm = np.sqrt(G[..., 0] ** 2 + G[..., 1] ** 2)
    scale = np.where(nrm > _ROW_EPS, nrm, 1.0)
    return G / scale[..., None], h / scale


def solve_qp(G, h, u_ref, weights=(1.0, 1.0), soft=None, rho=1000.0, tol=1e-9):
    """Solve the two-variable safety QP exactly (see module docstring). Never raises on NaN input.

    G: (B,m,2) or (m,2); h: (B,m) or (m,); u_ref: (B,2) or (2,); weights: (2,) positive;
    soft: (m,) bool mask of soft rows (None: all hard); rho: soft penalty; tol: absolute feasibility
    tolerance, a distance in u space: hard rows hold to ``tol`` plus the float64 rounding of the row
    test, which does not grow with |u| beyond a few ulps (see the module docstring).
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
    soft_mask, viol_sets, pj, pk, any_soft, assumed_on, assumed_off = _structure(m, soft_key)

    Gn, hn = normalise(G, h)
    cand, ok = candidates(Gn, hn, u_ref, 1.0 / w, viol_sets, rho, pj, pk)
    c0, c1 = cand[:, :, 0, None], cand[:, :, 1, None]              # (B,C,1)
    hard = ~soft_mask
    # hard rows (module docstring): g.u - h <= tol + ROUNDING (|g0 u0| + |g1 u1| + |h|)
    p0, p1 = c0 * Gn[:, None, hard, 0], c1 * Gn[:, None, hard, 1]   # (B,C,mh)
    hh = hn[:, None, hard]
    hard_ok = np.all(p0 + p1 - hh <= tol + ROUNDING * (np.abs(p0) + np.abs(p1) + np.abs(hh)),
                     axis=2)                                        # NaN fails the test
    d0, d1 = c0[..., 0] - u_ref[:, None, 0], c1[..., 0] - u_ref[:, None, 1]
    F = w[0] * d0 * d0 + w[1] * d1 * d1                             # (B,C)
    if any_soft:
        p0, p1 = c0 * Gn[:, None, soft_mask, 0], c1 * Gn[:, None, soft_mask, 1]
        hs = hn[:, None, soft_mask]
        vs = p0 + p1 - hs
        F = F + rho * np.maximum(vs, 0.0).sum(axis=2)
        # A candidate built for a pattern of violated soft rows that its own point contradicts is
        # never the optimum; dropped, because its objective can tie the optimum's within rounding
        # (along a row nearly parallel to a soft row) and then win at sqrt(eps) from it.
        sb = tol + ROUNDING * (np.abs(p0) + np.abs(p1) + np.abs(hs))
        ok = ok & ~np.any((assumed_on[:, soft_mask] & (vs < -sb))
                          | (assumed_off[:, soft_mask] & (vs > sb)), axis=2)
    F = np.where(ok & hard_ok, F, np.inf)
    best = np.argmin(F, axis=1)                                     # (B,)
    ar = np.arange(B)
    feasible = np.isfinite(F[ar, best])
    ub = cand[ar, best]                                             # (B,2)
    u = np.where(feasible[:, None], ub, np.nan)
    p0, p1 = ub[:, None, 0] * Gn[..., 0], ub[:, None, 1] * Gn[..., 1]   # (B,m)
    v = p0 + p1 - hn
    act_bound = tol + ROUNDING * (np.abs(p0) + np.abs(p1) + np.abs(hn))
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

    def evaluate(x, y, pattern):
        """(feasible, objective, violations) of a candidate; pattern: its assumed violated soft
        rows (bit b for the b-th soft row), None for a vertex (see solve_qp)."""
        if x != x or y != y:
            return False, math.inf, None
        dx, dy = x - r0, y - r1
        F = w0 * dx * dx + w1 * dy * dy          # products overflow to inf, ** would raise
        vs = []
        b = 0
        for g0, g1, hh, sf, _ in rows:
            p0, p1 = g0 * x, g1 * y
            v = p0 + p1 - hh
            bound = tol + ROUNDING * (abs(p0) + abs(p1) + abs(hh))
            if sf:
                if pattern is not None and ((v < -bound) if pattern >> b & 1 else (v > bound)):
                    return False, math.inf, None
                b += 1
                if v > 0.0:
                    F += rho * v
            elif not v <= bound:
                return False, math.inf, None
            vs.append(v)
        return True, F, vs

    ok, F, vs = evaluate(r0, r1, 0)
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
        cands.append((x0, y0, pattern))
        for g0, g1, hh, _, line in rows:
            if not line:
                continue
            gw0, gw1 = g0 * wi0, g1 * wi1
            gwg = g0 * gw0 + g1 * gw1
            if gwg > _ROW_EPS:
                st = (g0 * x0 + g1 * y0 - hh) / gwg
                cands.append((x0 - st * gw0, y0 - st * gw1, pattern))
    for j in range(m):
        a0, a1, ha, _, la = rows[j]
        if not la:
            continue
        for k in range(j + 1, m):
            b0, b1, hb, _, lb = rows[k]
            if not lb:
                continue
            # same arithmetic as vertex() (see there why not Cramer's rule)
            dot = a0 * b0 + a1 * b1
            s = -1.0 if dot < 0 else 1.0
            det = a0 * (b1 - s * a1) - a1 * (b0 - s * a0)
            if abs(det) > _DET_EPS:
                t = (hb - ha * dot) / det
                cands.append((ha * a0 - t * a1, ha * a1 + t * a0, None))
    best, best_F, best_v = None, math.inf, None
    for x, y, pattern in cands:
        ok, F, vs = evaluate(x, y, pattern)
        if ok and F < best_F:
            best, best_F, best_v = (x, y), F, vs
            if F == 0.0:
                break                               # the reference itself: nothing can beat it
    if best is None:
        return ((math.nan, math.nan), INFEASIBLE, [False] * m, [0.0] * m, math.nan)
    return _finish(rows, best, best_v, best_F, tol, m)


def _finish(rows, best, best_v, best_F, tol, m):
    """Active rows, slack and status of the chosen point (scalar kernel)."""
    x, y = best
    active, slack = [], []
    for (g0, g1, hh, sf, line), v in zip(rows, best_v):
        bound = tol + ROUNDING * (abs(g0 * x) + abs(g1 * y) + abs(hh))
        active.append(bool(line and abs(v) <= 10.0 * bound))
        slack.append(v if (sf and v > bound) else 0.0)
    status = SOFT_RELAXED if any(s > 0.0 for s in slack) else OPTIMAL
    return best, status, active, slack, best_F
