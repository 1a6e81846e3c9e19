"""Our CfC/LTC equal ncps 1.0.1 on copied wiring and weights, over irregular time steps.

ncps is the reference implementation (test-only dependency, requirements-dev.txt). Batch 1 only
here: ncps mishandles batched timespans (issues 81-83); batch > 1 consistency of our cells is
tested in test_cfc_ltc.py against per-sample runs.
"""
import numpy as np
import pytest
import torch

from liquid_controller.policy.cfc import CFC_MODES, CfC
from liquid_controller.policy.ltc import LTC
from liquid_controller.tools.benchmarks.ncps_compat import paired_cfc, paired_ltc
from liquid_controller.policy.wiring import FullyConnectedWiring, auto_ncp

TOL = 1e-5


def _wiring(kind):
    return auto_ncp(19, 2, sparsity_level=0.5, seed=7) if kind == 'ncp' else FullyConnectedWiring(8, 3)


def _irregular_sequence(steps=25, features=32, seed=0):
    gen = torch.Generator().manual_seed(seed)
    x = torch.randn(1, steps, features, generator=gen) * 2.0
    # irregular: 1 ms .. 300 ms, plus a few long gaps
    ts = torch.rand(1, steps, generator=gen) * 0.3 + 0.001
    ts[0, steps // 4] = 2.5
    ts[0, steps // 2] = 0.0005
    return x, ts


def _perturb(model, seed):
    """Move ncps parameters away from their symmetric initial values (e.g. LTC input_w = 1)."""
    gen = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for p in model.parameters():
            if p.requires_grad:
                p.add_(torch.randn(p.shape, generator=gen) * 0.1)


@pytest.mark.parametrize('kind', ['ncp', 'fully_connected'])
@pytest.mark.parametrize('mode', CFC_MODES)
def test_cfc_equals_ncps(mode, kind):
    torch.manual_seed(1)
    ours = CfC(32, _wiring(kind), mode=mode)
    theirs = paired_cfc(ours)
    x, ts = _irregular_sequence()
    h0 = torch.randn(1, ours.state_size) * 0.5
    y_ref, h_ref = theirs(x, ours.state_to_ncps(h0), timespans=ts)
    y, h = ours(x, ts, state=h0)
    # ncps returns every unit of a fully connected wiring; motor neurons are the first output_size
    y_ref = y_ref[..., :ours.output_size]
    assert y.shape == (1, 25, ours.output_size)
    assert y.abs().max() > 0.05  # not a trivially zero comparison
    assert torch.allclose(y, y_ref, atol=TOL, rtol=0)
    assert torch.allclose(h, ours.state_from_ncps(h_ref), atol=TOL, rtol=0)
    # streaming interface, inference fast path
    with torch.no_grad():
        state = h0.clone()
        for t in range(x.shape[1]):
            y_t, state = ours.step(x[:, t], state, float(ts[0, t]))
            assert torch.allclose(y_t, y_ref[:, t], atol=TOL, rtol=0)


@pytest.mark.parametrize('kind', ['ncp', 'fully_connected'])
def test_cfc_masks_equal_ncps(kind):
    ours = CfC(32, _wiring(kind))
    theirs = paired_cfc(ours)
    for layer in range(ours.wiring.num_layers):
        ncps_mask = theirs.rnn_cell._layers[layer].sparsity_mask
        n = ncps_mask.shape[0]
        mask = getattr(ours, f'mask_{layer}')
        assert torch.equal(mask[:n], ncps_mask)          # ff1
        assert torch.equal(mask[n:2 * n], ncps_mask)     # ff2
        assert torch.all(mask[2 * n:] == 1)              # time gates are dense in ncps


@pytest.mark.parametrize('kind', ['ncp', 'fully_connected'])
def test_ltc_equals_ncps(kind):
    torch.manual_seed(2)
    ours = LTC(32, _wiring(kind))
    theirs = paired_ltc(ours)
    _perturb(theirs, seed=3)
    ours.load_ncps(theirs)
    x, ts = _irregular_sequence(seed=4)
    h0 = torch.randn(1, ours.state_size) * 0.3
    y_ref, h_ref = theirs(x, h0, timespans=ts)
    y, h = ours(x, ts, state=h0)
    assert y.abs().max() > 0.05
    assert torch.allclose(y, y_ref, atol=TOL, rtol=0)
    assert torch.allclose(h, h_ref, atol=TOL, rtol=0)
    with torch.no_grad():
        state = h0.clone()
        for t in range(x.shape[1]):
            y_t, state = ours.step(x[:, t], state, float(ts[0, t]))
            assert torch.allclose(y_t, y_ref[:, t], atol=TOL, rtol=0)
        assert torch.allclose(state, h_ref, atol=TOL, rtol=0)


def test_ltc_unfolds_setting_is_used():
    ours = LTC(32, _wiring('ncp'), ode_unfolds=3)
    theirs = paired_ltc(ours)
    _perturb(theirs, seed=5)
    ours.load_ncps(theirs)
    assert theirs.rnn_cell._ode_unfolds == 3
    x, ts = _irregular_sequence(steps=8, seed=6)
    y_ref, _ = theirs(x, timespans=ts)
    y, _ = ours(x, ts)
    assert torch.allclose(y, y_ref, atol=TOL, rtol=0)


def test_wiring_copied_into_ncps_is_ours():
    ours = CfC(32, _wiring('ncp'))
    theirs = paired_cfc(ours)
    w = theirs.rnn_cell._wiring
    assert np.array_equal(w.adjacency_matrix, ours.wiring.adjacency)
    assert np.array_equal(w.sensory_adjacency_matrix, ours.wiring.sensory_adjacency)
