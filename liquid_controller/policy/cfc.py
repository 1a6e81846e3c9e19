"""Closed-form continuous-time (CfC) cell wired by an NCP or fully connected (Hasani et al. 2022).

Public API (contract 1 of the team brief)::

    cell = CfC(input_size, wiring, mode='default')      # mode: 'default' | 'no_gate' | 'pure'
    h0 = cell.initial_state(batch_size)                  # (B, state_size) zeros
    y, h = cell(x, timespans, state=None)                # x (B, T, F), timespans (B, T) | None
    y, h = cell.step(x, h, dt)                           # x (B, F), dt (B,) | float seconds
    cell.load_ncps(ncps_cfc)                             # copy weights from an ncps.torch.CfC

Maths: exactly ncps 1.0.1 ``WiredCfCCell`` (one ``CfCCell`` per wiring layer, inter -> command ->
motor, each layer reading the *new* output of the previous layer and its own previous state; no
backbone layers, as ncps in wired mode). Per layer, with ``z = [input, own state]``::

    ff1 = tanh(W1 z + b1), ff2 = tanh(W2 z + b2), g = sigmoid((Wa z + ba) * ts + (Wb z + bb))
    default: h = ff1 * (1 - g) + g * ff2;   no_gate: h = ff1 + g * ff2
    pure:    h = -A * exp(-ts * (|w_tau| + |W1 z + b1|)) * (W1 z + b1) + A

Sparsity: like ncps, the wiring mask (|adjacency| of the previous layer into this layer, all-ones over
the layer's own state) multiplies only W1 and W2; the time gates Wa, Wb are dense. That is ncps's
behaviour (arguably a defect: the time constants see unwired neurons) and we keep it so that weights
are interchangeable and the equivalence test holds. Masks are buffers, not parameters.

Differences from ncps (deliberate): timespans are per sample and step (B, T) and correct for B > 1;
the hidden state columns are neuron ids (motor first), the same order as LTC, where ncps CfC orders
them by layer (inter, command, motor): ``load_ncps``/``state_from_ncps`` translate; with a fully
connected wiring the output is the first ``output_size`` neurons (ncps returns all units).

Speed: the four gate matrices of a layer are one matrix, the recurrent parts of all layers one
block-diagonal matrix, masks are applied once per ``forward`` call (not per step), the time loop runs
in TorchScript with a hand-written backward (``cfc_training``; modes default and no_gate), and
inference steps on CPU run in numpy (``numpy_inference.cfc_step``).
"""
from __future__ import annotations

import math
from typing import List, Tuple

import numpy as np
import torch
from torch import nn

from liquid_controller.errors import InputError
from liquid_controller.policy import numpy_inference
from liquid_controller.policy.cfc_training import CfCSequenceFunction
from liquid_controller.policy.liquid_base import LiquidCell, jit_script

__all__ = ['CfC', 'CFC_MODES']

CFC_MODES = ('default', 'no_gate', 'pure')
_MODE_ID = {'default': 0, 'no_gate': 1, 'pure': 2}


@jit_script
def _cfc_sequence(xw: torch.Tensor, ts: torch.Tensor, h: torch.Tensor, w_in: List[torch.Tensor],
                  w_rec: torch.Tensor, bias: torch.Tensor, sizes: List[int], cols: List[int],
                  state_order: List[int], mode: int, a: List[torch.Tensor],
                  w_tau: List[torch.Tensor]) -> torch.Tensor:
    """Time loop. xw (B, T, G*n_0) = first layer's input part (bias excluded), ts (B, T), h (B, S).

    Returns the states after each step (B, T, S). ``w_in[0]`` is unused (already applied in ``xw``).
    """
    outputs: List[torch.Tensor] = []
    n_layers = len(sizes)
    for t in range(xw.shape[1]):
        ts_t = ts[:, t:t + 1]                                    # (B, 1)
        r = torch.addmm(bias, h, w_rec)                          # (B, sum G*n_l) recurrent + bias
        layer_out: List[torch.Tensor] = []
        inp = h  # placeholder, replaced in layer 0
        for layer in range(n_layers):
            n = sizes[layer]
            c = cols[layer]
            if layer == 0:
                z = r[:, c:c + (n if mode == 2 else 4 * n)] + xw[:, t]
            else:
                z = torch.addmm(r[:, c:c + (n if mode == 2 else 4 * n)], inp, w_in[layer])
            if mode == 2:
                inp = a[layer] - a[layer] * torch.exp(-ts_t * (w_tau[layer] + torch.abs(z))) * z
            else:
                ff = torch.tanh(z[:, :2 * n])
                gate = torch.sigmoid(torch.addcmul(z[:, 3 * n:], z[:, 2 * n:3 * n], ts_t))
                if mode == 1:
                    inp = ff[:, :n] + gate * ff[:, n:]
                else:
                    inp = ff[:, :n] * (1.0 - gate) + gate * ff[:, n:]
            layer_out.append(inp)
        h = torch.cat([layer_out[i] for i in state_order], dim=1)
        outputs.append(h)
    return torch.stack(outputs, dim=1)


class CfC(LiquidCell):
    """CfC cell over a wiring; see the module docstring for the maths and the interfaces.

    Args:
        input_size: number of input features F (the wiring is built for it).
        wiring: ``NCPWiring`` / ``auto_ncp(...)`` or ``FullyConnectedWiring``.
        mode: 'default' (gated interpolation), 'no_gate' (ff1 + g * ff2) or 'pure' (closed-form
            solution with learnable A, w_tau).

    Parameters per layer l (computation order: inter, command, motor for an NCP): ``weight_l``
    (G*n_l, in_l + n_l) with row blocks [ff1, ff2, time_a, time_b] (G = 4; only ff1 in pure mode) and
    columns [layer input, own state] as ncps; ``bias_l`` (G*n_l,); pure mode: ``a_l``, ``w_tau_l``
    (1, n_l). Buffers ``mask_l`` like ``weight_l``.
    """

    def __init__(self, input_size, wiring, mode='default'):
        super().__init__(input_size, wiring)
        if mode not in CFC_MODES:
            raise InputError('mode', mode, f'must be one of {CFC_MODES}')
        self.mode = mode
        gates = 1 if mode == 'pure' else 4
        self._gates = gates
        layers = self.wiring.layers()
        self._sizes = [len(ids) for ids in layers]
        starts = []
        for ids in layers:
            if ids != list(range(ids[0], ids[0] + len(ids))):
                raise InputError('wiring', wiring, 'each layer must be a contiguous range of neuron ids')
            starts.append(ids[0])
        # hidden state = neuron ids ascending = layers sorted by their first neuron id
        self._state_order = sorted(range(len(layers)), key=lambda i: starts[i])
        cols, offset = [0] * len(layers), 0
        for i in self._state_order:
            cols[i] = offset
            offset += gates * self._sizes[i]
        self._cols = cols
        self._starts = starts
        # True: autograd through the TorchScript reference loop instead of the hand-written backward
        # (tests compare the two; 'pure' mode always uses it)
        self.reference_autograd = False
        adjacency = np.abs(self.wiring.adjacency)
        sensory = np.abs(self.wiring.sensory_adjacency)
        in_features = self.input_size
        for layer, ids in enumerate(layers):
            n = len(ids)
            if layer == 0:
                input_mask = sensory[:, ids]                      # (F, n)
            else:
                input_mask = adjacency[np.ix_(layers[layer - 1], ids)]  # (n_prev, n)
            # ncps: mask = [input sparsity; ones over own state], transposed to (n, in + n)
            mask = np.concatenate([input_mask, np.ones((n, n))], axis=0).T.astype(np.float32)
            full = np.ones((gates * n, in_features + n), dtype=np.float32)
            full[:n] = mask                                       # ff1
            if gates == 4:
                full[n:2 * n] = mask                              # ff2; time gates stay dense
            self.register_buffer(f'mask_{layer}', torch.from_numpy(full))
            weight = torch.empty(gates * n, in_features + n)
            bound = 1.0 / math.sqrt(in_features + n)
            for g in range(gates):  # xavier per gate matrix, as ncps init_weights
                nn.init.xavier_uniform_(weight[g * n:(g + 1) * n])
            self.register_parameter(f'weight_{layer}', nn.Parameter(weight))
            self.register_parameter(
                f'bias_{layer}', nn.Parameter(torch.empty(gates * n).uniform_(-bound, bound)))
            if mode == 'pure':
                self.register_parameter(f'w_tau_{layer}', nn.Parameter(torch.zeros(1, n)))
                self.register_parameter(f'a_{layer}', nn.Parameter(torch.ones(1, n)))
            in_features = n

    # -- effective (masked, fused) weights ------------------------------------------------------------
    def _effective(self):
        """Masked weights in kernel layout: w_in per layer (in_l, G n_l), block-diagonal w_rec (S, .),
        bias (.), pure-mode A and |w_tau| per layer. Differentiable."""
        w_in, rec, bias = [], [], []
        for layer in range(len(self._sizes)):
            w = getattr(self, f'weight_{layer}') * getattr(self, f'mask_{layer}')
            n_in = w.shape[1] - self._sizes[layer]
            w_in.append(w[:, :n_in].t())                          # (in_l, G n_l)
            rec.append(w[:, n_in:].t())                           # (n_l, G n_l)
            bias.append(getattr(self, f'bias_{layer}'))
        w_rec = torch.block_diag(*[rec[i] for i in self._state_order])
        bias_all = torch.cat([bias[i] for i in self._state_order])
        a, w_tau = [], []
        if self.mode == 'pure':
            a = [getattr(self, f'a_{i}') for i in range(len(self._sizes))]
            w_tau = [torch.abs(getattr(self, f'w_tau_{i}')) for i in range(len(self._sizes))]
        return w_in, w_rec, bias_all, a, w_tau

    def _sequence(self, x, ts, h):
        w_in, w_rec, bias, a, w_tau = self._effective()
        xw = torch.matmul(x, w_in[0])                             # (B, T, G n_0) in one matmul
        if self.mode != 'pure' and not self.reference_autograd:
            meta = (self._sizes, self._cols, self._starts, self._state_order,
                    self.mode == 'no_gate', w_in[0])
            states = CfCSequenceFunction.apply(xw, ts, h, w_rec, bias, meta, *w_in[1:])
        else:
            states = _cfc_sequence(xw, ts, h, w_in, w_rec, bias, self._sizes, self._cols,
                                   self._state_order, _MODE_ID[self.mode], a, w_tau)
        # motor neurons are the first state columns
        return states[..., :self.output_size], states[:, -1], states

    def _prepare_numpy(self):
        w_in, w_rec, bias, a, w_tau = self._effective()
        w_in = [w.detach().cpu().numpy().copy() for w in w_in]
        w_rec = w_rec.detach().cpu().numpy().copy()
        bias = bias.detach().cpu().numpy().copy()
        if self.mode != 'pure':
            # fold sigmoid(z) = 0.5 + 0.5 tanh(z / 2) into the time-gate columns
            for layer, n in enumerate(self._sizes):
                c = self._cols[layer]
                w_in[layer][:, 2 * n:] *= 0.5
                w_rec[:, c + 2 * n:c + 4 * n] *= 0.5
                bias[c + 2 * n:c + 4 * n] *= 0.5
        return numpy_inference.CfCNumpyWeights(
            w_in=w_in, w_rec=w_rec, bias=bias, cols=list(self._cols), sizes=list(self._sizes),
            starts=list(self._starts), mode=self.mode, output_size=self.output_size,
            a=[t.detach().cpu().numpy().reshape(-1).copy() for t in a],
            w_tau=[t.detach().cpu().numpy().reshape(-1).copy() for t in w_tau])

    _kernel = staticmethod(numpy_inference.cfc_step)  # the numpy step used by step() under no_grad

    # -- ncps interoperability --------------------------------------------------------------------
    def _ncps_permutation(self):
        """perm such that ours[:, i] = ncps[:, perm[i]] (ncps CfC state is in layer order)."""
        layer_order_ids = [i for ids in self.wiring.layers() for i in ids]
        position = {neuron: col for col, neuron in enumerate(layer_order_ids)}
        return [position[i] for i in range(self.state_size)]

    def state_from_ncps(self, state):
        """Reorder an ncps CfC hidden state (layer order) into ours (neuron-id order)."""
        return state[:, self._ncps_permutation()]

    def state_to_ncps(self, state):
        """Reorder our hidden state (neuron-id order) into ncps CfC's layer order."""
        perm = self._ncps_permutation()
        inverse = [0] * len(perm)
        for ours, theirs in enumerate(perm):
            inverse[theirs] = ours
        return state[:, inverse]

    @torch.no_grad()
    def load_ncps(self, ncps_cfc):
        """Copy weights from an ``ncps.torch.CfC`` (or ``WiredCfCCell``) built on the same wiring.

        Duck-typed on the state dict (ncps is not imported): ``rnn_cell.layer_{l}.ff1.weight`` etc.
        """
        sd = ncps_cfc.state_dict()
        prefix = 'rnn_cell.' if any(k.startswith('rnn_cell.') for k in sd) else ''
        names = ['ff1'] if self.mode == 'pure' else ['ff1', 'ff2', 'time_a', 'time_b']
        for layer in range(len(self._sizes)):
            p = f'{prefix}layer_{layer}.'
            try:
                weight = torch.cat([sd[f'{p}{g}.weight'] for g in names], 0)
                bias = torch.cat([sd[f'{p}{g}.bias'] for g in names], 0)
            except KeyError as exc:
                raise InputError('ncps_cfc', type(ncps_cfc).__name__,
                                 f'missing {exc} (mode or wiring differ?)') from None
            target = getattr(self, f'weight_{layer}')
            if weight.shape != target.shape:
                raise InputError(f'ncps layer_{layer} weight shape', tuple(weight.shape),
                                 f'expected {tuple(target.shape)} (wiring differs?)')
            target.copy_(weight)
            getattr(self, f'bias_{layer}').copy_(bias)
            if self.mode == 'pure':
                getattr(self, f'w_tau_{layer}').copy_(sd[f'{p}w_tau'])
                getattr(self, f'a_{layer}').copy_(sd[f'{p}A'])
        return self
