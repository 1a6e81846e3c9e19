"""Export of the liquid cell's streaming step (state in, state out) as a TorchScript module.

(The whole policy step as ONNX, for the torch-free runtime, is policy/onnx_export.py.)

    module = export_step(cell)                    # CfC or LTC -> torch.jit.ScriptModule
    module.save(path); module = load_step(path)   # plain TorchScript archive, no Python classes needed
    y, state = module(x (B, F), state (B, S), dt (B,))
    max_abs_diff = verify_export(cell, module)    # compares with cell.step over a random sequence

The module is *scripted* (not traced), so batch size and dt are free; it holds a snapshot of the
cell's effective weights (masks applied, softplus evaluated), taken at export time. It checks its
inputs itself (shapes, finite values, dt > 0) and raises ``torch.jit.Error`` naming the argument;
``verify_export`` and the tests check it equals the eager cell.
"""

import warnings
from pathlib import Path
from typing import List, Tuple

import torch
from torch import nn

from liquid_controller.errors import InputError
from liquid_controller.policy.cfc import CfC, _MODE_ID, _cfc_sequence
from liquid_controller.policy.liquid_base import jit_script
from liquid_controller.policy.ltc import LTC, _ltc_sequence

__all__ = ['export_step', 'load_step', 'verify_export']


@jit_script
def _check_step_inputs(x: torch.Tensor, state: torch.Tensor, dt: torch.Tensor, input_size: int,
                       state_size: int) -> None:
    if x.dim() != 2 or x.size(1) != input_size:
        raise ValueError('x: shape must be (B, ' + str(input_size) + ')')
    if state.dim() != 2 or state.size(1) != state_size or state.size(0) != x.size(0):
        raise ValueError('state: shape must be (B, ' + str(state_size) + ') with B of x')
    if dt.dim() != 1 or dt.size(0) != x.size(0):
        raise ValueError('dt: shape must be (B,)')
    if not bool(torch.isfinite(x).all()):
        raise ValueError('x: contains NaN or Inf')
    if not bool(torch.isfinite(state).all()):
        raise ValueError('state: contains NaN or Inf')
    if not bool((torch.isfinite(dt) & (dt > 0)).all()):
        raise ValueError('dt: must be finite and > 0 (seconds)')


class CfCStep(nn.Module):
    """Scriptable CfC step over frozen effective weights (built by ``export_step``)."""

    w_in: List[torch.Tensor]
    a: List[torch.Tensor]
    w_tau: List[torch.Tensor]

    def __init__(self, cell: CfC):
        super().__init__()
        with torch.no_grad():
            w_in, w_rec, bias, a, w_tau = cell._effective()
        self.w_in = [w.detach().clone().contiguous() for w in w_in]
        self.w_rec = w_rec.detach().clone()
        self.bias = bias.detach().clone()
        self.a = [t.detach().clone() for t in a]
        self.w_tau = [t.detach().clone() for t in w_tau]
        self.sizes: List[int] = list(cell._sizes)
        self.cols: List[int] = list(cell._cols)
        self.state_order: List[int] = list(cell._state_order)
        self.mode: int = _MODE_ID[cell.mode]
        self.input_size: int = cell.input_size
        self.state_size: int = cell.state_size
        self.output_size: int = cell.output_size

    def forward(self, x: torch.Tensor, state: torch.Tensor,
                dt: torch.Tensor) -> Tuple[torch.Tensor, torch.Tensor]:
        """x (B, F), state (B, S), dt (B,) seconds -> y (B, O), state (B, S)."""
        _check_step_inputs(x, state, dt, self.input_size, self.state_size)
        xw = torch.matmul(x, self.w_in[0]).unsqueeze(1)                   # (B, 1, G n_0)
        states = _cfc_sequence(xw, dt.unsqueeze(1), state, self.w_in, self.w_rec, self.bias,
                               self.sizes, self.cols, self.state_order, self.mode, self.a,
                               self.w_tau)                                # (B, 1, S)
        h = states[:, 0]
        return h[:, :self.output_size], h


class LTCStep(nn.Module):
    """Scriptable LTC step over frozen effective weights (built by ``export_step``)."""

    def __init__(self, cell: LTC):
        super().__init__()
        with torch.no_grad():
            c = cell._constants()

            def frozen(t):
                return t.detach().clone()

            self.input_w = frozen(cell.input_w)
            self.input_b = frozen(cell.input_b)
            self.sensory_sigma = frozen(cell.sensory_sigma)
            self.sensory_mu = frozen(cell.sensory_mu)
            self.sw = frozen(c['sw'])
            self.swe = frozen(c['sw'] * cell.sensory_erev)
            self.sigma = frozen(cell.sigma)
            self.sigma_mu = frozen(cell.sigma * cell.mu)
            self.w_eff = frozen(c['w_eff'])
            self.we_eff = frozen(c['w_eff'] * cell.erev)
            self.cm = frozen(c['cm'])
            self.gleak = frozen(c['gleak'])
            self.gleak_vleak = frozen(c['gleak'] * cell.vleak)
            self.output_w = frozen(cell.output_w)
            self.output_b = frozen(cell.output_b)
        self.unfolds: int = cell.ode_unfolds
        self.epsilon: float = cell.epsilon
        self.input_size: int = cell.input_size
        self.state_size: int = cell.state_size
        self.output_size: int = cell.output_size

    def forward(self, x: torch.Tensor, state: torch.Tensor,
                dt: torch.Tensor) -> Tuple[torch.Tensor, torch.Tensor]:
        """x (B, F), state (B, S), dt (B,) seconds -> y (B, O), state (B, S)."""
        _check_step_inputs(x, state, dt, self.input_size, self.state_size)
        xm = x * self.input_w + self.input_b
        act = torch.sigmoid(self.sensory_sigma * (xm.unsqueeze(-1) - self.sensory_mu))  # (B, F, S)
        num_s = (act * self.swe).sum(1)                                   # (B, S)
        den_s = (act * self.sw).sum(1)
        y, states = _ltc_sequence(num_s.unsqueeze(1), den_s.unsqueeze(1), dt.unsqueeze(1), state,
                             self.sigma, self.sigma_mu, self.w_eff, self.we_eff, self.cm,
                             self.gleak, self.gleak_vleak, self.unfolds, self.epsilon,
                                  self.output_size, self.output_w, self.output_b)
        return y[:, 0], states[:, 0]


def export_step(cell, path=None):
    """Script the streaming step of ``cell`` (CfC or LTC); save it to ``path`` when given.

    Returns the ``torch.jit.ScriptModule`` (``forward(x (B,F), state (B,S), dt (B,))``).
    """
    if isinstance(cell, CfC):
        module = CfCStep(cell)
    elif isinstance(cell, LTC):
        module = LTCStep(cell)
    else:
        raise InputError('cell', type(cell).__name__, 'must be a CfC or LTC')
    scripted = jit_script(module.eval())
    if path is not None:
        Path(path).parent.mkdir(parents=True, exist_ok=True)
        with warnings.catch_warnings():
            warnings.filterwarnings('ignore', message='`torch.jit', category=DeprecationWarning)
            scripted.save(str(path))
    return scripted


def load_step(path):
    """Load a module saved by ``export_step`` (TorchScript archive; no pickle of Python objects)."""
    path = Path(path)
    if not path.is_file():
        raise InputError('path', str(path), 'no such file')
    with warnings.catch_warnings():  # torch >= 2.10 flags TorchScript as deprecated; still supported
        warnings.filterwarnings('ignore', message='`torch.jit', category=DeprecationWarning)
        return torch.jit.load(str(path), map_location='cpu')


def verify_export(cell, module, steps=20, batch=3, seed=0):
    """Run ``cell.step`` and ``module`` side by side on random inputs with irregular dt.

    Returns the largest absolute difference over outputs and states (float).
    """
    gen = torch.Generator().manual_seed(seed)
    x = torch.randn(steps, batch, cell.input_size, generator=gen)
    dt = torch.rand(steps, batch, generator=gen) * 0.1 + 0.005
    h_cell = cell.initial_state(batch)
    h_mod = h_cell.clone()
    worst = 0.0
    with torch.no_grad():
        for t in range(steps):
            y1, h_cell = cell.step(x[t], h_cell, dt[t])
            y2, h_mod = module(x[t], h_mod, dt[t])
            worst = max(worst, (y1 - y2).abs().max().item(), (h_cell - h_mod).abs().max().item())
    return worst
