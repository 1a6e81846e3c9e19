"""Liquid time-constant (LTC) cell wired by an NCP or fully connected (Hasani et al. 2021).

Public API (contract 1 of the team brief)::

    cell = LTC(input_size, wiring, ode_unfolds=6)
    h0 = cell.initial_state(batch_size)                  # (B, state_size) zeros
    y, h = cell(x, timespans, state=None)                # x (B, T, F), timespans (B, T) | None
    y, h = cell.step(x, h, dt)                           # x (B, F), dt (B,) | float seconds
    cell.load_ncps(ncps_ltc)                             # copy weights from an ncps.torch.LTC

Maths: exactly ncps 1.0.1 ``LTCCell`` as used by ``ncps.torch.LTC`` (affine input and output mapping,
``implicit_param_constraints=True``: w, sensory_w, cm, gleak pass through softplus). One step of
elapsed time ``ts`` is ``ode_unfolds`` fused semi-implicit Euler steps of the membrane ODE::

    x' = x * input_w + input_b
    s_ij = softplus(sensory_w_ij) * mask_ij * sigmoid(sensory_sigma_ij * (x'_i - sensory_mu_ij))
    cm_t = softplus(cm) / (ts / ode_unfolds)
    repeat ode_unfolds times:
        a_ij = softplus(w_ij) * mask_ij * sigmoid(sigma_ij * (v_i - mu_ij))
        v_j = (cm_t v_j + gleak_j vleak_j + sum_i a_ij erev_ij + sum_i s_ij sensory_erev_ij)
              / (cm_t + gleak_j + sum_i a_ij + sum_i s_ij + epsilon)
    y = v[:, :output_size] * output_w + output_b

Masks (|adjacency|) are buffers; erev starts at the wiring's polarities (trainable, as ncps).
``implicit_constraints=False`` gives ncps's other variant (identity instead of softplus; the caller
then clips with ``apply_weight_constraints()`` after each optimiser step, as ncps).

Speed: softplus, masks and the sensory activation are computed once per ``forward`` call, the time
loop runs in TorchScript with a hand-written backward (``ltc_training``), and inference steps on CPU
run in numpy (``numpy_inference.ltc_step``).
"""
from __future__ import annotations

from typing import Tuple

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from liquid_controller.errors import InputError
from liquid_controller.policy import numpy_inference
from liquid_controller.policy.liquid_base import LiquidCell, jit_script
from liquid_controller.policy.ltc_training import LTCSequenceFunction
from liquid_controller.validation import check_int, check_number

__all__ = ['LTC']

# ncps initialisation ranges (uniform)
_INIT_RANGES = {
    'gleak': (0.001, 1.0), 'vleak': (-0.2, 0.2), 'cm': (0.4, 0.6), 'w': (0.001, 1.0),
    'sigma': (3.0, 8.0), 'mu': (0.3, 0.8), 'sensory_w': (0.001, 1.0), 'sensory_sigma': (3.0, 8.0),
    'sensory_mu': (0.3, 0.8),
}


@jit_script
def _ltc_sequence(num_s: torch.Tensor, den_s: torch.Tensor, ts: torch.Tensor, v: torch.Tensor,
                  sigma: torch.Tensor, sigma_mu: torch.Tensor, w_eff: torch.Tensor,
                  we_eff: torch.Tensor, cm: torch.Tensor, gleak: torch.Tensor,
                  gleak_vleak: torch.Tensor, unfolds: int, epsilon: float, output_size: int,
                  output_w: torch.Tensor, output_b: torch.Tensor) -> Tuple[torch.Tensor, torch.Tensor]:
    """Time loop. num_s/den_s (B, T, S) sensory sums, ts (B, T), v (B, S).

    Returns y (B, T, O) and the states after each step (B, T, S)."""
    outputs = []
    for t in range(ts.shape[1]):
        cm_t = cm / (ts[:, t:t + 1] / unfolds)                     # (B, S)
        num_const = gleak_vleak + num_s[:, t]
        den_const = cm_t + gleak + den_s[:, t] + epsilon
        for _ in range(unfolds):
            act = torch.sigmoid(v.unsqueeze(-1) * sigma - sigma_mu)  # (B, S, S) pre x post
            num = cm_t * v + num_const + (act * we_eff).sum(1)
            den = den_const + (act * w_eff).sum(1)
            v = num / den
        outputs.append(v)
    states = torch.stack(outputs, dim=1)
    return states[:, :, :output_size] * output_w + output_b, states


class LTC(LiquidCell):
    """LTC cell over a wiring; see the module docstring for the maths and the interfaces.

    Args:
        input_size: number of input features F.
        wiring: ``NCPWiring`` / ``auto_ncp(...)`` or ``FullyConnectedWiring``.
        ode_unfolds: semi-implicit Euler steps per input step (ncps default 6).
        epsilon: added to the denominator (ncps 1e-8).
        implicit_constraints: softplus on w, sensory_w, cm, gleak (ncps.torch.LTC default True).
    """

    def __init__(self, input_size, wiring, ode_unfolds=6, epsilon=1e-8, implicit_constraints=True):
        super().__init__(input_size, wiring)
        self.ode_unfolds = check_int('ode_unfolds', ode_unfolds, 1)
        epsilon = check_number('epsilon', epsilon, 0.0, 1.0, high_open=True)  # small: guards a division
        self.epsilon = float(epsilon)
        self.implicit_constraints = bool(implicit_constraints)
        # True: autograd through the TorchScript reference loop instead of the hand-written backward
        # (tests compare the two)
        self.reference_autograd = False
        s, f = self.state_size, self.input_size

        def init(name, shape):
            lo, hi = _INIT_RANGES[name]
            self.register_parameter(name, nn.Parameter(torch.rand(*shape) * (hi - lo) + lo))

        init('gleak', (s,))
        init('vleak', (s,))
        init('cm', (s,))
        init('sigma', (s, s))
        init('mu', (s, s))
        init('w', (s, s))
        self.erev = nn.Parameter(torch.from_numpy(self.wiring.adjacency.astype(np.float32)))
        init('sensory_sigma', (f, s))
        init('sensory_mu', (f, s))
        init('sensory_w', (f, s))
        self.sensory_erev = nn.Parameter(
            torch.from_numpy(self.wiring.sensory_adjacency.astype(np.float32)))
        self.register_buffer('sparsity_mask',
                             torch.from_numpy(np.abs(self.wiring.adjacency).astype(np.float32)))
        self.register_buffer('sensory_sparsity_mask', torch.from_numpy(
            np.abs(self.wiring.sensory_adjacency).astype(np.float32)))
        self.input_w = nn.Parameter(torch.ones(f))
        self.input_b = nn.Parameter(torch.zeros(f))
        self.output_w = nn.Parameter(torch.ones(self.output_size))
        self.output_b = nn.Parameter(torch.zeros(self.output_size))

    def _positive(self, p):
        return F.softplus(p) if self.implicit_constraints else p

    @torch.no_grad()
    def apply_weight_constraints(self):
        """With ``implicit_constraints=False``: clip w, sensory_w, cm, gleak at 0 (call after a step)."""
        if not self.implicit_constraints:
            for p in (self.w, self.sensory_w, self.cm, self.gleak):
                p.clamp_(min=0)

    def _constants(self):
        """Per-call effective tensors (differentiable)."""
        return {
            'sw': self._positive(self.sensory_w) * self.sensory_sparsity_mask,   # (F, S)
            'w_eff': self._positive(self.w) * self.sparsity_mask,                # (S, S)
            'cm': self._positive(self.cm),
            'gleak': self._positive(self.gleak),
        }

    def _sequence(self, x, ts, h):
        c = self._constants()
        xm = x * self.input_w + self.input_b                                     # (B, T, F)
        # sensory synapses depend on the input only: all steps at once, (B, T, F, S)
        s_act = torch.sigmoid(self.sensory_sigma * (xm.unsqueeze(-1) - self.sensory_mu)) * c['sw']
        num_s = (s_act * self.sensory_erev).sum(2)                               # (B, T, S)
        den_s = s_act.sum(2)
        w_eff = c['w_eff']
        args = (num_s, den_s, ts, h, self.sigma, self.sigma * self.mu, w_eff, w_eff * self.erev,
                c['cm'], c['gleak'], c['gleak'] * self.vleak)
        if self.reference_autograd:
            _, states = _ltc_sequence(*args, self.ode_unfolds, self.epsilon, self.output_size,
                                      self.output_w, self.output_b)
        else:
            states = LTCSequenceFunction.apply(*args, self.ode_unfolds, self.epsilon)
        y = states[..., :self.output_size] * self.output_w + self.output_b   # affine output mapping
        return y, states[:, -1], states

    def _prepare_numpy(self):
        c = self._constants()

        def np32(t):
            return t.detach().cpu().numpy().copy()

        # sigmoid(z) = 0.5 + 0.5 tanh(z / 2): halve sigma and sigma*mu, split each weighted sum
        # into a constant half and a tanh-weighted half; numerator and denominator side by side
        w_half = np32(c['w_eff']) * 0.5
        w2 = np.concatenate([w_half * np32(self.erev), w_half], axis=1)          # (S, 2S)
        s_half = np32(c['sw']) * 0.5
        s_w2 = np.concatenate([s_half * np32(self.sensory_erev), s_half], axis=1)  # (F, 2S)

        def twice(t):
            a = np32(t) * 0.5
            return np.concatenate([a, a], axis=1)

        return numpy_inference.LTCNumpyWeights(
            state_size=self.state_size, input_w=np32(self.input_w), input_b=np32(self.input_b),
            s_sig2=twice(self.sensory_sigma), s_sig_mu2=twice(self.sensory_sigma * self.sensory_mu),
            s_w2=s_w2, s_w2_sum=s_w2.sum(0),
            sig2=twice(self.sigma), sig_mu2=twice(self.sigma * self.mu), w2=w2, w2_sum=w2.sum(0),
            cm=np32(c['cm']), gleak=np32(c['gleak']), gleak_vleak=np32(c['gleak'] * self.vleak),
            epsilon=np.float32(self.epsilon), unfolds=self.ode_unfolds,
            output_size=self.output_size, output_w=np32(self.output_w),
            output_b=np32(self.output_b))

    _kernel = staticmethod(numpy_inference.ltc_step)  # the numpy step used by step() under no_grad

    # -- ncps interoperability --------------------------------------------------------------------
    _NCPS_NAMES = ('gleak', 'vleak', 'cm', 'sigma', 'mu', 'w', 'erev', 'sensory_sigma', 'sensory_mu',
                   'sensory_w', 'sensory_erev', 'input_w', 'input_b', 'output_w', 'output_b')

    def state_from_ncps(self, state):
        """ncps LTC state is already in neuron-id order: returned unchanged (symmetry with CfC)."""
        return state

    def state_to_ncps(self, state):
        """Our state is in ncps LTC order: returned unchanged."""
        return state

    @torch.no_grad()
    def load_ncps(self, ncps_ltc):
        """Copy weights from an ``ncps.torch.LTC`` (or ``LTCCell``) built on the same wiring.

        The ncps model must use affine input/output mappings and the same ``implicit_param_constraints``.
        """
        cell = getattr(ncps_ltc, 'rnn_cell', ncps_ltc)
        implicit = getattr(cell, '_implicit_param_constraints', self.implicit_constraints)
        if implicit != self.implicit_constraints:
            raise InputError('ncps_ltc.implicit_param_constraints', implicit,
                             f'differs from ours ({self.implicit_constraints})')
        sd = cell.state_dict()
        for name in self._NCPS_NAMES:
            if name not in sd:
                raise InputError('ncps_ltc', type(ncps_ltc).__name__, f'has no parameter {name!r}')
            target = getattr(self, name)
            if tuple(sd[name].shape) != tuple(target.shape):
                raise InputError(f'ncps_ltc.{name}.shape', tuple(sd[name].shape),
                                 f'expected {tuple(target.shape)}')
            target.copy_(sd[name])
        for name in ('sparsity_mask', 'sensory_sparsity_mask'):
            if not torch.equal(sd[name], getattr(self, name)):
                raise InputError(f'ncps_ltc.{name}', 'differs', 'wiring differs from ours')
        return self
