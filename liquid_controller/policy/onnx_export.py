"""ONNX graph of the whole streaming policy step, built from the policy's effective weights.

    model = build_step_graph(policy)                     # DrivingPolicy -> onnx.ModelProto
    worst = compare_step_with_torch(policy, session, images, imu, dt)

One graph per model, for every core (cfc in each mode, ltc, lstm, cnn):

    inputs   image (B, 3, H, W) float32 in [0, 1]     the preprocessed camera frame
             imu   (B, imu_size) float32               the normalised IMU features (runtime/preprocess)
             state (B, S) float32                      hidden state (S = 0 for the cnn)
             dt    (B,) float32                        seconds since the previous frame, > 0
    outputs  command (B, 2), aux (B, A), barrier_params (B, K), state_out (B, S),
             features (B, F)                           the perception features (F = feature_size,
                                                       the cnn's 10-value latent), for the OOD monitor

It is exactly ``DrivingPolicy.step`` (``step_with_features`` for the features output): image
normalisation, conv head, IMU scaling and clipping, the core with its elapsed-time dynamics, readouts
and output squashing. The NCP masks are folded into the
weights (masked entries are stored as zeros), softplus-constrained LTC parameters are stored as their
positive values, and a CfC's per-layer gate matrices are the fused matrices the cell itself uses.

Why the graph is written with ``onnx.helper`` rather than ``torch.onnx.export``: torch 2.13's default
exporter is the dynamo one, which needs onnxscript (not a dependency here); the legacy TorchScript
exporter is deprecated and cannot see through the cells' custom autograd Functions and TorchScript
time loops (they would export as opaque PythonOps or Loop nodes). The step is a few dozen standard
operators (Conv, Gemm, MatMul, Tanh, Sigmoid, ...), so writing them directly from the weights is short,
keeps the graph free of training-only machinery, and pins the opset (17, supported by every
onnxruntime since 1.11, including the ARM64 wheels of older distributions).
"""
from __future__ import annotations

import numpy as np
import onnx
import torch
from onnx import TensorProto, helper, numpy_helper

from liquid_controller.errors import InputError
from liquid_controller.policy.driving_policy import COMMAND_SIZE, MAX_NETWORK_TIME, DrivingPolicy
# the per-image normalisation's std floor: the graph must use the very constant the head uses
from liquid_controller.policy.perception import _STD_FLOOR

__all__ = ['OPSET', 'INPUT_NAMES', 'OUTPUT_NAMES', 'build_step_graph', 'step_contract',
           'compare_step_with_torch']

OPSET = 17
INPUT_NAMES = ('image', 'imu', 'state', 'dt')
OUTPUT_NAMES = ('command', 'aux', 'barrier_params', 'state_out', 'features')


class _GraphBuilder:
    """Collects nodes and initialisers; every helper returns the name of its output."""

    def __init__(self):
        self.nodes, self.initializers, self._count = [], [], 0

    def name(self, hint):
        self._count += 1
        return f'{hint}_{self._count}'

    def const(self, hint, array, dtype=np.float32):
        name = self.name(hint)
        self.initializers.append(numpy_helper.from_array(np.ascontiguousarray(array, dtype=dtype),
                                                         name))
        return name

    def ints(self, hint, values):
        return self.const(hint, np.asarray(values, dtype=np.int64), np.int64)

    def op(self, op_type, inputs, hint=None, outputs=1, **attrs):
        names = [self.name(hint or op_type.lower()) for _ in range(outputs)]
        self.nodes.append(helper.make_node(op_type, list(inputs), names, **attrs))
        return names[0] if outputs == 1 else names

    def columns(self, x, start, end, hint='cols'):
        """x[:, start:end] of a 2-D tensor."""
        return self.op('Slice', [x, self.ints('start', [start]), self.ints('end', [end]),
                                 self.ints('axis', [1])], hint)

    def linear(self, x, weight, bias, hint='linear'):
        """x (N, in) @ weight.T (out, in) + bias (out,) -> (N, out) (one Gemm, as nn.Linear)."""
        return self.op('Gemm', [x, self.const(f'{hint}_w', weight), self.const(f'{hint}_b', bias)],
                       hint, transB=1)


def _np(t):
    return t.detach().to('cpu', torch.float32).numpy().copy()


# -------------------------------------------------------------------------------------------------
# Pieces of the step
# -------------------------------------------------------------------------------------------------
def _normalize(g, image, mode, channels):
    """policy/perception.py normalize_images: (N, C, H, W) -> (N, C, H, W)."""
    if mode == 'fixed':
        return g.op('Mul', [g.op('Sub', [image, g.const('half', [0.5])]), g.const('four', [4.0])])
    flat = g.op('Reshape', [image, g.ints('shape', [0, channels, -1])], 'flat')      # (N, C, H*W)
    # The channel statistics in float64: ONNX Runtime's float32 ReduceMean sums 8192 values less
    # accurately than torch's (measured: normalised pixels off by 1e-4 against float64, torch's by
    # 8e-6), and that error was most of the graph's difference to torch. Rounded to float32 once.
    flat64 = g.op('Cast', [flat], 'flat64', to=TensorProto.DOUBLE)
    mean64 = g.op('ReduceMean', [flat64], 'mean64', axes=[2], keepdims=1)            # (N, C, 1)
    mean_sq = g.op('ReduceMean', [g.op('Mul', [flat64, flat64])], 'mean_sq', axes=[2], keepdims=1)
    var = g.op('Max', [g.op('Sub', [mean_sq, g.op('Mul', [mean64, mean64])]),
                       g.const('zero', [0.0], np.float64)])
    scale = g.op('Reciprocal', [g.op('Sqrt', [g.op('Add', [var, g.const('floor2', [_STD_FLOOR ** 2],
                                                                         np.float64)])])])
    mean = g.op('Cast', [mean64], 'mean', to=TensorProto.FLOAT)
    scale = g.op('Cast', [scale], 'scale', to=TensorProto.FLOAT)                     # (N, C, 1)
    centred = g.op('Mul', [g.op('Sub', [flat, mean]), scale])                        # (N, C, H*W)
    return g.op('Reshape', [centred, g.op('Shape', [image])], 'normalized')          # (N, C, H, W)


def _conv_stack(g, x, sequential):
    """nn.Sequential of Conv2d + activation modules -> the same ONNX ops."""
    for module in sequential:
        if isinstance(module, torch.nn.Conv2d):
            kh, kw = module.kernel_size
            ph, pw = module.padding
            x = g.op('Conv', [x, g.const('conv_w', _np(module.weight)),
                              g.const('conv_b', _np(module.bias))], 'conv',
                     kernel_shape=[kh, kw], strides=list(module.stride), pads=[ph, pw, ph, pw])
        elif isinstance(module, torch.nn.ReLU):
            x = g.op('Relu', [x])
        elif isinstance(module, torch.nn.ELU):
            x = g.op('Elu', [x], alpha=float(module.alpha))
        else:
            raise InputError('policy', type(module).__name__, 'unsupported layer in a conv stack')
    return x


def _conv_head(g, image, head):
    """ConvHead: image (N, C, H, W) -> tanh features (N, feature_size)."""
    x = _normalize(g, image, head.normalization, head.in_channels)
    x = _conv_stack(g, x, head.convs)                                        # (N, sq, h, w)
    x = g.op('Flatten', [x], 'flat_map', axis=1)                                     # (N, sq*h*w)
    return g.op('Tanh', [g.linear(x, _np(head.linear.weight), _np(head.linear.bias), 'head')])


def _cfc_core(g, x, state, ts, cell):
    """CfC step (cfc._cfc_sequence for one step): x (N, F), state (N, S), ts (N, 1) network time ->
    (motor (N, O), new state (N, S))."""
    with torch.no_grad():
        w_in, w_rec, bias, a, w_tau = cell._effective()
    w_in = [_np(w) for w in w_in]                 # per layer (in_l, G n_l), masks applied
    w_rec, bias = _np(w_rec), _np(bias)           # (S, sum G n_l) block diagonal, (sum G n_l,)
    pure = cell.mode == 'pure'
    gates = 1 if pure else 4
    outs, inp = [], x
    for layer, n in enumerate(cell._sizes):
        c = cell._cols[layer]
        width = gates * n
        # the layer's own block of the recurrent matrix: only its neurons' rows are non-zero
        z = g.op('Add', [g.op('MatMul', [inp, g.const('w_in', w_in[layer])]),
                         g.op('MatMul', [state, g.const('w_rec', w_rec[:, c:c + width])])])
        z = g.op('Add', [z, g.const('bias', bias[c:c + width])])                     # (N, G n)
        if pure:
            a_l, tau_l = _np(a[layer]).reshape(1, n), _np(w_tau[layer]).reshape(1, n)
            decay = g.op('Exp', [g.op('Neg', [g.op('Mul', [ts, g.op('Add', [
                g.const('w_tau', tau_l), g.op('Abs', [z])])])])])
            inp = g.op('Sub', [g.const('a', a_l), g.op('Mul', [g.op('Mul', [g.const('a', a_l), decay]),
                                                              z])], 'cfc_out')
        else:
            ff1, ff2, t_a, t_b = g.op('Split', [z, g.ints('split', [n] * 4)], 'gate', outputs=4,
                                      axis=1)
            ff1, ff2 = g.op('Tanh', [ff1]), g.op('Tanh', [ff2])
            gate = g.op('Sigmoid', [g.op('Add', [t_b, g.op('Mul', [t_a, ts])])])
            if cell.mode == 'no_gate':
                inp = g.op('Add', [ff1, g.op('Mul', [gate, ff2])], 'cfc_out')
            else:   # ff1 (1 - g) + g ff2
                one_minus = g.op('Sub', [g.const('one', [1.0]), gate])
                inp = g.op('Add', [g.op('Mul', [ff1, one_minus]), g.op('Mul', [gate, ff2])],
                           'cfc_out')
        outs.append(inp)
    new_state = g.op('Concat', [outs[i] for i in cell._state_order], 'cfc_state', axis=1)
    return g.columns(new_state, 0, cell.output_size, 'motor'), new_state


def _ltc_core(g, x, state, ts, cell):
    """LTC step (ltc._ltc_sequence for one step, ``ode_unfolds`` unrolled): -> (y (N, O), state)."""
    with torch.no_grad():
        c = cell._constants()
        sw, w_eff = _np(c['sw']), _np(c['w_eff'])                    # (F, S), (S, S) masked
        sensory_erev, erev = _np(cell.sensory_erev), _np(cell.erev)
        sigma, mu = _np(cell.sigma), _np(cell.mu)
        cm, gleak, vleak = _np(c['cm']), _np(c['gleak']), _np(cell.vleak)
    xm = g.op('Add', [g.op('Mul', [x, g.const('input_w', _np(cell.input_w))]),
                      g.const('input_b', _np(cell.input_b))])                         # (N, F)
    xm3 = g.op('Unsqueeze', [xm, g.ints('axis', [2])])                                # (N, F, 1)
    s_act = g.op('Sigmoid', [g.op('Mul', [g.const('sensory_sigma', _np(cell.sensory_sigma)),
                                          g.op('Sub', [xm3, g.const('sensory_mu',
                                                                    _np(cell.sensory_mu))])])])
    axis1 = g.ints('axis', [1])
    num_s = g.op('ReduceSum', [g.op('Mul', [s_act, g.const('swe', sw * sensory_erev)]), axis1],
                 keepdims=0)                                                          # (N, S)
    den_s = g.op('ReduceSum', [g.op('Mul', [s_act, g.const('sw', sw)]), axis1], keepdims=0)
    cm_t = g.op('Div', [g.const('cm', cm), g.op('Div', [ts, g.const('unfolds',
                                                                     [float(cell.ode_unfolds)])])])
    num_const = g.op('Add', [g.const('gleak_vleak', gleak * vleak), num_s])
    den_const = g.op('Add', [g.op('Add', [g.op('Add', [cm_t, g.const('gleak', gleak)]), den_s]),
                             g.const('epsilon', [cell.epsilon])])
    sig, sig_mu = g.const('sigma', sigma), g.const('sigma_mu', sigma * mu)
    we, w = g.const('we_eff', w_eff * erev), g.const('w_eff', w_eff)
    v = state
    for _ in range(cell.ode_unfolds):
        act = g.op('Sigmoid', [g.op('Sub', [g.op('Mul', [g.op('Unsqueeze', [v, g.ints('axis', [2])]),
                                                          sig]), sig_mu])])           # (N, S, S)
        num = g.op('Add', [g.op('Add', [g.op('Mul', [cm_t, v]), num_const]),
                           g.op('ReduceSum', [g.op('Mul', [act, we]), axis1], keepdims=0)])
        den = g.op('Add', [den_const, g.op('ReduceSum', [g.op('Mul', [act, w]), axis1],
                                           keepdims=0)])
        v = g.op('Div', [num, den], 'ltc_v')                                          # (N, S)
    y = g.op('Add', [g.op('Mul', [g.columns(v, 0, cell.output_size),
                                  g.const('output_w', _np(cell.output_w))]),
                     g.const('output_b', _np(cell.output_b))])
    return y, v


def _lstm_core(g, x, state, ts, core):
    """LSTMCore.step: x (N, F), state (N, 2H) = [h | c], ts (N, 1) -> (h (N, H), state (N, 2H)).
    torch's gate order: input, forget, cell (g), output."""
    lstm, hidden = core.lstm, core.hidden_size
    dt = g.op('Min', [ts, g.const('dt_clip', [core.dt_clip])])                      # (N, 1)
    inputs = g.op('Concat', [x, dt], axis=1)                                          # (N, F + 1)
    h = g.columns(state, 0, hidden, 'h')
    c = g.columns(state, hidden, 2 * hidden, 'c')
    gates = g.op('Add', [g.linear(inputs, _np(lstm.weight_ih_l0), _np(lstm.bias_ih_l0), 'ih'),
                         g.linear(h, _np(lstm.weight_hh_l0), _np(lstm.bias_hh_l0), 'hh')])
    i, f, gg, o = g.op('Split', [gates, g.ints('split', [hidden] * 4)], 'lstm_gate', outputs=4,
                       axis=1)
    c_new = g.op('Add', [g.op('Mul', [g.op('Sigmoid', [f]), c]),
                         g.op('Mul', [g.op('Sigmoid', [i]), g.op('Tanh', [gg])])])
    h_new = g.op('Mul', [g.op('Sigmoid', [o]), g.op('Tanh', [c_new])], 'lstm_h')
    return h_new, g.op('Concat', [h_new, c_new], 'lstm_state', axis=1)


def _pilotnet(g, image, imu, net):
    """PilotNetHead (the cnn baseline): image, extra (N, E) -> latent (N, 10)."""
    x = _normalize(g, image, net.normalization, net.convs[0].in_channels)
    x = _conv_stack(g, x, net.convs)
    x = g.op('Concat', [g.op('Flatten', [x], axis=1), imu], axis=1)
    for module in net.fc:
        if isinstance(module, torch.nn.Linear):
            x = g.linear(x, _np(module.weight), _np(module.bias), 'fc')
        else:
            x = g.op('Elu', [x], alpha=float(module.alpha))
    return x


def _outputs(g, policy, command_pre, latent):
    """DrivingPolicy._outputs: squash the command, barrier parameters by sigmoid, aux raw."""
    c = policy.config
    low = np.array([c.v_min, -c.w_max], np.float32)
    high = np.array([c.v_max, c.w_max], np.float32)
    squashed = g.op('Tanh', [command_pre])
    command = g.op('Add', [g.const('low', low), g.op('Mul', [g.op('Mul', [
        g.const('span', high - low), g.op('Add', [squashed, g.const('one', [1.0])])]),
        g.const('half', [0.5])])])
    command = g.op('Max', [g.op('Min', [command, g.const('high', high)]), g.const('low', low)],
                   'command_out')
    k, a = c.num_barrier_params, c.aux_outputs
    if policy.readout is not None:
        extra = g.linear(latent, _np(policy.readout.weight), _np(policy.readout.bias), 'readout')
    else:
        extra = g.columns(latent, 0, 0, 'no_readout')                                 # (N, 0)
    raw_barrier = g.columns(extra, 0, k, 'raw_barrier')
    aux = g.columns(extra, k, k + a, 'aux_out')
    lo, hi = c.barrier_param_range
    barrier = g.op('Add', [g.const('lo', [lo]), g.op('Mul', [g.const('range', [hi - lo]),
                                                            g.op('Sigmoid', [raw_barrier])])])
    barrier = g.op('Clip', [barrier, g.const('lo', lo), g.const('hi', hi)], 'barrier_out')
    return command, aux, barrier


# -------------------------------------------------------------------------------------------------
# The graph
# -------------------------------------------------------------------------------------------------
def step_contract(policy):
    """The graph's inputs and outputs: name -> (shape with 'batch' for the free batch size,
    description), in graph order. Written into the export card."""
    c = policy.config
    s = policy.state_size
    return {
        'inputs': {
            'image': (['batch', c.image_channels, c.image_height, c.image_width],
                      'float32 RGB in [0, 1]: uint8 / 255 (runtime/preprocess.py image_to_array)'),
            'imu': (['batch', c.imu_size], 'float32 IMU features, (mean - imu_mean) / imu_std '
                                           '(runtime/preprocess.py imu_features)'),
            'state': (['batch', s], 'float32 hidden state; zeros = reset'),
            'dt': (['batch'], 'float32 seconds since the previous frame, > 0'),
        },
        'outputs': {
            'command': (['batch', COMMAND_SIZE], 'nominal (v m/s, w rad/s), within the card limits'),
            'aux': (['batch', c.aux_outputs], 'predicted lane offset m, heading error rad'),
            'barrier_params': (['batch', c.num_barrier_params],
                               'class-K parameters within barrier_param_range'),
            'state_out': (['batch', s], 'float32 hidden state after this step'),
            'features': (['batch', c.perception_size],
                         'float32 perception features: the conv head output (the cnn: its latent), '
                         'what the OOD monitor\'s source "features" models'),
        },
    }


def build_step_graph(policy):
    """The ONNX model (opset ``OPSET``) of ``policy.step`` for one frame; see the module docstring.

    Raises InputError when ``policy`` is not a DrivingPolicy. The weights are a snapshot taken now.
    """
    if not isinstance(policy, DrivingPolicy):
        raise InputError('policy', type(policy).__name__, 'must be a DrivingPolicy')
    c = policy.config
    g = _GraphBuilder()
    ts = g.op('Unsqueeze', ['dt', g.ints('axis', [1])], 'dt_col')                    # (N, 1) s
    ts = g.op('Min', [g.op('Mul', [ts, g.const('time_scale', [c.time_scale])]),
                      g.const('max_time', [MAX_NETWORK_TIME])], 'network_time')       # (N, 1)
    imu = g.op('Clip', [g.op('Mul', ['imu', g.const('imu_scale', np.asarray(c.imu_scale))]),
                        g.const('clip_lo', -c.imu_clip), g.const('clip_hi', c.imu_clip)],
               'imu_features')                                                        # (N, imu)
    if c.core == 'cnn':
        latent = _pilotnet(g, 'image', imu, policy.core.net)                          # (N, 10)
        features = latent                                     # the cnn's perception output
        new_state = g.op('Identity', ['state'], 'cnn_state')                          # (N, 0)
        command_pre = g.linear(latent, _np(policy.command_head.weight),
                               _np(policy.command_head.bias), 'command_head')
    else:
        features = _conv_head(g, 'image', policy.head)                              # (N, F)
        x = g.op('Concat', [features, imu], 'core_in', axis=1)
        if c.core == 'lstm':
            latent, new_state = _lstm_core(g, x, 'state', ts, policy.core)
            command_pre = g.linear(latent, _np(policy.command_head.weight),
                                   _np(policy.command_head.bias), 'command_head')
        else:
            core = _cfc_core if c.core == 'cfc' else _ltc_core
            motor, new_state = core(g, x, 'state', ts, policy.core)
            latent = new_state
            command_pre = g.op('Add', [g.op('Mul', [motor, g.const('motor_gain',
                                                                   _np(policy.motor_gain))]),
                                       g.const('motor_bias', _np(policy.motor_bias))])
    command, aux, barrier = _outputs(g, policy, command_pre, latent)
    for src, dst in zip((command, aux, barrier, new_state, features), OUTPUT_NAMES):
        g.nodes.append(helper.make_node('Identity', [src], [dst]))
    contract = step_contract(policy)

    def value_info(name, shape):
        return helper.make_tensor_value_info(name, TensorProto.FLOAT, shape)

    graph = helper.make_graph(
        g.nodes, f'liquid_controller_{c.core}_step',
        [value_info(n, contract['inputs'][n][0]) for n in INPUT_NAMES],
        [value_info(n, contract['outputs'][n][0]) for n in OUTPUT_NAMES],
        initializer=g.initializers)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid('', OPSET)],
                              producer_name='liquid_controller', producer_version='1')
    model.ir_version = 8          # opset 17's IR version: readable by onnxruntime >= 1.11
    onnx.checker.check_model(model, full_check=True)
    return model


def compare_step_with_torch(policy, run_step, images, imu, dt):
    """Run ``policy.step_with_features`` (torch, no_grad) and ``run_step`` side by side over a
    sequence, each carrying its own state. ``run_step(image, imu, state, dt) -> (command, aux,
    barrier, state, features)`` (the graph's outputs, OUTPUT_NAMES order) takes and returns numpy
    arrays (an ONNX Runtime session wrapped by the caller).

    images (T, B, 3, H, W), imu (T, B, imu_size), dt (T, B) float32. Returns the largest absolute
    difference over every output (the features included) and the state at every step (float).
    InputError when ``run_step`` returns another number of outputs or a shape torch does not give.
    """
    steps, batch = images.shape[0], images.shape[1]
    state_t = policy.initial_state(batch)
    state_o = state_t.numpy().copy()
    worst = 0.0
    with torch.no_grad():
        for t in range(steps):
            out, state_t, features_t = policy.step_with_features(
                torch.from_numpy(images[t]), torch.from_numpy(imu[t]), torch.from_numpy(dt[t]),
                state_t)
            got_all = run_step(images[t], imu[t], state_o, dt[t])
            if len(got_all) != len(OUTPUT_NAMES):   # a graph without the features output
                raise InputError('onnx outputs', len(got_all), f'expected {len(OUTPUT_NAMES)} '
                                                               f'({", ".join(OUTPUT_NAMES)})')
            command, aux, barrier, state_o, features = got_all
            for ref, got in ((out.command, command), (out.aux, aux),
                             (out.barrier_params, barrier), (state_t, state_o),
                             (features_t, features)):
                if tuple(ref.shape) != tuple(got.shape):
                    raise InputError('onnx output shape', tuple(got.shape),
                                     f'torch gives {tuple(ref.shape)}')
                if ref.numel():
                    worst = max(worst, float(np.abs(ref.numpy() - got).max()))
    return worst
