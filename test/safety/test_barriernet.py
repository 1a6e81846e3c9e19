"""BarrierNetLayer: same answer as the runtime filter, gradients to reference and parameters."""
import numpy as np
import pytest
import torch

from liquid_controller.errors import InputError
from liquid_controller.safety import BarrierNetLayer, SafetyConfig, filter_batch


def _inputs(B, dtype, seed=0):
    g = torch.Generator().manual_seed(seed)

    def U(lo, hi, *shape):
        return torch.rand(*shape, generator=g, dtype=dtype) * (hi - lo) + lo

    u = torch.stack([U(-0.5, 2.5, B), U(-2.5, 2.5, B)], 1)
    p = U(0.1, 10.0, B, 2)
    s = U(0.0, 2.0, B)
    d = torch.where(U(0, 1, B) < 0.2, torch.full((B,), float('inf'), dtype=dtype), U(0.2, 3, B))
    return u, p, s, d, U(-0.5, 0.5, B), U(-0.6, 0.6, B)


@pytest.mark.parametrize('dtype,tol', [(torch.float64, 1e-12), (torch.float32, 1e-4)])
def test_layer_equals_runtime_filter(dtype, tol):
    c = SafetyConfig()
    layer = BarrierNetLayer(c)
    u, p, s, d, y, psi = _inputs(2048, dtype)
    out, status = layer(u, p, s, d, y, psi)
    ref, code, _, _ = filter_batch(c, u.double().numpy(), s.double().numpy(), d.double().numpy(),
                                   y.double().numpy(), psi.double().numpy(), p.double().numpy())
    assert out.dtype == dtype
    same = status.numpy() == code
    if dtype == torch.float64:
        assert same.all()
    else:                                          # rows built in float32 round differently
        assert same.mean() >= 0.995
    assert np.abs(out.double().numpy()[same] - ref[same]).max() <= tol
    assert set(code.tolist()) >= {0, 1}            # both plain and relaxed answers occur


def test_gradients_reach_reference_and_barrier_params():
    layer = BarrierNetLayer(SafetyConfig())
    u, p, s, d, y, psi = _inputs(512, torch.float64, seed=1)
    u.requires_grad_(True)
    p.requires_grad_(True)
    out, status = layer(u, p, s, d, y, psi)
    out.sum().backward()
    assert torch.isfinite(u.grad).all() and torch.isfinite(p.grad).all()
    assert (u.grad.abs().sum(1) > 0).float().mean() > 0.3
    assert (p.grad.abs().sum(1) > 0).float().mean() > 0.1     # where a lane row binds


def test_layer_gradcheck_on_non_degenerate_states():
    c = SafetyConfig()
    layer = BarrierNetLayer(c)
    # one state where the left lane row binds (heading toward the left edge, turning left)
    s = torch.tensor([1.0], dtype=torch.float64)
    y = torch.tensor([0.3], dtype=torch.float64)
    psi = torch.tensor([0.25], dtype=torch.float64)
    d = torch.tensor([float('inf')], dtype=torch.float64)
    u = torch.tensor([[1.0, 0.8]], dtype=torch.float64, requires_grad=True)
    p = torch.tensor([[1.5, 2.0]], dtype=torch.float64, requires_grad=True)
    out, status = layer(u, p, s, d, y, psi)
    assert status.item() == 0 and out[0, 1] < 0.8          # the lane row is active
    assert torch.autograd.gradcheck(lambda a, b: layer(a, b, s, d, y, psi)[0], (u, p),
                                    eps=1e-6, atol=1e-6)


def test_infeasible_rows_give_brake_not_zeros():
    layer = BarrierNetLayer(SafetyConfig())
    # a measured speed the drive cannot leave within one period of the box: hard rows conflict
    u = torch.tensor([[1.0, 0.0]], dtype=torch.float64)
    out, status = layer(u, torch.tensor([[1.0, 1.0]], dtype=torch.float64),
                        torch.tensor([2.3], dtype=torch.float64))
    assert status.item() == 2
    assert out[0, 0].item() == pytest.approx(SafetyConfig().v_max) and out[0, 1].item() == 0.0


def test_shape_errors_name_the_argument():
    layer = BarrierNetLayer(SafetyConfig())
    with pytest.raises(InputError, match='barrier_params'):
        layer(torch.zeros(3, 2), torch.ones(3, 3), torch.zeros(3))
    with pytest.raises(InputError, match='u_ref'):
        layer(torch.zeros(3), torch.ones(3, 2), torch.zeros(3))
