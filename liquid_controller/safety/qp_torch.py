"""Exact two-variable safety QP in PyTorch: batched, float32/float64, differentiable (training path).

Same problem, candidates, order and tests as :mod:`liquid_controller.safety.qp_numpy` (read its
docstring). The candidate search runs without autograd and in float64 (so float32 inputs get the
same active set as the NumPy solver on the same numbers); the chosen candidate is then recomputed from
its closed form (unconstrained minimiser, projection on one row line, or vertex of two rows) with
autograd on, so gradients reach ``G``, ``h`` and ``u_ref``. Away from degenerate points (a row exactly
at the switch between active and inactive) the active set is locally constant, so this gradient is the
exact derivative of the QP solution (the implicit-function / OptNet derivative).
"""
from dataclasses import dataclass

import torch

from liquid_controller.safety.qp_numpy import (INFEASIBLE, OPTIMAL, ROUNDING, SOFT_RELAXED,
                                               STATUS_NAMES, _DET_EPS, _ROW_EPS, _structure)

__all__ = ['solve_qp_torch', 'TorchQPSolution', 'OPTIMAL', 'SOFT_RELAXED', 'INFEASIBLE',
           'STATUS_NAMES', 'default_tol', 'rounding']


def default_tol(dtype):
    """Absolute feasibility tolerance (a distance, rows being unit): 1e-9 for float64, 1e-5 float32.

    The search itself runs in float64, but float32 rows carry rounding of ~1e-7 relative (two rows
    meant to meet exactly, like a speed bound and the braking row at the braking speed, may miss
    each other by that much), so a float64 tolerance would call such instances infeasible.
    """
    return 1e-9 if dtype == torch.float64 else 1e-5


def rounding(dtype):
    """Rounding allowance of the row test per unit of ``|g0 u0| + |g1 u1| + |h|`` (see qp_numpy).

    float64 data: :data:`~liquid_controller.safety.qp_numpy.ROUNDING` (the same test as NumPy);
    float32 data: the same number of float32 ulps, the precision the rows were built with.
    """
    return ROUNDING if dtype == torch.float64 else ROUNDING * 2.0 ** 29


def _vertex(a0, a1, ha, b0, b1, hb):
    """Vertex of two unit row lines, as :func:`liquid_controller.safety.qp_numpy.vertex` (torch).

    Differentiable: the sign that picks the well-conditioned form of the determinant is constant.
    Returns ``(x, y, ok)``; x, y are finite but meaningless where not ok.
    """
    dot = a0 * b0 + a1 * b1
    one = torch.ones_like(dot).detach()
    s = torch.where(dot < 0, -one, one)
    det = a0 * (b1 - s * a1) - a1 * (b0 - s * a0)
    ok = det.abs() > _DET_EPS
    t = (hb - ha * dot) / torch.where(ok, det, torch.ones_like(det))
    return ha * a0 - t * a1, ha * a1 + t * a0, ok


@dataclass
class TorchQPSolution:
    """``u`` (B,2) differentiable, NaN where infeasible; ``status`` (B,) long; ``active`` (B,m) bool;
    ``slack`` (B,m) normalised soft-row violation (no grad)."""

    u: torch.Tensor
    status: torch.Tensor
    active: torch.Tensor
    slack: torch.Tensor


def _normalise(G, h):
    # sqrt only of positive values, so padding rows (g = 0) give no NaN gradient
    n2 = G[..., 0] ** 2 + G[..., 1] ** 2
    line = n2 > _ROW_EPS ** 2
    scale = torch.sqrt(torch.where(line, n2, torch.ones_like(n2)))
    return G / scale[..., None], h / scale, line


def _cache(m, soft_key, device, dtype):
    soft, viol_sets, pj, pk, any_soft, on, off = _structure(m, soft_key)
    return (torch.as_tensor(soft, device=device), torch.as_tensor(viol_sets, device=device,
                                                                  dtype=dtype),
            torch.as_tensor(pj, device=device), torch.as_tensor(pk, device=device), any_soft,
            torch.as_tensor(on, device=device), torch.as_tensor(off, device=device))


def solve_qp_torch(G, h, u_ref, weights=(1.0, 1.0), soft=None, rho=1000.0, tol=None):
    """Solve a batch of two-variable safety QPs exactly; differentiable w.r.t. G, h, u_ref.

    G: (B,m,2); h: (B,m); u_ref: (B,2); weights: (2,) sequence or tensor (positive);
    soft: (m,) bool sequence (None: all hard); tol: absolute feasibility tolerance (None picks
    :func:`default_tol` for the dtype); hard rows hold to ``tol + rounding(dtype) * (|g0 u0| +
    |g1 u1| + |h|)``, the NumPy solver's test (identical for float64 data).
    """
    B, m, _ = G.shape
    dtype, device = G.dtype, G.device
    tol = default_tol(dtype) if tol is None else tol
    rnd = rounding(dtype)
    w = torch.as_tensor(weights, dtype=dtype, device=device)
    winv = 1.0 / w
    soft_key = (False,) * m if soft is None else tuple(bool(x) for x in soft)
    soft_mask, viol_sets, pj, pk, any_soft, on, off = _cache(m, soft_key, device, torch.float64)
    R = viol_sets.shape[0]
    w64, winv64 = w.double(), winv.double()

    with torch.no_grad():
        # The search runs in float64 whatever the input dtype: in float32 two candidates whose
        # objectives differ by less than float32 resolution could not be told apart (an error of
        # order sqrt(eps * objective)); the chosen closed form is then evaluated in the input dtype.
        Gn, hn, line = _normalise(G.double(), h.double())
        r = u_ref.double()
        g0, g1 = Gn[..., 0], Gn[..., 1]                                # (B,m)
        # explicit multiply-adds: einsum/bmm with an inner size of 2 is several times slower
        c = rho * torch.stack((g0 @ viol_sets.T, g1 @ viol_sets.T), dim=-1)   # (B,R,2)
        u0 = r[:, None, :] - 0.5 * c * winv64                         # (B,R,2)
        gw0, gw1 = g0 * winv64[0], g1 * winv64[1]                      # (B,m)
        gwg = g0 * gw0 + g1 * gw1                                      # (B,m)
        row_ok = line & (gwg > _ROW_EPS)
        res = u0[..., 0, None] * g0[:, None, :] + u0[..., 1, None] * g1[:, None, :] \
            - hn[:, None, :]                                           # (B,R,m)
        step = res / torch.where(row_ok, gwg, torch.ones_like(gwg))[:, None, :]
        up = torch.stack((u0[..., 0, None] - step * gw0[:, None, :],
                          u0[..., 1, None] - step * gw1[:, None, :]), dim=-1)   # (B,R,m,2)
        x, y, det_ok = _vertex(g0[:, pj], g1[:, pj], hn[:, pj], g0[:, pk], g1[:, pk], hn[:, pk])
        det_ok = det_ok & line[:, pj] & line[:, pk]
        uv = torch.stack((x, y), dim=-1)                               # (B,P,2)
        cand = torch.cat((u0, up.reshape(B, R * m, 2), uv), dim=1)    # (B,C,2)
        ok = torch.cat((torch.ones(B, R, dtype=torch.bool, device=device),
                        row_ok[:, None, :].expand(B, R, m).reshape(B, R * m), det_ok), dim=1)
        c0, c1 = cand[..., 0, None], cand[..., 1, None]                # (B,C,1)
        p0, p1 = c0 * g0[:, None, :], c1 * g1[:, None, :]              # (B,C,m)
        viol = p0 + p1 - hn[:, None, :]
        bound = tol + rnd * (p0.abs() + p1.abs() + hn.abs()[:, None, :])
        hard_ok = ((viol <= bound) | soft_mask).all(dim=2)
        d0, d1 = c0[..., 0] - r[:, None, 0], c1[..., 0] - r[:, None, 1]
        F = w64[0] * d0 * d0 + w64[1] * d1 * d1                        # (B,C)
        if any_soft:
            F = F + rho * (viol.clamp(min=0.0) * soft_mask).sum(2)
            # drop candidates contradicting their own soft pattern (as NumPy; see there why)
            ok = ok & ~((on & (viol < -bound)) | (off & (viol > bound))).any(dim=2)
        F = torch.where(ok & hard_ok, F, torch.full_like(F, float('inf')))
        best = F.argmin(dim=1)                                         # (B,)
        ar = torch.arange(B, device=device)
        feasible = torch.isfinite(F[ar, best])
        v_best = viol[ar, best]
        b_best = bound[ar, best]
        active = feasible[:, None] & (v_best.abs() <= 10.0 * b_best) & line
        slack = torch.where(soft_mask & feasible[:, None], v_best.clamp(min=0.0),
                            torch.zeros_like(v_best))
        slack = torch.where(slack > b_best, slack, torch.zeros_like(slack))
        status = torch.where(feasible, torch.where((slack > 0).any(1), SOFT_RELAXED, OPTIMAL),
                             INFEASIBLE)
        # decode the chosen candidate: kind 0 unconstrained, 1 projection, 2 vertex
        kind = torch.where(best < R, 0, torch.where(best < R + R * m, 1, 2))
        pat = torch.where(kind == 0, best, torch.where(kind == 1, (best - R) // m, 0))
        row = torch.where(kind == 1, (best - R) % m, 0)
        pair = torch.where(kind == 2, best - R - R * m, 0)

    # recompute the chosen candidate with autograd
    Gn, hn, _ = _normalise(G, h)
    vs = viol_sets[pat].to(dtype)                                      # (B,m)
    c = rho * torch.stack(((vs * Gn[..., 0]).sum(1), (vs * Gn[..., 1]).sum(1)), dim=-1)  # (B,2)
    u0 = u_ref - 0.5 * c * winv
    g = Gn[ar, row]                                                    # (B,2)
    gw = g * winv
    gwg = g[:, 0] * gw[:, 0] + g[:, 1] * gw[:, 1]
    gwg = torch.where(gwg > _ROW_EPS, gwg, torch.ones_like(gwg))
    u_proj = u0 - ((g[:, 0] * u0[:, 0] + g[:, 1] * u0[:, 1] - hn[ar, row]) / gwg)[:, None] * gw
    if pj.numel() > 0:
        a, b_ = Gn[ar, pj[pair]], Gn[ar, pk[pair]]
        x, y, _ = _vertex(a[:, 0], a[:, 1], hn[ar, pj[pair]], b_[:, 0], b_[:, 1], hn[ar, pk[pair]])
        u_vert = torch.stack((x, y), dim=-1)
    else:
        u_vert = u0
    k = kind[:, None]
    u = torch.where(k == 0, u0, torch.where(k == 1, u_proj, u_vert))
    u = torch.where(feasible[:, None], u, torch.full_like(u, float('nan')))
    return TorchQPSolution(u, status, active, slack.to(dtype))
