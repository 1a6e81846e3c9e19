"""Numpy-only inference kernels for the CfC and LTC cells (the CPU inference fast path of step()).

At batch 1 a recurrent step is a few dozen tiny operations, so per-operation overhead decides the
latency: numpy's is lower than torch's (eager or TorchScript) on this machine, see
``liquid-controller bench core``. These kernels take the *effective* weights prepared once by the torch
cells (masks applied, gates fused, sigmoid folded into tanh) and must give the same numbers as the torch
maths to float32 rounding; ``test/policy/test_cfc_ltc.py`` checks that.

Only numpy is imported here, but these kernels are the recurrent core alone (the conv head and the
readouts are torch): the torch-free runtime runs the whole step as an ONNX graph instead
(policy/onnx_export.py, runtime/onnx_backend.py).

Sigmoid is evaluated as ``0.5 + 0.5 * tanh(z / 2)`` (exact identity); the factor 1/2 is folded into the
weights by the preparing code, which lets one ``tanh`` call cover several gates.
"""
from __future__ import annotations

import numpy as np

__all__ = ['CfCNumpyWeights', 'LTCNumpyWeights', 'cfc_step', 'ltc_step']


class CfCNumpyWeights:
    """Effective CfC weights in the layout ``cfc_step`` expects (built by ``CfC.numpy_weights()``).

    Attributes:
        w_in: per layer (in_l, G*n_l) float32 input weights (G = 4 gates, or 1 in pure mode).
        w_rec: (S, sum_l G*n_l) block-diagonal recurrent weights, rows in neuron-id order.
        bias: (sum_l G*n_l,) all biases.
        cols: per layer, the first column of the layer's block in ``w_rec``/``bias``.
        sizes: per layer neuron count n_l; layers in computation order (inter, command, motor).
        starts: per layer, its first column in the hidden state (neuron ids are contiguous per layer).
        mode: 'default' | 'no_gate' | 'pure'.
        a, w_tau: pure mode only, per layer (n_l,) ``A`` and ``|w_tau|``.
        output_size: number of outputs (first neurons of the state).
    """

    def __init__(self, w_in, w_rec, bias, cols, sizes, starts, mode, output_size, a=None,
                 w_tau=None):
        self.w_in, self.w_rec, self.bias = w_in, w_rec, bias
        self.cols, self.sizes, self.starts = cols, sizes, starts
        self.mode, self.output_size, self.a, self.w_tau = mode, output_size, a, w_tau


def cfc_step(w, x, h, ts):
    """One CfC step. x (B, F), h (B, S), ts (B, 1) or scalar -> (y (B, output_size), h_new (B, S)).

    Written for few numpy calls (each costs about as much as its arithmetic at these sizes): in-place
    updates of fresh temporaries, and each layer writes straight into its columns of the new state.
    """
    r = h @ w.w_rec
    r += w.bias                                          # (B, sum G*n_l): recurrent part, all layers
    h_new = np.empty((h.shape[0], h.shape[1]), dtype=r.dtype)
    inp = x
    pure = w.mode == 'pure'
    no_gate = w.mode == 'no_gate'
    for layer, n in enumerate(w.sizes):
        c = w.cols[layer]
        s = w.starts[layer]
        out = h_new[:, s:s + n]
        z = inp @ w.w_in[layer]
        if pure:
            z += r[:, c:c + n]                            # ff1 (B, n)
            a = w.a[layer]
            np.subtract(a, a * np.exp(-ts * (w.w_tau[layer] + np.abs(z))) * z, out=out)
        else:
            z += r[:, c:c + 4 * n]                        # (B, 4n): ff1 | ff2 | t_a/2 | t_b/2
            g = z[:, 2 * n:3 * n]
            g *= ts
            g += z[:, 3 * n:]
            t = np.tanh(z[:, :3 * n], out=z[:, :3 * n])   # tanh(ff1) | tanh(ff2) | tanh(gate/2)
            ff1 = t[:, :n]
            u = t[:, 2 * n:3 * n]
            u += 1.0                                      # 2 sigmoid(t_a ts + t_b)
            d = t[:, n:2 * n]
            if not no_gate:
                d -= ff1                                  # default: ff1 + g (ff2 - ff1)
            d *= u
            d *= 0.5
            np.add(ff1, d, out=out)
        inp = out
    return h_new[:, :w.output_size], h_new


class LTCNumpyWeights:
    """Effective LTC weights for ``ltc_step`` (built by ``LTC.numpy_weights()``); all float32.

    Each synapse's activation is ``sigmoid(sigma (v - mu)) = 0.5 + 0.5 tanh(v sigma/2 - sigma mu/2)``.
    ``sig2``/``sig_mu2`` (S, 2S) hold ``sigma/2`` and ``sigma mu/2`` twice side by side and ``w2`` (S, 2S)
    = [masked weight * erev / 2 | masked weight / 2], so one tanh, one product and one sum give the
    numerator and denominator sums together; ``w2_sum`` (2S,) is the constant half. ``s_*`` are the
    same for the sensory synapses (F, 2S).
    """

    def __init__(self, **arrays):
        self.__dict__.update(arrays)


def ltc_step(w, x, h, ts):
    """One LTC step (``w.unfolds`` fused semi-implicit Euler unfolds).

    x (B, F), h (B, S), ts (B, 1) or scalar float32 -> (y (B, output_size), h_new (B, S)).
    """
    s = w.state_size
    x = x * w.input_w + w.input_b                                        # affine input mapping
    t = x[:, :, None] * w.s_sig2                                         # (B, F, 2S)
    t -= w.s_sig_mu2
    np.tanh(t, out=t)
    t *= w.s_w2
    sensory = t.sum(1) + w.s_w2_sum                                      # (B, 2S) num | den
    cm_t = w.cm * (w.unfolds / ts)                                       # (B, S)
    num_const = w.gleak_vleak + sensory[:, :s] + w.w2_sum[:s]
    den_const = cm_t + w.gleak + sensory[:, s:] + w.w2_sum[s:] + w.epsilon
    v = h
    for _ in range(w.unfolds):
        t = v[:, :, None] * w.sig2                                       # (B, S, 2S) pre x post
        t -= w.sig_mu2
        np.tanh(t, out=t)
        t *= w.w2
        r = t.sum(1)                                                     # (B, 2S) num | den
        v = (cm_t * v + num_const + r[:, :s]) / (den_const + r[:, s:])
    y = v[:, :w.output_size] * w.output_w + w.output_b                   # affine output mapping
    return y, v
