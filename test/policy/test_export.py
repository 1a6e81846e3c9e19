"""TorchScript export of the streaming step: saved, reloaded, equal to the eager cell."""
import math

import pytest
import torch

from liquid_controller.errors import InputError
from liquid_controller.policy.cfc import CFC_MODES, CfC
from liquid_controller.policy.export import export_step, load_step, verify_export
from liquid_controller.policy.ltc import LTC
from liquid_controller.policy.wiring import FullyConnectedWiring, auto_ncp


def _cell(kind, mode=None, wiring=None):
    torch.manual_seed(0)
    wiring = wiring or auto_ncp(19, 2, seed=1)
    cell = CfC(32, wiring, mode=mode) if kind == 'cfc' else LTC(32, wiring)
    with torch.no_grad():
        for p in cell.parameters():
            p.add_(torch.randn_like(p) * 0.1)
    return cell


@pytest.mark.parametrize('kind,mode', [('cfc', m) for m in CFC_MODES] + [('ltc', None)])
def test_export_round_trip_equals_eager(kind, mode, tmp_path):
    cell = _cell(kind, mode)
    path = tmp_path / 'step.pt'
    export_step(cell, path)
    module = load_step(path)
    assert verify_export(cell, module, steps=15, batch=3) < 1e-5
    # batch size is free (scripted, not traced) and the state goes in and out
    x = torch.randn(5, 32)
    state = torch.randn(5, cell.state_size) * 0.2
    dt = torch.linspace(0.01, 0.3, 5)
    with torch.no_grad():
        y_ref, h_ref = cell.step(x, state, dt)
    y, h = module(x, state, dt)
    assert y.shape == (5, 2) and torch.allclose(y, y_ref, atol=1e-5, rtol=0)
    assert torch.allclose(h, h_ref, atol=1e-5, rtol=0)


def test_export_fully_connected_and_snapshot(tmp_path):
    cell = _cell('cfc', 'default', FullyConnectedWiring(8, 3))
    module = export_step(cell)
    assert verify_export(cell, module) < 1e-5
    with torch.no_grad():
        cell.bias_0.add_(1.0)  # later training does not change an exported snapshot
    assert verify_export(cell, module) > 1e-3


@pytest.mark.parametrize('kind', ['cfc', 'ltc'])
def test_exported_module_rejects_bad_input(kind):
    cell = _cell(kind, 'default')
    module = export_step(cell)
    x, h = torch.zeros(1, 32), cell.initial_state(1)
    for args, word in [((x, h, torch.tensor([0.0])), 'dt'),
                       ((x, h, torch.tensor([math.nan])), 'dt'),
                       ((torch.full((1, 32), math.inf), h, torch.tensor([0.1])), 'x'),
                       ((torch.zeros(1, 31), h, torch.tensor([0.1])), 'x'),
                       ((x, torch.zeros(1, 5), torch.tensor([0.1])), 'state')]:
        with pytest.raises(torch.jit.Error, match=word):
            module(*args)


def test_export_bad_arguments(tmp_path):
    with pytest.raises(InputError):
        export_step(torch.nn.Linear(2, 2))
    with pytest.raises(InputError):
        load_step(tmp_path / 'missing.pt')
