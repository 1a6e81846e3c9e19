"""Hand-written backward pass of the CfC time loop (modes 'default' and 'no_gate').

Autograd over a recurrent loop records a dozen tiny nodes per layer and step; at the sizes of a
liquid controller (tens of neurons) the bookkeeping, not the arithmetic, dominates a training step.
``CfCSequenceFunction`` runs the forward loop without autograd, keeps the few activations the
backward needs, and back-propagates through time in one TorchScript loop, batching the weight
gradients of all steps into single matrix products at the end.

Gradient flows to the first layer's input projection ``xw`` (and from there, through ordinary
autograd, to the inputs and input weights), the initial state, the other layers' input weights, the
block-diagonal recurrent weights and the biases. ``timespans`` get no gradient (they are data).
``test/policy/test_cfc_ltc.py`` checks these gradients against autograd through the reference loop.
"""
from __future__ import annotations

from typing import List, Tuple

import torch
from torch.autograd.function import once_differentiable

from liquid_controller.policy.liquid_base import jit_script

__all__ = ['CfCSequenceFunction']


@jit_script
def _forward(xw: torch.Tensor, ts: torch.Tensor, h: torch.Tensor, w_in: List[torch.Tensor],
             w_rec: torch.Tensor, bias: torch.Tensor, sizes: List[int], cols: List[int],
             state_order: List[int], no_gate: bool
             ) -> Tuple[torch.Tensor, List[torch.Tensor], List[torch.Tensor]]:
    """xw (T, B, 4 n_0) time-major, ts (T, B, 1), h (B, S).

    Returns states (T+1, B, S) (states[0] = h) and per layer tanh(ff1|ff2) (T, B, 2 n_l) and the
    time gate (T, B, n_l), the activations the backward needs.
    """
    states: List[torch.Tensor] = [h]
    ffs: List[List[torch.Tensor]] = [[] for _ in sizes]
    gates: List[List[torch.Tensor]] = [[] for _ in sizes]
    for t in range(xw.shape[0]):
        r = torch.addmm(bias, h, w_rec)                                  # (B, K)
        outs: List[torch.Tensor] = []
        inp = h  # placeholder, replaced in layer 0
        for layer in range(len(sizes)):
            n = sizes[layer]
            c = cols[layer]
            if layer == 0:
                z = r[:, c:c + 4 * n] + xw[t]
            else:
                z = torch.addmm(r[:, c:c + 4 * n], inp, w_in[layer])
            ff = torch.tanh(z[:, :2 * n])
            gate = torch.sigmoid(torch.addcmul(z[:, 3 * n:], z[:, 2 * n:3 * n], ts[t]))
            if no_gate:
                inp = torch.addcmul(ff[:, :n], gate, ff[:, n:])
            else:
                inp = torch.lerp(ff[:, :n], ff[:, n:], gate)              # f1 + g (f2 - f1)
            ffs[layer].append(ff)
            gates[layer].append(gate)
            outs.append(inp)
        h = torch.cat([outs[i] for i in state_order], dim=1)
        states.append(h)
    return (torch.stack(states), [torch.stack(f) for f in ffs], [torch.stack(g) for g in gates])


@jit_script
def _local_derivatives(ffs: List[torch.Tensor], gates: List[torch.Tensor], ts: torch.Tensor,
                       state_order: List[int], no_gate: bool) -> List[torch.Tensor]:
    """Per layer P (T, B, 4 n_l) with dL/dz = dL/dh * P for the four gate blocks [z1|z2|z3|z4].

    default: h = f1 + g (f2 - f1) with f = tanh(z1|z2), g = sigmoid(z3 ts + z4), so
    dh/dz1 = (1 - g)(1 - f1^2), dh/dz2 = g (1 - f2^2), dh/dz4 = (f2 - f1) g (1 - g), dh/dz3 = ts dh/dz4.
    no_gate: h = f1 + g f2: dh/dz1 = 1 - f1^2, dh/dz4 = f2 g (1 - g). Computed for all steps at once.
    """
    out: List[torch.Tensor] = []
    for layer in range(len(ffs)):
        ff = ffs[layer]
        g = gates[layer]
        n = g.shape[2]
        f1 = ff[:, :, :n]
        f2 = ff[:, :, n:]
        dg = g * (1.0 - g)
        if no_gate:
            p1 = 1.0 - f1 * f1
            d4 = f2 * dg
        else:
            p1 = (1.0 - g) * (1.0 - f1 * f1)
            d4 = (f2 - f1) * dg
        out.append(torch.cat([p1, g * (1.0 - f2 * f2), d4 * ts, d4], dim=2))
    return out


@jit_script
def _backward(d_states: torch.Tensor, states: torch.Tensor, p: List[torch.Tensor],
              w_in: List[torch.Tensor], w_rec: torch.Tensor, sizes: List[int],
              starts: List[int], state_order: List[int]
              ) -> Tuple[torch.Tensor, torch.Tensor, List[torch.Tensor], torch.Tensor,
                         torch.Tensor]:
    """Back-propagation through time. d_states (T, B, S) = dL/d(state after each step) from the
    outputs; p from ``_local_derivatives``.

    Returns d_xw (T, B, 4 n_0), d_h0 (B, S), d_w_in (per layer; [0] unused), d_w_rec, d_bias.
    """
    steps = d_states.shape[0]
    batch = d_states.shape[1]
    n_layers = len(sizes)
    dz_layers: List[List[torch.Tensor]] = [[] for _ in sizes]   # per layer, reversed time
    dz_steps: List[torch.Tensor] = []                           # (B, K) per step, reversed time
    carry = torch.zeros_like(d_states[0])                       # dL/dh_t (B, S)
    w_rec_t = w_rec.t()
    w_in_t = [w.t() for w in w_in]
    for t in range(steps - 1, -1, -1):
        carry = carry + d_states[t]
        d_inp = carry  # placeholder: replaced before first use
        dz_t: List[torch.Tensor] = [carry for _ in sizes]
        for layer in range(n_layers - 1, -1, -1):
            n = sizes[layer]
            s = starts[layer]
            dh = carry[:, s:s + n]
            if layer < n_layers - 1:
                dh = dh + d_inp
            # the four gate blocks share dL/dh: (B, 4, n) = (B, 4, n) * (B, 1, n)
            dz = (p[layer][t].view(batch, 4, n) * dh.unsqueeze(1)).view(batch, 4 * n)
            dz_t[layer] = dz
            dz_layers[layer].append(dz)
            if layer > 0:
                d_inp = torch.mm(dz, w_in_t[layer])                       # into previous layer
        dz_all_t = torch.cat([dz_t[i] for i in state_order], dim=1)      # (B, K) column order
        dz_steps.append(dz_all_t)
        carry = torch.mm(dz_all_t, w_rec_t)                                # into step t-1
    dz_steps.reverse()
    flat_dz = torch.stack(dz_steps).reshape(steps * batch, -1)            # (T*B, K)
    prev = states[:-1].reshape(steps * batch, -1)                          # (T*B, S)
    d_w_rec = torch.mm(prev.t(), flat_dz)
    d_bias = flat_dz.sum(0)
    d_w_in: List[torch.Tensor] = [torch.zeros_like(w_in[0])]
    new = states[1:].reshape(steps * batch, -1)
    for layer in range(1, n_layers):
        q = starts[layer - 1]
        inp = new[:, q:q + sizes[layer - 1]]
        dz_layers[layer].reverse()
        dz = torch.stack(dz_layers[layer]).reshape(steps * batch, -1)
        d_w_in.append(torch.mm(inp.t(), dz))
    dz_layers[0].reverse()
    d_xw = torch.stack(dz_layers[0])                                       # (T, B, 4 n_0)
    return d_xw, carry, d_w_in, d_w_rec, d_bias


class CfCSequenceFunction(torch.autograd.Function):
    """Autograd function: CfC time loop with a hand-written backward (modes default / no_gate)."""

    @staticmethod
    def forward(ctx, xw, ts, h0, w_rec, bias, meta, *w_in_rest):
        """xw (B, T, 4 n_0), ts (B, T), h0 (B, S); meta = (sizes, cols, starts, state_order,
        no_gate, w_in0 placeholder); w_in_rest = input weights of layers 1.. -> states after each
        step (B, T, S)."""
        sizes, cols, starts, state_order, no_gate, w_in0 = meta
        w_in = [w_in0] + list(w_in_rest)
        xw_t = xw.transpose(0, 1).contiguous()                           # (T, B, 4 n_0)
        ts_t = ts.t().unsqueeze(-1).contiguous()                          # (T, B, 1)
        states, ffs, gates = _forward(xw_t, ts_t, h0, w_in, w_rec, bias, sizes, cols,
                                      state_order, no_gate)
        if any(ctx.needs_input_grad):
            p = _local_derivatives(ffs, gates, ts_t, state_order, no_gate)
            ctx.save_for_backward(states, w_rec, *w_in, *p)
            ctx.meta = meta
        out = states[1:].transpose(0, 1)                                  # (B, T, S)
        # own memory: the output must not alias the saved states
        return out.clone() if out.is_contiguous() else out.contiguous()

    @staticmethod
    @once_differentiable  # the backward itself is not differentiable: say so instead of being wrong
    def backward(ctx, d_seq):
        sizes, cols, starts, state_order, _, _ = ctx.meta
        saved = ctx.saved_tensors
        states, w_rec = saved[0], saved[1]
        w_in = list(saved[2:2 + len(sizes)])
        p = list(saved[2 + len(sizes):])
        d_xw, d_h0, d_w_in, d_w_rec, d_bias = _backward(
            d_seq.transpose(0, 1).contiguous(), states, p, w_in, w_rec, sizes, starts,
            state_order)
        return (d_xw.transpose(0, 1), None, d_h0, d_w_rec, d_bias, None, *d_w_in[1:])
