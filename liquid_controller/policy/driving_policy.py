"""The full driving policy: camera frame + IMU features -> reference command, barrier parameters, aux.

    image (B,3,H,W) in [0,1] --ConvHead--> 32 features --+
    imu (B,6) --scale, clip---------------------------> 6 --+--> core --> motor / latent --> readouts

Cores (``PolicyConfig.core``), all behind one interface:

- 'cfc' (flagship) / 'ltc': the conv head's features and the IMU features are the sensory inputs of a
  19-neuron NCP (inter -> command -> motor). The two motor neurons give the command (v, w) through a
  per-neuron affine map and tanh scaling into [v_min, v_max] x [-w_max, w_max]; the barrier (class-K)
  parameters and the auxiliary predictions come from a small linear readout of all 19 neuron states.
- 'lstm': the same conv head + one LSTM layer (elapsed time appended to its input); linear readouts.
- 'cnn': feed-forward PilotNet-like network, no memory (state of size 0), linear readouts.

State and resets: the policy keeps NO hidden state of its own. ``initial_state(B)`` is the reset state
(zeros); every call takes the state and returns the new one. Passing ``state=None`` means "start from
the reset state". ``reset_where(state, done)`` resets chosen batch rows (episode boundaries in training,
a time jump in the runtime Controller). With autograd enabled the returned state carries its history
(training: detach it between truncated back-propagation windows); under ``torch.no_grad()`` /
``torch.inference_mode()`` the liquid cells take their fast numpy path and the state has none.

Every output is inside its range by construction, for any valid input: command by tanh scaling (then
clamped, so float rounding cannot step over a limit), barrier parameters by a sigmoid into
``barrier_param_range`` (the safety filter never receives an out-of-range parameter).
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import torch
from torch import nn

from liquid_controller.errors import InputError
from liquid_controller.policy.baselines import LSTM_DT_CLIP_S, FeedForwardCNN, LSTMCore
from liquid_controller.policy.perception import ConvHead
# The configuration lives in a torch-free module (the edge runtime validates cards with it); its
# names are re-exported here, where the rest of the package has always found them.
from liquid_controller.policy.policy_config import (  # noqa: F401 - re-exported
    CFC_MODES, COMMAND_SIZE, CORES, FLOAT_RANGES, IMAGE_NORMALIZATIONS, INT_RANGES, LIQUID_CORES,
    MAX_BARRIER_PARAM, MAX_CONV_CHANNELS, MAX_CONV_LAYERS, MAX_IMU_SCALE,
    MAX_NETWORK_TIME, MAX_SPEED, MAX_TURN_RATE, MAX_UNITS, MIN_LIQUID_UNITS, PolicyConfig)

__all__ = ['CORES', 'CFC_MODES', 'PolicyConfig', 'PolicyOutput', 'DrivingPolicy']

# -------------------------------------------------------------------------------------------------
# Outputs
# -------------------------------------------------------------------------------------------------
@dataclass
class PolicyOutput:
    """What the policy returns for one step (leading dims (B,)) or a sequence ((B, T)).

    command: (..., 2) reference (v m/s, w rad/s) within [v_min, v_max] x [-w_max, w_max].
    barrier_params: (..., K) class-K parameters within ``barrier_param_range``.
    aux: (..., A) predicted (lane_offset m, heading_error rad) when A = 2.
    """

    command: torch.Tensor
    barrier_params: torch.Tensor
    aux: torch.Tensor

    def detach(self) -> 'PolicyOutput':
        """The same outputs cut from the autograd graph."""
        return PolicyOutput(self.command.detach(), self.barrier_params.detach(), self.aux.detach())


# -------------------------------------------------------------------------------------------------
# Input validation
# -------------------------------------------------------------------------------------------------
def _as_float_tensor(name, value, shape, device, dtype, check_finite=True):
    """Check a float tensor/array against ``shape`` (None = any size) and finiteness; convert."""
    if isinstance(value, np.ndarray):
        if not np.issubdtype(value.dtype, np.floating):
            raise InputError(name, f'dtype {value.dtype}', 'must be floating point')
        value = torch.from_numpy(value)
    if not isinstance(value, torch.Tensor):
        raise InputError(name, type(value).__name__, 'must be a torch.Tensor or numpy array')
    if not value.is_floating_point():
        raise InputError(name, f'dtype {value.dtype}', 'must be floating point')
    if value.dim() != len(shape) or any(s is not None and s != v for s, v in zip(shape, value.shape)):
        want = tuple('*' if s is None else s for s in shape)
        raise InputError(name, tuple(value.shape), f'shape must be {want}')
    if check_finite:
        finite = torch.isfinite(value)
        if not bool(finite.all()):
            raise InputError(name, value[~finite].flatten()[0].item(),
                             'must be finite (no NaN or Inf)')
    return value.to(device=device, dtype=dtype)


def _check_images(name, images, shape, device, dtype):
    """Images: float, given shape, every value in [0, 1] (checked with one min/max pass: NaN and Inf
    propagate into it, so the slower finiteness scan runs only to name a bad value)."""
    if shape[0] < 1:
        raise InputError(name, tuple(images.shape), 'batch size must be >= 1')
    images = _as_float_tensor(name, images, shape, device, dtype, check_finite=False)
    lo, hi = (t.item() for t in torch.aminmax(images))
    if not (0.0 <= lo and hi <= 1.0):
        finite = torch.isfinite(images)
        if not bool(finite.all()):
            raise InputError(name, images[~finite].flatten()[0].item(),
                             'must be finite (no NaN or Inf)')
        raise InputError(name, (lo, hi), 'values must be in [0, 1] (scale uint8 frames by 1/255)')
    return images


def _check_positive(name, value, shape, device, dtype):
    value = _as_float_tensor(name, value, shape, device, dtype)
    if value.numel() and not bool((value > 0).all()):
        raise InputError(name, value.min().item(), 'elapsed times must be > 0 seconds')
    return value


# -------------------------------------------------------------------------------------------------
# The policy
# -------------------------------------------------------------------------------------------------
class DrivingPolicy(nn.Module):
    """Camera + IMU -> (command, barrier parameters, aux) with an explicit recurrent state.

    Build with a ``PolicyConfig``; the same config and seed give the same weights (built under a
    private RNG, so the global torch RNG is left untouched).
    """

    def __init__(self, config: PolicyConfig):
        super().__init__()
        if not isinstance(config, PolicyConfig):
            raise InputError('config', type(config).__name__, 'must be a PolicyConfig')
        self.config = config
        c = config
        self.wiring = None
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(c.seed)
            sensory = c.feature_size + c.imu_size
            if c.core == 'cnn':
                self.core = FeedForwardCNN(c.image_channels, c.image_height, c.image_width,
                                           c.imu_size, c.image_normalization)
            else:
                self.head = ConvHead(c.image_channels, c.image_height, c.image_width, c.feature_size,
                                     c.conv_channels, c.conv_squeeze_channels, c.image_normalization)
                if c.core == 'lstm':
                    self.core = LSTMCore(sensory, c.lstm_hidden, dt_clip=LSTM_DT_CLIP_S * c.time_scale)
                else:
                    self.core = self._build_liquid_core(c, sensory)
            if c.liquid:
                # per motor neuron: gain and offset before tanh (motor states are themselves bounded,
                # so without a gain the command could never reach its limits)
                self.motor_gain = nn.Parameter(torch.ones(COMMAND_SIZE))
                self.motor_bias = nn.Parameter(torch.zeros(COMMAND_SIZE))
                latent = c.units
            else:
                latent = self.core.latent_size
                self.command_head = nn.Linear(latent, COMMAND_SIZE)
            extra = c.num_barrier_params + c.aux_outputs
            self.readout = nn.Linear(latent, extra) if extra else None
        self.register_buffer('imu_scale', torch.tensor(c.imu_scale, dtype=torch.float32),
                             persistent=False)
        self.register_buffer('command_low', torch.tensor([c.v_min, -c.w_max]), persistent=False)
        self.register_buffer('command_high', torch.tensor([c.v_max, c.w_max]), persistent=False)

    def _build_liquid_core(self, c, sensory):
        # imported here: the liquid cells live in their own modules (policy/cfc.py, policy/ltc.py)
        from liquid_controller.policy.wiring import auto_ncp
        self.wiring = auto_ncp(c.units, COMMAND_SIZE, sparsity_level=c.sparsity, seed=c.seed)
        if c.core == 'cfc':
            from liquid_controller.policy.cfc import CfC
            return CfC(sensory, self.wiring, mode=c.cfc_mode)
        from liquid_controller.policy.ltc import LTC
        return LTC(sensory, self.wiring, ode_unfolds=c.ltc_unfolds)

    # -- description ----------------------------------------------------------------------------
    @property
    def state_size(self) -> int:
        """Length of the recurrent state vector (0 for the feed-forward CNN)."""
        c = self.config
        return {'cfc': c.units, 'ltc': c.units, 'lstm': 2 * c.lstm_hidden, 'cnn': 0}[c.core]

    @property
    def liquid_neurons(self) -> int:
        """Number of liquid neurons (0 for lstm and cnn)."""
        return self.config.units if self.config.liquid else 0

    def num_parameters(self) -> int:
        """Trainable parameters (wiring masks are buffers and not counted)."""
        return sum(p.numel() for p in self.parameters() if p.requires_grad)

    def neuron_groups(self) -> dict:
        """Labelled index lists into the state: inter/command/motor (liquid), hidden/cell (lstm),
        {} (cnn)."""
        if self.config.liquid:
            return {k: list(v) for k, v in self.wiring.neuron_groups().items()}
        return self.core.neuron_groups()

    def summary(self) -> dict:
        """JSON-ready description for model cards and comparison tables: core, sizes, parameter
        count, state layout and (liquid cores) the exact wiring."""
        return {
            'core': self.config.core,
            'liquid_neurons': self.liquid_neurons,
            'num_parameters': self.num_parameters(),
            'state_size': self.state_size,
            'neuron_groups': self.neuron_groups(),
            'wiring': self.wiring.to_dict() if self.wiring is not None else None,
        }

    def _param(self):
        return next(self.parameters())

    # -- state ------------------------------------------------------------------------------------
    def initial_state(self, batch_size: int) -> torch.Tensor:
        """The reset state (B, state_size): zeros on the policy's device and dtype."""
        if isinstance(batch_size, bool) or not isinstance(batch_size, (int, np.integer)) \
                or batch_size < 1:
            raise InputError('batch_size', batch_size, 'must be a positive integer')
        p = self._param()
        return torch.zeros(int(batch_size), self.state_size, dtype=p.dtype, device=p.device)

    def reset_where(self, state: torch.Tensor, done) -> torch.Tensor:
        """Return ``state`` with the rows where ``done`` (B,) is true set to the reset state."""
        p = self._param()
        if not isinstance(state, torch.Tensor) or state.dim() != 2:
            raise InputError('state', getattr(state, 'shape', type(state).__name__),
                             f'must be a (B, {self.state_size}) tensor')
        state = self._check_state(state, state.shape[0])
        done = torch.as_tensor(done, device=p.device)
        if done.dtype != torch.bool or tuple(done.shape) != (state.shape[0],):
            raise InputError('done', tuple(done.shape), f'must be a bool tensor ({state.shape[0]},)')
        return torch.where(done.unsqueeze(1), self.initial_state(state.shape[0]), state)

    def _check_state(self, state, batch):
        p = self._param()
        if state is None:
            return self.initial_state(batch)
        return _as_float_tensor('state', state, (batch, self.state_size), p.device, p.dtype)

    # -- shared pieces ----------------------------------------------------------------------------
    def _imu_features(self, imu):
        # scale to order one, then clip: a wild IMU reading must not push the core out of range
        return (imu * self.imu_scale.to(imu.dtype)).clamp(-self.config.imu_clip, self.config.imu_clip)

    def _outputs(self, command_pre, latent) -> PolicyOutput:
        """command_pre (..., 2) and latent (..., L) -> PolicyOutput with the same leading dims."""
        c = self.config
        squashed = torch.tanh(command_pre)                            # (..., 2) in [-1, 1]
        low, high = self.command_low.to(squashed.dtype), self.command_high.to(squashed.dtype)
        command = low + (high - low) * (squashed + 1.0) * 0.5         # (..., 2)
        command = torch.maximum(torch.minimum(command, high), low)    # rounding can't cross a limit
        if self.readout is not None:
            extra = self.readout(latent)                              # (..., K + A)
        else:
            extra = latent.new_zeros(latent.shape[:-1] + (0,))
        raw_barrier, aux = extra.split([c.num_barrier_params, c.aux_outputs], dim=-1)
        lo, hi = c.barrier_param_range
        barrier = (lo + (hi - lo) * torch.sigmoid(raw_barrier)).clamp(lo, hi)   # (..., K)
        return PolicyOutput(command=command, barrier_params=barrier, aux=aux)

    def _command_pre(self, motor_or_latent):
        if self.config.liquid:
            return motor_or_latent * self.motor_gain + self.motor_bias     # per motor neuron
        return self.command_head(motor_or_latent)

    # -- streaming --------------------------------------------------------------------------------
    def step(self, image, imu, dt, state=None):
        """One camera frame.

        Args:
            image: (B, C, H, W) float in [0, 1].
            imu: (B, imu_size) float, the frame's IMU features (runtime/preprocess.py).
            dt: (B,) or a float: seconds since the previous frame, > 0.
            state: (B, state_size) or None (= reset state).
        Returns:
            (PolicyOutput with (B, ...) fields, new state (B, state_size)).
        Raises:
            InputError naming the argument and value for a wrong shape, dtype, NaN/Inf, image values
            outside [0, 1] or dt <= 0.
        """
        out, state, _ = self.step_with_features(image, imu, dt, state)
        return out, state

    def step_with_features(self, image, imu, dt, state=None):
        """:meth:`step` that also returns the frame's perception features (one pass, nothing run twice).

        Returns (PolicyOutput, new state (B, state_size), features (B, config.perception_size)): the
        conv head's tanh features for cfc / ltc / lstm, the PilotNet latent for the cnn; the very
        outputs of ``self.head`` (``self.core`` for the cnn), which the OOD monitor's 'features'
        statistics are fitted on (train/ood_calibration.py). Arguments and errors as :meth:`step`.
        """
        c, p = self.config, self._param()
        if not isinstance(image, (torch.Tensor, np.ndarray)) or len(image.shape) < 1:
            raise InputError('image', type(image).__name__, 'must be a (B, C, H, W) tensor')
        batch = image.shape[0]
        image = _check_images('image', image, (batch, c.image_channels, c.image_height,
                                               c.image_width), p.device, p.dtype)
        imu = _as_float_tensor('imu', imu, (batch, c.imu_size), p.device, p.dtype)
        dt = self._network_time(self._check_dt(dt, batch))            # (B,) network units
        state = self._check_state(state, batch)
        imu = self._imu_features(imu)                                  # (B, imu_size)
        if c.core == 'cnn':
            latent = self.core(image, imu)                             # (B, 10)
            return self._outputs(self._command_pre(latent), latent), state, latent
        features = self.head(image)                                    # (B, feature_size)
        x = torch.cat([features, imu], dim=1)                          # (B, feature_size + imu_size)
        if c.core == 'lstm':
            latent, state = self.core.step(x, state, dt)               # (B, H)
            return self._outputs(self._command_pre(latent), latent), state, features
        motor, state = self.core.step(x, state, dt)                    # (B, 2), (B, units)
        return self._outputs(self._command_pre(motor), state), state, features

    def _network_time(self, seconds):
        return (seconds * self.config.time_scale).clamp(max=MAX_NETWORK_TIME)

    def _check_dt(self, dt, batch):
        p = self._param()
        if isinstance(dt, (int, float, np.integer, np.floating)) and not isinstance(dt, bool):
            if not math.isfinite(dt) or dt <= 0:
                raise InputError('dt', dt, 'must be a finite number of seconds > 0')
            return torch.full((batch,), float(dt), device=p.device, dtype=p.dtype)
        return _check_positive('dt', dt, (batch,), p.device, p.dtype)

    # -- sequences (training) ---------------------------------------------------------------------
    def forward(self, images, imu, timespans, state=None):
        """A batch of sequences; differentiable, the same maths as calling ``step`` T times.

        Args:
            images: (B, T, C, H, W) float in [0, 1].
            imu: (B, T, imu_size).
            timespans: (B, T) seconds elapsed before each step (> 0), or a float for all steps.
            state: (B, state_size) or None (= reset state).
        Returns:
            (PolicyOutput with (B, T, ...) fields, final state (B, state_size)).
        """
        c, p = self.config, self._param()
        if not isinstance(images, (torch.Tensor, np.ndarray)) or len(images.shape) < 2:
            raise InputError('images', type(images).__name__, 'must be a (B, T, C, H, W) tensor')
        batch, steps = images.shape[0], images.shape[1]
        if steps < 1:
            raise InputError('images', tuple(images.shape), 'sequence length T must be >= 1')
        images = _check_images('images', images, (batch, steps, c.image_channels, c.image_height,
                                                  c.image_width), p.device, p.dtype)
        imu = _as_float_tensor('imu', imu, (batch, steps, c.imu_size), p.device, p.dtype)
        if isinstance(timespans, (int, float, np.integer, np.floating)) \
                and not isinstance(timespans, bool):
            if not math.isfinite(timespans) or timespans <= 0:
                raise InputError('timespans', timespans, 'must be a finite number of seconds > 0')
            timespans = torch.full((batch, steps), float(timespans), device=p.device, dtype=p.dtype)
        else:
            timespans = _check_positive('timespans', timespans, (batch, steps), p.device, p.dtype)
        timespans = self._network_time(timespans)                      # (B, T) network units
        state = self._check_state(state, batch)
        imu = self._imu_features(imu)                                  # (B, T, imu_size)
        flat_images = images.reshape(batch * steps, *images.shape[2:])  # (B*T, C, H, W)
        if c.core == 'cnn':
            latent = self.core(flat_images, imu.reshape(batch * steps, -1))
            latent = latent.reshape(batch, steps, -1)                  # (B, T, 10)
            return self._outputs(self._command_pre(latent), latent), state
        features = self.head(flat_images).reshape(batch, steps, -1)    # (B, T, feature_size)
        x = torch.cat([features, imu], dim=2)                          # (B, T, F)
        if c.core == 'lstm':
            latent, state = self.core(x, timespans, state)             # (B, T, H)
            return self._outputs(self._command_pre(latent), latent), state
        # Liquid core: the readouts need every step's full neuron state; the cell's sequence
        # forward returns them (and keeps its fast hand-written backward pass).
        motor, state, latent = self.core(x, timespans, state, return_states=True)
        # motor (B, T, 2), state (B, units), latent (B, T, units)
        return self._outputs(self._command_pre(motor), latent), state
