"""CfC and LTC cells: one maths through two interfaces, batching, gradients, bad input."""
import math

import pytest
import torch

from liquid_controller.errors import InputError
from liquid_controller.policy.cfc import CFC_MODES, CfC
from liquid_controller.policy.ltc import LTC
from liquid_controller.policy.wiring import FullyConnectedWiring, auto_ncp

TOL = 1e-5
CELLS = [('cfc', m) for m in CFC_MODES] + [('ltc', None)]


def make_cell(kind, mode=None, wiring=None, inputs=12, seed=0):
    torch.manual_seed(seed)
    wiring = wiring or auto_ncp(15, 3, seed=seed)
    cell = CfC(inputs, wiring, mode=mode) if kind == 'cfc' else LTC(inputs, wiring)
    # move every parameter off its symmetric initial value (LTC input_w = 1, pure A = 1, ...)
    with torch.no_grad():
        for p in cell.parameters():
            p.add_(torch.randn_like(p) * 0.1)
    return cell


def data(batch=4, steps=10, inputs=12, seed=1):
    gen = torch.Generator().manual_seed(seed)
    x = torch.randn(batch, steps, inputs, generator=gen)
    ts = torch.rand(batch, steps, generator=gen) * 0.5 + 0.01   # per sample, per step
    return x, ts


@pytest.mark.parametrize('kind,mode', CELLS)
def test_batched_equals_each_sample_alone(kind, mode):
    cell = make_cell(kind, mode)
    x, ts = data()
    h0 = torch.randn(4, cell.state_size) * 0.3
    y, h = cell(x, ts, h0)
    for b in range(4):
        y_b, h_b = cell(x[b:b + 1], ts[b:b + 1], h0[b:b + 1])
        assert torch.allclose(y[b:b + 1], y_b, atol=TOL, rtol=0)
        assert torch.allclose(h[b:b + 1], h_b, atol=TOL, rtol=0)
    # per-sample timespans matter: a sample with other dt gives other outputs
    y2, _ = cell(x, ts.flip(0), h0)
    assert not torch.allclose(y, y2, atol=1e-3)


@pytest.mark.parametrize('kind,mode', CELLS)
@pytest.mark.parametrize('grad', [False, True])
def test_step_equals_sequence(kind, mode, grad):
    cell = make_cell(kind, mode)
    x, ts = data(batch=3)
    y_seq, h_seq = cell(x, ts)
    with torch.set_grad_enabled(grad):
        h = cell.initial_state(3)
        for t in range(x.shape[1]):
            y, h = cell.step(x[:, t], h, ts[:, t].clone())
            assert torch.allclose(y, y_seq[:, t], atol=TOL, rtol=0)
    assert torch.allclose(h, h_seq, atol=TOL, rtol=0)
    assert (h.grad_fn is not None) == grad  # inference: no autograd history kept


@pytest.mark.parametrize('kind,mode', CELLS)
def test_scalar_dt_and_default_timespans(kind, mode):
    cell = make_cell(kind, mode)
    x, _ = data(batch=2, steps=5)
    y_seq, _ = cell(x)  # timespans None = 1 s per step, as ncps
    with torch.no_grad():
        h = cell.initial_state(2)
        for t in range(5):
            y, h = cell.step(x[:, t], h, 1.0)
            assert torch.allclose(y, y_seq[:, t], atol=TOL, rtol=0)
    # a scalar dt equals the same dt per sample
    with torch.no_grad():
        y1, _ = cell.step(x[:, 0], cell.initial_state(2), 0.2)
        y2, _ = cell.step(x[:, 0], cell.initial_state(2), torch.full((2,), 0.2))
    assert torch.allclose(y1, y2, atol=TOL, rtol=0)


@pytest.mark.parametrize('kind,mode', CELLS)
def test_state_carries_across_calls(kind, mode):
    cell = make_cell(kind, mode)
    x, ts = data(batch=2, steps=12)
    y, h = cell(x, ts)
    y_a, h_a = cell(x[:, :5], ts[:, :5])
    y_b, h_b = cell(x[:, 5:], ts[:, 5:], state=h_a)
    assert torch.allclose(torch.cat([y_a, y_b], 1), y, atol=TOL, rtol=0)
    assert torch.allclose(h_b, h, atol=TOL, rtol=0)
    # the initial state is explicit: a different one changes the outputs
    y_c, _ = cell(x, ts, state=torch.ones(2, cell.state_size) * 0.5)
    assert not torch.allclose(y_c, y, atol=1e-3)


def test_interface_shapes_and_groups():
    cell = make_cell('cfc', 'default')
    assert cell.initial_state(3).shape == (3, 15) and not cell.initial_state(3).any()
    y, h = cell(*data(batch=2, steps=4))
    assert y.shape == (2, 4, 3) and h.shape == (2, 15)
    # motor neurons come first in the state and are the outputs
    assert torch.allclose(y[:, -1], h[:, :3])
    assert cell.neuron_groups()['motor'] == [0, 1, 2]


@pytest.mark.parametrize('kind', ['cfc', 'ltc'])
def test_masks_are_buffers_and_block_gradients(kind):
    cell = make_cell(kind, 'default')
    params = dict(cell.named_parameters())
    buffers = dict(cell.named_buffers())
    assert not any('mask' in n for n in params) and any('mask' in n for n in buffers)
    x, ts = data(batch=2, steps=4)
    y, _ = cell(x, ts)
    y.square().sum().backward()
    if kind == 'cfc':
        n = 8  # inter layer of auto_ncp(15, 3): 12 non-motor neurons, 4 command, 8 inter
        mask = cell.mask_0[:2 * n]
        assert torch.all(cell.weight_0.grad[:2 * n][mask == 0] == 0)
        assert cell.weight_0.grad[:2 * n][mask == 1].abs().sum() > 0
    else:
        assert torch.all(cell.w.grad[cell.sparsity_mask == 0] == 0)
        assert cell.w.grad[cell.sparsity_mask == 1].abs().sum() > 0


@pytest.mark.parametrize('mode', ['default', 'no_gate'])
@pytest.mark.parametrize('wiring', ['ncp', 'fc'])
def test_handwritten_backward_equals_autograd(mode, wiring):
    w = auto_ncp(15, 3, seed=2) if wiring == 'ncp' else FullyConnectedWiring(7, 2)
    cell = make_cell('cfc', mode, wiring=w).double()
    gen = torch.Generator().manual_seed(3)
    x = torch.randn(3, 6, 12, generator=gen, dtype=torch.float64).requires_grad_()
    ts = torch.rand(3, 6, generator=gen, dtype=torch.float64) + 0.05
    h0 = torch.randn(3, w.units, generator=gen, dtype=torch.float64).requires_grad_()
    weights = torch.randn(w.units, dtype=torch.float64, generator=gen)
    grads = []
    for reference in (False, True):
        cell.reference_autograd = reference
        y, h = cell(x, ts, h0)
        loss = y.sin().sum() + (h * weights).sum()
        grads.append(torch.autograd.grad(loss, [x, h0] + list(cell.parameters())))
    for ours, ref in zip(*grads):
        assert torch.allclose(ours, ref, atol=1e-10, rtol=1e-8)


@pytest.mark.parametrize('kind,mode', [('cfc', 'default'), ('ltc', None)])
def test_inference_cache_follows_training(kind, mode):
    cell = make_cell(kind, mode)
    x, ts = data(batch=1, steps=6)
    opt = torch.optim.Adam(cell.parameters(), lr=0.05)
    losses = []
    for _ in range(15):
        opt.zero_grad()
        y, _ = cell(x, ts)
        loss = (y - 0.5).square().mean()
        loss.backward()
        opt.step()
        losses.append(loss.item())
        with torch.no_grad():  # numpy fast path must see the updated weights
            y_fast, _ = cell.step(x[:, 0], cell.initial_state(1), float(ts[0, 0]))
        y_ref, _ = cell(x[:, :1], ts[:, :1])
        assert torch.allclose(y_fast, y_ref[:, 0], atol=TOL, rtol=0)
    assert losses[-1] < 0.5 * losses[0]  # it learns


def test_double_precision_cell():
    cell = make_cell('ltc').double()
    x = torch.randn(1, 12, dtype=torch.float64)
    with torch.no_grad():
        y, h = cell.step(x, cell.initial_state(1), 0.1)
    assert y.dtype == torch.float64 and h.dtype == torch.float64
    with pytest.raises(InputError, match='x.dtype'):
        cell.step(x.float(), cell.initial_state(1), 0.1)


# -- bad input: InputError (a ValueError) naming the argument and the value -----------------------
def _bad_step_cases(cell):
    good_x, good_h = torch.zeros(2, 12), cell.initial_state(2)
    nan_x = good_x.clone()
    nan_x[1, 3] = math.nan
    inf_h = good_h.clone()
    inf_h[0, 1] = math.inf
    return [
        (dict(x=torch.zeros(2, 11)), 'x.shape', '(2, 11)'),
        (dict(x=torch.zeros(2, 1, 12)), 'x.shape', '(2, 1, 12)'),
        (dict(x=torch.zeros(2, 12, dtype=torch.float64)), 'x.dtype', 'float64'),
        (dict(x=torch.zeros(2, 12, dtype=torch.int64)), 'x.dtype', 'int64'),
        (dict(x=[[0.0] * 12] * 2), 'x', 'list'),
        (dict(x=nan_x), 'x', 'nan'),
        (dict(x=good_x.clone().fill_(math.inf)), 'x', 'inf'),
        (dict(state=torch.zeros(3, cell.state_size)), 'state.shape', '(3, '),
        (dict(state=inf_h), 'state', 'inf'),
        (dict(x=good_x.clone().fill_(3e19)), 'x', 'too large'),
        (dict(state=good_h.clone().fill_(-3e19)), 'state', 'too large'),
        (dict(dt=0.0), 'dt', '0.0'),
        (dict(dt=-0.1), 'dt', '-0.1'),
        (dict(dt=math.nan), 'dt', 'nan'),
        (dict(dt=math.inf), 'dt', 'inf'),
        (dict(dt=None), 'dt', 'none'),
        (dict(dt='0.1'), 'dt', "'0.1'"),
        (dict(dt=torch.tensor([0.1, -0.2])), 'dt', '-0.2'),
        (dict(dt=torch.tensor([0.1, math.nan])), 'dt', 'nan'),
        (dict(dt=torch.tensor([0.1, 0.1, 0.1])), 'dt.shape', '(3,)'),
    ], good_x, good_h


@pytest.mark.parametrize('kind,mode', [('cfc', 'default'), ('ltc', None)])
@pytest.mark.parametrize('grad', [False, True])
def test_step_bad_input(kind, mode, grad):
    cell = make_cell(kind, mode)
    cases, good_x, good_h = _bad_step_cases(cell)
    for change, name, shown in cases:
        args = dict(x=good_x, state=good_h, dt=0.05)
        args.update(change)
        with torch.set_grad_enabled(grad), pytest.raises(InputError) as info:
            cell.step(**args)
        assert info.value.name == name, (change, str(info.value))
        assert shown in str(info.value).lower(), (change, str(info.value))
        assert isinstance(info.value, ValueError)


@pytest.mark.parametrize('kind,mode', [('cfc', 'pure'), ('ltc', None)])
def test_forward_bad_input(kind, mode):
    cell = make_cell(kind, mode)
    x, ts = data(batch=2, steps=3)
    bad_ts = ts.clone()
    bad_ts[1, 2] = 0.0
    nan_x = x.clone()
    nan_x[0, 1, 2] = math.nan
    cases = [
        (dict(x=x[0]), 'x.shape'),
        (dict(x=x[..., :5]), 'x.shape'),
        (dict(x=x.double()), 'x.dtype'),
        (dict(x=nan_x), 'x'),
        (dict(x=x[:, :0]), 'x.shape'),
        (dict(timespans=bad_ts), 'timespans'),
        (dict(timespans=ts[:, :2]), 'timespans.shape'),
        (dict(timespans=ts.double()), 'timespans.dtype'),
        (dict(state=torch.zeros(2, 3)), 'state.shape'),
        (dict(state=torch.full((2, cell.state_size), math.nan)), 'state'),
    ]
    for change, name in cases:
        args = dict(x=x, timespans=ts, state=None)
        args.update(change)
        with pytest.raises(InputError) as info:
            cell(args['x'], args['timespans'], args['state'])
        assert info.value.name == name, (change, str(info.value))


@pytest.mark.parametrize('make,name', [
    (lambda: CfC(0, auto_ncp(15, 3)), 'input_size'),
    (lambda: CfC(12, 'ncp'), 'wiring'),
    (lambda: CfC(12, auto_ncp(15, 3), mode='fast'), 'mode'),
    (lambda: LTC(12, auto_ncp(15, 3), ode_unfolds=0), 'ode_unfolds'),
    (lambda: make_cell('cfc', 'default').initial_state(0), 'batch_size'),
])
def test_bad_construction(make, name):
    with pytest.raises(InputError) as info:
        make()
    assert info.value.name == name


@pytest.mark.parametrize('kind,mode', CELLS)
def test_return_states_matches_steps_and_is_differentiable(kind, mode):
    cell = make_cell(kind, mode)
    x, ts = data(batch=2, steps=6)
    y, h, states = cell(x, ts, return_states=True)
    assert states.shape == (2, 6, cell.state_size)
    assert torch.allclose(states[:, -1], h)
    assert torch.allclose(states[:, 2], cell(x[:, :3], ts[:, :3])[1], atol=TOL)
    if kind == 'cfc':  # CfC outputs are the motor neurons themselves
        assert torch.allclose(states[..., :cell.output_size], y)
    # a loss on inter/command neurons reaches the parameters and the input
    x = x.clone().requires_grad_()
    _, _, states = cell(x, ts, return_states=True)
    states[..., -1].sum().backward()
    assert x.grad.abs().sum() > 0


@pytest.mark.parametrize('wiring', ['ncp', 'fc'])
def test_ltc_handwritten_backward_equals_autograd(wiring):
    w = auto_ncp(15, 3, seed=2) if wiring == 'ncp' else FullyConnectedWiring(7, 2)
    cell = make_cell('ltc', wiring=w).double()
    gen = torch.Generator().manual_seed(4)
    x = torch.randn(3, 5, 12, generator=gen, dtype=torch.float64).requires_grad_()
    ts = torch.rand(3, 5, generator=gen, dtype=torch.float64) + 0.05
    h0 = torch.randn(3, w.units, generator=gen, dtype=torch.float64).requires_grad_()
    weights = torch.randn(w.units, dtype=torch.float64, generator=gen)
    grads = []
    for reference in (False, True):
        cell.reference_autograd = reference
        y, h, states = cell(x, ts, h0, return_states=True)
        loss = y.sin().sum() + (h * weights).sum() + states[:, 1:3].square().sum()
        grads.append(torch.autograd.grad(loss, [x, h0] + list(cell.parameters())))
    for ours, ref in zip(*grads):
        assert torch.allclose(ours, ref, atol=1e-10, rtol=1e-8)
