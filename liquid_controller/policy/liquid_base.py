"""Shared shell of the liquid cells (CfC, LTC): input validation, the two interfaces, the fast path.

Both cells expose one maths through two interfaces:

- ``forward(x (B, T, F), timespans (B, T) | None, state (B, S) | None) -> (y (B, T, O), state (B, S))``
- ``step(x (B, F), state (B, S), dt (B,) | float) -> (y (B, O), state (B, S))``

``step`` is the same maths as one time step of ``forward``. Under ``torch.no_grad()`` /
``torch.inference_mode()`` on CPU, ``step`` runs the numpy kernels of ``numpy_inference`` on weights
prepared once (and re-prepared automatically when a parameter changes): the returned state is a plain
tensor without autograd history. With gradients enabled it runs the torch maths and the state keeps its
history (for truncated back-propagation the caller detaches it).

Hidden state columns are neuron ids of the wiring (motor neurons first, as ncps numbers them).
Subclasses implement ``_sequence(x, ts, h) -> (y, h_last, states)`` (torch maths over a sequence) and
``_prepare_numpy()`` / ``_kernel``.
"""
from __future__ import annotations

import math
import warnings

import numpy as np
import torch
from torch import nn

from liquid_controller.errors import InputError
from liquid_controller.policy.wiring import Wiring
from liquid_controller.validation import check_int, check_number

__all__ = ['LiquidCell', 'jit_script']


def jit_script(obj):
    """``torch.jit.script`` without its deprecation warning (torch >= 2.10).

    TorchScript remains the Python-free, serialisable format the export needs and it compiles the
    cells' time loops; the warning has nothing actionable for these uses.
    """
    with warnings.catch_warnings():
        warnings.filterwarnings('ignore', message='`torch.jit.script` is deprecated',
                                category=DeprecationWarning)
        return torch.jit.script(obj)


def _shape(t):
    return tuple(t.shape)


class LiquidCell(nn.Module):
    """Base class of ``CfC`` and ``LTC`` (not used directly)."""

    def __init__(self, input_size, wiring):
        super().__init__()
        input_size = check_int('input_size', input_size, 1)
        if not isinstance(wiring, Wiring):
            raise InputError('wiring', wiring, 'must be a Wiring (NCPWiring, FullyConnectedWiring)')
        self.input_size = int(input_size)
        self.wiring = wiring.build(self.input_size)
        self.state_size = wiring.units
        self.output_size = wiring.output_size
        self._np_cache = None
        self._np_key = None
        self._cache_tensor_list = None
        self._param_dtype = torch.get_default_dtype()

    # -- state ------------------------------------------------------------------------------------
    def initial_state(self, batch_size=1):
        """Zero hidden state (batch_size, state_size) on the parameters' device, float32."""
        batch_size = check_int('batch_size', batch_size, 1)
        p = next(self.parameters())
        return torch.zeros(int(batch_size), self.state_size, dtype=p.dtype, device=p.device)

    def neuron_groups(self):
        """Labels of the hidden-state columns: ``{'inter', 'command', 'motor'}`` neuron ids."""
        return self.wiring.neuron_groups()

    # -- validation -------------------------------------------------------------------------------
    def _check_tensor(self, name, t, shape):
        """t must be a float tensor of the parameters' dtype with the given shape (None = any)."""
        if not isinstance(t, torch.Tensor):
            raise InputError(name, type(t).__name__, 'must be a torch.Tensor')
        dtype = self._dtype()
        if t.dtype != dtype:
            raise InputError(f'{name}.dtype', t.dtype, f'must be {dtype}')
        if t.dim() != len(shape) or any(s is not None and s != d for s, d in zip(shape, t.shape)):
            want = tuple('*' if s is None else s for s in shape)
            raise InputError(f'{name}.shape', _shape(t), f'must be {want}')

    def _dtype(self):
        return self._param_dtype

    @staticmethod
    def _check_finite(name, t):
        """NaN/Inf, or values so large that their sum of squares overflows (same rule as step())."""
        if not bool(torch.isfinite(t).all()):
            bad = t[~torch.isfinite(t)].flatten()[0].item()
            raise InputError(name, bad, 'contains NaN or Inf')
        if not bool(torch.isfinite((t * t).sum())):
            raise InputError(name, t.abs().max().item(),
                             'magnitude too large (sum of squares overflows)')

    def _check_state(self, state, batch):
        self._check_tensor('state', state, (batch, self.state_size))
        self._check_finite('state', state)

    def _check_positive(self, name, t):
        ok = torch.isfinite(t) & (t > 0)
        if not bool(ok.all()):
            bad = t[~ok].flatten()[0].item()
            raise InputError(name, bad, 'must be finite and > 0 (seconds)')

    # -- sequence interface -----------------------------------------------------------------------
    def forward(self, x, timespans=None, state=None, return_states=False):
        """Run a sequence.

        Args:
            x: (B, T, input_size) float32 inputs.
            timespans: (B, T) elapsed seconds before each step (per sample and step, > 0), or None
                for 1.0 everywhere (as ncps).
            state: (B, state_size) initial hidden state, or None for ``initial_state(B)``.
            return_states: also return every step's full hidden state (for readouts of all neurons).

        Returns:
            y (B, T, output_size) motor-neuron outputs, state (B, state_size) after the last step,
            and with ``return_states`` a third item, states (B, T, state_size) (differentiable).
        """
        self._check_tensor('x', x, (None, None, self.input_size))
        batch, steps = x.shape[0], x.shape[1]
        if batch < 1 or steps < 1:
            raise InputError('x.shape', _shape(x), 'needs at least one sample and one step')
        self._check_finite('x', x)
        if timespans is None:
            timespans = x.new_ones(batch, steps)
        else:
            self._check_tensor('timespans', timespans, (batch, steps))
            self._check_positive('timespans', timespans)
        if state is None:
            state = self.initial_state(batch)
        else:
            self._check_state(state, batch)
        y, h, states = self._sequence(x, timespans, state)
        return (y, h, states) if return_states else (y, h)

    # -- streaming interface ----------------------------------------------------------------------
    def _dt_column(self, dt, batch, like):
        """dt (float or (B,) tensor) validated -> (B, 1) tensor."""
        if dt is None:
            raise InputError('dt', dt, 'is required: elapsed seconds since the previous step')
        if isinstance(dt, torch.Tensor):
            if dt.dim() == 0:
                dt = dt.reshape(1).expand(batch)
            self._check_tensor('dt', dt, (batch,))
            self._check_positive('dt', dt)
            return dt.reshape(batch, 1)
        return like.new_full((batch, 1), check_number('dt', dt, 0.0, low_open=True))  # seconds

    def step(self, x, state, dt):
        """Advance one step: x (B, input_size), state (B, state_size), dt (B,) or float seconds > 0.

        Returns (y (B, output_size), new_state (B, state_size)). Pure function of its arguments: the
        cell keeps no hidden state. Under ``torch.no_grad()`` on CPU the numpy fast path runs and the
        returned state has no autograd history. Inputs are checked every call (shape, dtype, NaN/Inf,
        dt > 0); the finiteness check is a sum of squares, so values so large that it overflows
        (about 1e18 and up in float32) are rejected as well.
        """
        dtype = self._param_dtype
        # Fast path (cheap checks: it runs every control step): inference with well-formed
        # tensors. Anything else takes the fully validated torch path.
        if (not torch.is_grad_enabled() and type(x) is torch.Tensor and type(state) is torch.Tensor
                and x.dtype is dtype and state.dtype is dtype):
            xs = x.shape
            if len(xs) == 2 and xs[1] == self.input_size \
                    and state.shape == (xs[0], self.state_size):
                try:
                    xn = x.numpy()
                    hn = state.numpy()
                except (RuntimeError, TypeError):  # on an accelerator or requiring grad
                    return self._step_torch(x, state, dt)
                # one dot product per array: finite iff every element is finite and not huge
                if not math.isfinite(np.vdot(xn, xn) + np.vdot(hn, hn)):
                    self._raise_not_finite(xn, hn)
                if type(dt) is float:
                    if not 0.0 < dt < math.inf:
                        raise InputError('dt', dt, 'must be finite and > 0 (seconds)')
                    ts = dt
                else:
                    ts = self._dt_column(dt, xs[0], x).numpy()
                y, h = self._kernel(self.numpy_weights(), xn, hn, ts)
                return torch.from_numpy(y), torch.from_numpy(h)
        return self._step_torch(x, state, dt)

    @staticmethod
    def _raise_not_finite(xn, hn):
        for name, arr in (('x', xn), ('state', hn)):
            bad = ~np.isfinite(arr)
            if bad.any():
                raise InputError(name, arr[bad][0].item(), 'contains NaN or Inf')
        for name, arr in (('x', xn), ('state', hn)):
            if not math.isfinite(np.vdot(arr, arr)):
                raise InputError(name, float(np.abs(arr).max()),
                                 'magnitude too large (sum of squares overflows)')
        # only the sum of both overflowed: blame the larger
        name, arr = ('x', xn) if np.vdot(xn, xn) >= np.vdot(hn, hn) else ('state', hn)
        raise InputError(name, float(np.abs(arr).max()),
                         'magnitude too large (sum of squares overflows)')

    def _step_torch(self, x, state, dt):
        self._check_tensor('x', x, (None, self.input_size))
        batch = x.shape[0]
        self._check_tensor('state', state, (batch, self.state_size))
        self._check_finite('x', x)
        self._check_finite('state', state)
        ts = self._dt_column(dt, batch, x)
        y, h, _ = self._sequence(x.unsqueeze(1), ts, state)
        return y[:, 0], h

    # -- numpy weights cache ----------------------------------------------------------------------
    def numpy_weights(self):
        """Effective weights for the numpy kernels, rebuilt when a parameter or buffer changed.

        Change detection uses the tensors' version counters (bumped by optimiser steps,
        ``load_state_dict``, any in-place op on the tensor) plus ``.to()``/attribute assignment. An
        in-place edit through ``param.data`` bypasses the version counter: call
        ``invalidate_inference_cache()`` after such an edit.
        """
        tensors = self._cache_tensor_list
        if tensors is None:
            tensors = self._cache_tensor_list = list(self.parameters()) + list(self.buffers())
            self._np_key = None
        key = [t._version for t in tensors]
        if key != self._np_key:
            with torch.no_grad():
                self._np_cache = self._prepare_numpy()
            self._np_key = key
        return self._np_cache

    def invalidate_inference_cache(self):
        """Forget the prepared numpy weights (needed only after edits through ``param.data``)."""
        self.__dict__['_cache_tensor_list'] = None
        self.__dict__['_np_key'] = None

    def __setattr__(self, name, value):
        if isinstance(value, torch.Tensor) and '_np_key' in self.__dict__:
            self.invalidate_inference_cache()
        super().__setattr__(name, value)

    def _apply(self, fn, *args, **kwargs):
        # .to()/.double() may replace tensors and change the dtype: forget cached views of them
        out = super()._apply(fn, *args, **kwargs)
        self.invalidate_inference_cache()
        self._param_dtype = next(self.parameters()).dtype
        return out

    # -- subclass hooks ---------------------------------------------------------------------------
    def _sequence(self, x, ts, h):
        raise NotImplementedError

    def _prepare_numpy(self):
        raise NotImplementedError

    @staticmethod
    def _kernel(weights, x, h, ts):
        """numpy step ``(weights, x, h, ts) -> (y, h)`` (set by subclasses)."""
        raise NotImplementedError
