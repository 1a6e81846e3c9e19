"""Hand-written backward pass of the LTC time loop (fused semi-implicit Euler unfolds).

As for the CfC (``cfc_training``), autograd over the unrolled loop (steps x unfolds x a dozen small
operations) spends its time on bookkeeping. ``LTCSequenceFunction`` runs the loop without autograd,
keeps the synapse activations of every unfold, and back-propagates in one TorchScript loop; all
weight gradients are reduced over steps, unfolds and batch in single operations at the end.

Per unfold k of step t (S neurons, pre-synaptic i, post-synaptic j)::

    A_ij = sigmoid(v_i sigma_ij - sigma_mu_ij)
    N_j = cm_t_j v_j + NC_j + sum_i A_ij we_ij      NC = gleak vleak + sensory numerator
    D_j = DC_j + sum_i A_ij w_ij                    DC = cm_t + gleak + sensory denominator + eps
    v'_j = N_j / D_j                                cm_t = cm / (ts / unfolds)

Gradient flows to the sensory sums (and from there, through ordinary autograd, to the inputs and
sensory parameters), the initial state, sigma, sigma*mu, the masked weights and reversal products,
cm, gleak and gleak*vleak; ``timespans`` get none. ``test/policy/test_cfc_ltc.py`` checks these
gradients against autograd through the reference loop.
"""
from __future__ import annotations

from typing import List, Tuple

import torch
from torch.autograd.function import once_differentiable

from liquid_controller.policy.liquid_base import jit_script

__all__ = ['LTCSequenceFunction']


@jit_script
def _forward(num_s: torch.Tensor, den_s: torch.Tensor, ts: torch.Tensor, v: torch.Tensor,
             sigma: torch.Tensor, sigma_mu: torch.Tensor, w_eff: torch.Tensor,
             we_eff: torch.Tensor, cm: torch.Tensor, gleak: torch.Tensor,
             gleak_vleak: torch.Tensor, unfolds: int, epsilon: float, keep: bool
             ) -> Tuple[torch.Tensor, List[torch.Tensor], List[torch.Tensor], List[torch.Tensor]]:
    """Time-major: num_s/den_s (T, B, S), ts (T, B, 1), v (B, S).

    Returns states (T+1, B, S) and, when ``keep``, per (step, unfold) the activations A (B, S, S),
    the state before the unfold (B, S) and the denominator D (B, S).
    """
    states: List[torch.Tensor] = [v]
    acts: List[torch.Tensor] = []
    v_before: List[torch.Tensor] = []
    dens: List[torch.Tensor] = []
    for t in range(num_s.shape[0]):
        cm_t = cm / (ts[t] / unfolds)                                     # (B, S)
        num_const = gleak_vleak + num_s[t]
        den_const = cm_t + gleak + den_s[t] + epsilon
        for _ in range(unfolds):
            act = torch.sigmoid(v.unsqueeze(-1) * sigma - sigma_mu)       # (B, S, S) pre x post
            num = cm_t * v + num_const + (act * we_eff).sum(1)
            den = den_const + (act * w_eff).sum(1)
            if keep:
                acts.append(act)
                v_before.append(v)
                dens.append(den)
            v = num / den
        states.append(v)
    return torch.stack(states), acts, v_before, dens


@jit_script
def _backward(d_states: torch.Tensor, states: torch.Tensor, ts: torch.Tensor,
              acts: List[torch.Tensor], v_before: List[torch.Tensor], dens: List[torch.Tensor],
              sigma: torch.Tensor, w_eff: torch.Tensor, we_eff: torch.Tensor, cm: torch.Tensor,
              unfolds: int) -> List[torch.Tensor]:
    """Back-propagation through steps and unfolds. d_states (T, B, S).

    Returns [d_num_s (T,B,S), d_den_s (T,B,S), d_v0, d_sigma, d_sigma_mu, d_w_eff, d_we_eff,
    d_cm, d_gleak, d_gleak_vleak].
    """
    steps = d_states.shape[0]
    d_num_s: List[torch.Tensor] = []
    d_den_s: List[torch.Tensor] = []
    d_n_all: List[torch.Tensor] = []     # dL/dN per (step, unfold), reversed order
    d_d_all: List[torch.Tensor] = []     # dL/dD
    d_pre_all: List[torch.Tensor] = []   # dL/d(pre-sigmoid) (B, S, S)
    v_all: List[torch.Tensor] = []
    a_all: List[torch.Tensor] = []
    d_cm = torch.zeros_like(cm)
    carry = torch.zeros_like(d_states[0])
    for t in range(steps - 1, -1, -1):
        dv = carry + d_states[t]
        cm_t = cm / (ts[t] / unfolds)
        d_nc = torch.zeros_like(dv)
        d_dc = torch.zeros_like(dv)
        d_cm_t = torch.zeros_like(dv)
        v_after = states[t + 1]
        for k in range(unfolds - 1, -1, -1):
            i = t * unfolds + k
            act = acts[i]
            v_k = v_before[i]
            d_n = dv / dens[i]                                            # dL/dN
            d_d = -d_n * v_after                                          # dL/dD
            d_nc = d_nc + d_n
            d_dc = d_dc + d_d
            d_cm_t = d_cm_t + d_n * v_k
            d_act = d_n.unsqueeze(1) * we_eff + d_d.unsqueeze(1) * w_eff  # (B, S, S)
            d_pre = d_act * act * (1.0 - act)
            dv = d_n * cm_t + (d_pre * sigma).sum(2)
            d_n_all.append(d_n)
            d_d_all.append(d_d)
            d_pre_all.append(d_pre)
            v_all.append(v_k)
            a_all.append(act)
            v_after = v_k
        # cm_t = cm * unfolds / ts enters N (cm_t v) and D (den_const)
        d_cm = d_cm + ((d_cm_t + d_dc) * (unfolds / ts[t])).sum(0)
        d_num_s.append(d_nc)
        d_den_s.append(d_dc)
        carry = dv
    d_num_s.reverse()
    d_den_s.reverse()
    d_den = torch.stack(d_den_s)
    d_num = torch.stack(d_num_s)
    a = torch.stack(a_all)                                                 # (T*U, B, S, S)
    d_pre = torch.stack(d_pre_all)
    d_we = (a * torch.stack(d_n_all).unsqueeze(2)).sum((0, 1))
    d_w = (a * torch.stack(d_d_all).unsqueeze(2)).sum((0, 1))
    d_sigma = (d_pre * torch.stack(v_all).unsqueeze(-1)).sum((0, 1))
    d_sigma_mu = -d_pre.sum((0, 1))
    d_gleak = d_den.sum((0, 1))
    d_gleak_vleak = d_num.sum((0, 1))
    return [d_num, d_den, carry, d_sigma, d_sigma_mu, d_w, d_we, d_cm, d_gleak, d_gleak_vleak]


class LTCSequenceFunction(torch.autograd.Function):
    """Autograd function: LTC time loop with a hand-written backward."""

    @staticmethod
    def forward(ctx, num_s, den_s, ts, v0, sigma, sigma_mu, w_eff, we_eff, cm, gleak, gleak_vleak,
                unfolds, epsilon):
        """num_s/den_s (B, T, S) sensory sums, ts (B, T), v0 (B, S) -> states (B, T, S)."""
        num_t = num_s.transpose(0, 1).contiguous()
        den_t = den_s.transpose(0, 1).contiguous()
        ts_t = ts.t().unsqueeze(-1).contiguous()                          # (T, B, 1)
        keep = any(ctx.needs_input_grad)
        states, acts, v_before, dens = _forward(num_t, den_t, ts_t, v0, sigma, sigma_mu, w_eff,
                                                we_eff, cm, gleak, gleak_vleak, unfolds, epsilon,
                                                keep)
        if keep:
            ctx.save_for_backward(states, ts_t, sigma, w_eff, we_eff, cm)
            ctx.lists = (acts, v_before, dens)
            ctx.unfolds = unfolds
        out = states[1:].transpose(0, 1)
        # own memory: the output must not alias the saved states
        return out.clone() if out.is_contiguous() else out.contiguous()

    @staticmethod
    @once_differentiable
    def backward(ctx, d_seq):
        states, ts_t, sigma, w_eff, we_eff, cm = ctx.saved_tensors
        acts, v_before, dens = ctx.lists
        (d_num, d_den, d_v0, d_sigma, d_sigma_mu, d_w, d_we, d_cm, d_gleak,
         d_gleak_vleak) = _backward(d_seq.transpose(0, 1).contiguous(), states, ts_t, acts,
                                    v_before, dens, sigma, w_eff, we_eff, cm, ctx.unfolds)
        return (d_num.transpose(0, 1), d_den.transpose(0, 1), None, d_v0, d_sigma, d_sigma_mu,
                d_w, d_we, d_cm, d_gleak, d_gleak_vleak, None, None)
