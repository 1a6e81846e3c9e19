"""Torch solver: equal to NumPy, float32 and float64, gradients equal finite differences."""
import numpy as np
import pytest
import torch

from liquid_controller.safety.qp_numpy import INFEASIBLE, OPTIMAL, SOFT_RELAXED, solve_qp
from liquid_controller.safety.qp_torch import solve_qp_torch


def _batch(rng, B, m, ns):
    ang = rng.uniform(0, 2 * np.pi, (B, m))
    G = np.stack([np.cos(ang), np.sin(ang)], -1) * rng.uniform(0.3, 3, (B, m, 1))
    h = rng.normal(0.5, 1.5, (B, m))
    r = rng.normal(0, 2, (B, 2))
    soft = np.zeros(m, bool)
    soft[m - ns:] = True
    return G, h, r, soft


@pytest.mark.parametrize('m,ns', [(1, 0), (3, 0), (6, 2), (8, 2), (2, 2)])
def test_torch_equals_numpy(m, ns):
    rng = np.random.default_rng(m * 10 + ns)
    G, h, r, soft = _batch(rng, 4000, m, ns)
    w = (1.0, 0.3)
    ref = solve_qp(G, h, r, w, soft, 50.0)
    for dtype, tol in ((torch.float64, 1e-12), (torch.float32, 1e-4)):
        t = solve_qp_torch(torch.tensor(G, dtype=dtype), torch.tensor(h, dtype=dtype),
                           torch.tensor(r, dtype=dtype), w, soft, 50.0)
        assert t.u.dtype == dtype
        if dtype == torch.float64:
            assert np.array_equal(t.status.numpy(), ref.status)
            assert np.array_equal(t.active.numpy(), ref.active)
        same = t.status.numpy() == ref.status
        assert same.mean() > 0.995                   # float32 inputs round differently
        ok = same & (ref.status != INFEASIBLE)
        err = np.abs(t.u.double().numpy()[ok] - ref.u[ok]).max(1) / np.maximum(
            1, np.abs(ref.u[ok]).max(1))
        assert err.max() <= tol
        assert torch.isnan(t.u[torch.as_tensor(ref.status == INFEASIBLE) & torch.as_tensor(same)]
                           ).all()
    assert OPTIMAL in set(ref.status.tolist())
    if m - ns >= 2:                                   # two hard rows can contradict each other
        assert INFEASIBLE in set(ref.status.tolist())
    if ns:
        assert SOFT_RELAXED in set(ref.status.tolist())


def _non_degenerate(G, h, r, soft, rho, w):
    """Active set and soft pattern stay the same under small perturbations of every input."""
    base = solve_qp(G, h, r, w, soft, rho)
    if base.status == INFEASIBLE:
        return False
    rng = np.random.default_rng(0)
    for _ in range(8):
        p = solve_qp(G + rng.normal(0, 1e-5, G.shape), h + rng.normal(0, 1e-5, h.shape),
                     r + rng.normal(0, 1e-5, 2), w, soft, rho)
        if p.status != base.status or not np.array_equal(p.active, base.active) \
                or not np.array_equal(p.slack > 0, base.slack > 0):
            return False
    return True


def test_gradients_match_finite_differences():
    rng = np.random.default_rng(7)
    checked = {'vertex': 0, 'projection': 0, 'free': 0, 'soft': 0}
    w = (1.5, 0.4)
    tries = 0
    while min(checked.values()) < 3 and tries < 400:
        tries += 1
        m = int(rng.integers(1, 6))
        ns = int(rng.integers(0, min(2, m) + 1))
        G, h, r, soft = _batch(rng, 1, m, ns)
        G, h, r = G[0], h[0], r[0]
        rho = 3.0
        if not _non_degenerate(G, h, r, soft, rho, w):
            continue
        sol = solve_qp(G, h, r, w, soft, rho)
        kind = {0: 'free', 1: 'projection'}.get(int(sol.active.sum()), 'vertex')
        if sol.status == SOFT_RELAXED:
            kind = 'soft'
        if checked[kind] >= 3:
            continue
        args = tuple(torch.tensor(x[None], requires_grad=True) for x in (G, h, r))

        def f(Gt, ht, rt):
            return solve_qp_torch(Gt, ht, rt, w, soft, rho).u

        assert torch.autograd.gradcheck(f, args, eps=1e-6, atol=1e-6, rtol=1e-5)
        checked[kind] += 1
    assert min(checked.values()) >= 3, checked


def test_gradient_of_a_known_projection():
    # min (v-2)^2 + (w-1)^2 s.t. v <= b: v* = b, w* = 1, dv*/db = 1, dv*/dr_v = 0, dw*/dr_w = 1
    G = torch.tensor([[[1.0, 0.0]]], dtype=torch.float64)
    b = torch.tensor([[0.5]], dtype=torch.float64, requires_grad=True)
    r = torch.tensor([[2.0, 1.0]], dtype=torch.float64, requires_grad=True)
    u = solve_qp_torch(G, b, r).u
    assert torch.allclose(u, torch.tensor([[0.5, 1.0]], dtype=torch.float64))
    gb, gr = torch.autograd.grad(u[0, 0], (b, r))
    assert gb.item() == pytest.approx(1.0) and gr.tolist() == [[0.0, 0.0]]
    gr_w = torch.autograd.grad(solve_qp_torch(G, b, r).u[0, 1], r)[0]
    assert gr_w.tolist() == [[0.0, 1.0]]


def test_infeasible_is_flagged_and_nan_not_zero():
    G = torch.tensor([[[1.0, 0.0], [-1.0, 0.0]]])
    h = torch.tensor([[-1.0, -1.0]])                  # v <= -1 and v >= 1
    sol = solve_qp_torch(G, h, torch.zeros(1, 2))
    assert sol.status.item() == INFEASIBLE and torch.isnan(sol.u).all()


def test_padding_rows_are_inert_and_give_finite_gradients():
    G = torch.tensor([[[1.0, 0.0], [0.0, 0.0]]], dtype=torch.float64, requires_grad=True)
    h = torch.tensor([[0.5, 1.0]], dtype=torch.float64, requires_grad=True)
    r = torch.tensor([[2.0, 0.0]], dtype=torch.float64, requires_grad=True)
    u = solve_qp_torch(G, h, r).u
    u.sum().backward()
    assert u[0, 0].item() == pytest.approx(0.5)
    for t in (G, h, r):
        assert torch.isfinite(t.grad).all()
