"""The policy's configuration, ``PolicyConfig``: everything needed to rebuild a ``DrivingPolicy``.

Kept free of torch (numpy only) so that the model card can be validated by the torch-free edge
runtime (runtime/model_file.py, runtime/onnx_backend.py); ``policy/driving_policy.py`` builds the
network from it and re-exports every name defined here.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Optional

import numpy as np

from liquid_controller.config_base import config_from_dict, config_to_dict
from liquid_controller.errors import InputError
from liquid_controller.validation import check_choice, check_int, check_number

__all__ = ['CORES', 'LIQUID_CORES', 'CFC_MODES', 'IMAGE_NORMALIZATIONS', 'COMMAND_SIZE',
           'MAX_NETWORK_TIME', 'CNN_LATENT_SIZE', 'INT_RANGES', 'FLOAT_RANGES', 'PolicyConfig']

# Image normalisations the conv heads implement (policy/perception.py, normalize_images).
IMAGE_NORMALIZATIONS = ('per_image', 'fixed')
CORES = ('cfc', 'ltc', 'lstm', 'cnn')
LIQUID_CORES = ('cfc', 'ltc')
CFC_MODES = ('default', 'no_gate', 'pure')
COMMAND_SIZE = 2  # (v m/s, w rad/s)
# Network time units above this are treated as this: keeps seconds * time_scale finite for any finite
# dt (a gap this long has let every neuron settle anyway).
MAX_NETWORK_TIME = 1e6
# The feed-forward CNN's latent (its PilotNet head's last fully connected layer, policy/perception.py):
# what that core hands out as its perception features.
CNN_LATENT_SIZE = 10

# Allowed values of PolicyConfig's numeric fields. The upper bounds keep a configuration (a model card
# in particular, see runtime/model_file.py) from asking for a network that takes minutes and gigabytes
# to build, or for a solver loop that never ends; they sit far above anything this package trains (the
# flagship: 64x128 images, 32 features, 19 neurons, 6 IMU features). Inclusive integer ranges:
INT_RANGES = {
    'ltc_unfolds': (1, 64),              # ODE solver steps per frame; step cost grows linearly
    'image_height': (8, 1024),           # px; the head's stride-2 convolutions need >= 8
    'image_width': (8, 1024),
    'image_channels': (1, 4),
    'imu_size': (0, 64),
    'feature_size': (1, 4096),           # conv head outputs
    'conv_squeeze_channels': (1, 1024),
    'lstm_hidden': (1, 1024),
    'num_barrier_params': (0, 16),
    'aux_outputs': (0, 16),
    'seed': (0, 2 ** 32 - 1),            # numpy and torch both accept any 32-bit seed
}
MAX_UNITS = 1000                          # liquid neurons (the NCP wiring is built in Python loops)
MIN_LIQUID_UNITS = 4                      # an NCP needs inter, command and motor neurons
MAX_CONV_LAYERS = 8
MAX_CONV_CHANNELS = 1024
MAX_SPEED = 50.0                          # m/s, |v_min| and |v_max|
MAX_TURN_RATE = 50.0                      # rad/s, w_max
# Float fields: name -> (low, high, low excluded). high is always included.
FLOAT_RANGES = {
    'imu_clip': (0.0, 1e3, True),
    'sparsity': (0.1, 1.0, False),
    'v_min': (-MAX_SPEED, MAX_SPEED, False),
    'v_max': (-MAX_SPEED, MAX_SPEED, False),
    'w_max': (0.0, MAX_TURN_RATE, True),
    'time_scale': (0.0, 1e4, True),
}
MAX_BARRIER_PARAM = 1e4                   # barrier_param_range: 0 < low < high <= this
MAX_IMU_SCALE = 1e3                       # |imu_scale[i]| <= this


# -------------------------------------------------------------------------------------------------
# Configuration
# -------------------------------------------------------------------------------------------------
def _default_imu_scale(imu_size):
    # runtime/preprocess.py feeds mean gyro xyz (rad/s, ~1) then mean accel xyz (m/s^2, gravity ~10):
    # bring both to order one.
    if imu_size == 6:
        return (1.0, 1.0, 1.0, 0.1, 0.1, 0.1)
    return (1.0,) * imu_size


@dataclass
class PolicyConfig:
    """Everything needed to rebuild a ``DrivingPolicy`` (stored in the model card).

    core: 'cfc' | 'ltc' | 'lstm' | 'cnn'. cfc_mode: 'default' | 'no_gate' | 'pure'. ltc_unfolds: ODE
    solver steps per input step. image_*: input frame size (RGB float in [0, 1]).
    image_normalization: 'per_image' (standardise each channel of each frame) | 'fixed'.
    imu_size: IMU feature length; imu_scale: per-feature multiplier (None -> default for 6 features:
    gyro x1, accel x0.1); imu_clip: scaled IMU features are clipped to +-imu_clip.
    feature_size: conv head outputs (liquid/lstm). conv_channels, conv_squeeze_channels: conv head widths.
    units: liquid neurons (NCP inter + command + motor; 2 motor). sparsity: NCP sparsity in [0.1, 1].
    lstm_hidden: LSTM hidden size. v_min, v_max (m/s), w_max (rad/s): command ranges.
    num_barrier_params, barrier_param_range (low, high): class-K parameters, 0 < low < high.
    aux_outputs: 2 = (lane_offset m, heading_error rad), or 0. seed: weights and wiring.
    time_scale: network time units per second of elapsed time. The default 30 makes one nominal
    30 Hz camera frame one unit: the cells' initialisations (from ncps) assume elapsed times of about
    1, and in seconds an LTC neuron would barely move in one frame. Irregular steps keep their ratios.

    Every numeric field has a bounded range (``INT_RANGES``, ``FLOAT_RANGES`` and the ``MAX_*``
    constants of this module), checked on construction: a bad value raises InputError naming
    ``PolicyConfig.<field>``, the value and the allowed range.
    """

    core: str = 'cfc'
    cfc_mode: str = 'default'
    ltc_unfolds: int = 6
    image_height: int = 64
    image_width: int = 128
    image_channels: int = 3
    image_normalization: str = 'per_image'
    imu_size: int = 6
    imu_scale: Optional[tuple] = None
    imu_clip: float = 10.0
    feature_size: int = 32
    conv_channels: tuple = (24, 36, 48, 64)
    conv_squeeze_channels: int = 8
    units: int = 19
    sparsity: float = 0.5
    lstm_hidden: int = 64
    v_min: float = 0.0
    v_max: float = 2.0
    w_max: float = 2.0
    num_barrier_params: int = 2
    barrier_param_range: tuple = (0.1, 10.0)
    aux_outputs: int = 2
    seed: int = 0
    time_scale: float = 30.0

    def __post_init__(self):
        # Every integer is checked (type and range) before anything is sized by it: imu_size, for
        # one, sizes the default imu_scale below.
        self._check_choice('core', CORES)
        self._check_choice('cfc_mode', CFC_MODES)
        self._check_choice('image_normalization', IMAGE_NORMALIZATIONS)
        for name, (minimum, maximum) in INT_RANGES.items():
            self._check_int(name, minimum, maximum)
        self._check_int('units', MIN_LIQUID_UNITS if self.core in LIQUID_CORES else 1, MAX_UNITS)
        for name, (low, high, low_excluded) in FLOAT_RANGES.items():
            self._check_float(name, low, high, low_excluded)
        if self.v_min >= self.v_max:
            raise InputError('PolicyConfig.v_max', self.v_max, f'must be > v_min ({self.v_min})')
        if isinstance(self.conv_channels, (tuple, list)) and not 1 <= len(self.conv_channels) \
                <= MAX_CONV_LAYERS:
            raise InputError('PolicyConfig.conv_channels', self.conv_channels,
                             f'must list 1 to {MAX_CONV_LAYERS} layer widths')
        self.conv_channels = self._check_tuple('conv_channels', None, int, 1)
        if any(not 1 <= c <= MAX_CONV_CHANNELS for c in self.conv_channels):
            raise InputError('PolicyConfig.conv_channels', self.conv_channels,
                             f'entries must be integers in [1, {MAX_CONV_CHANNELS}]')
        low, high = self.barrier_param_range = self._check_tuple('barrier_param_range', 2, float)
        if not 0 < low < high <= MAX_BARRIER_PARAM:
            raise InputError('PolicyConfig.barrier_param_range', self.barrier_param_range,
                             f'must be (low, high) with 0 < low < high <= {MAX_BARRIER_PARAM:g}')
        if self.imu_scale is None:
            self.imu_scale = _default_imu_scale(self.imu_size)
        self.imu_scale = self._check_tuple('imu_scale', self.imu_size, float)
        if any(abs(v) > MAX_IMU_SCALE for v in self.imu_scale):
            raise InputError('PolicyConfig.imu_scale', self.imu_scale,
                             f'entries must be in [-{MAX_IMU_SCALE:g}, {MAX_IMU_SCALE:g}]')

    # -- validation helpers (each error names the field and the value) --------------------------------
    def _check_choice(self, name, choices):
        check_choice(f'PolicyConfig.{name}', getattr(self, name), choices)

    def _check_int(self, name, minimum, maximum):
        setattr(self, name, check_int(f'PolicyConfig.{name}', getattr(self, name), minimum, maximum))

    def _check_float(self, name, low, high, low_excluded):
        setattr(self, name, check_number(f'PolicyConfig.{name}', getattr(self, name), low, high,
                                         low_open=low_excluded))

    def _check_tuple(self, name, length, kind, minimum=None):
        value = getattr(self, name)
        if not isinstance(value, (tuple, list)) or (length is not None and len(value) != length):
            want = f'a list of {length} numbers' if length is not None else 'a list'
            raise InputError(f'PolicyConfig.{name}', value, f'must be {want}')
        out = []
        for v in value:
            ok = not isinstance(v, bool) and isinstance(v, (int, float, np.integer, np.floating))
            if kind is int:
                ok = ok and float(v).is_integer()
            if not ok or not math.isfinite(v):
                raise InputError(f'PolicyConfig.{name}', value, f'entries must be finite {kind.__name__}s')
            out.append(kind(v))
        return tuple(out)

    # -- serialisation ----------------------------------------------------------------------------
    def to_dict(self) -> dict:
        """JSON-ready dict (tuples as lists); ``from_dict`` inverts it."""
        return config_to_dict(self, tuples_as_lists=True)

    @classmethod
    def from_dict(cls, d: dict) -> 'PolicyConfig':
        """Build from a dict; unknown keys are an error (a card for another version), missing keys
        take their defaults."""
        return config_from_dict(cls, d, 'PolicyConfig')

    @property
    def liquid(self) -> bool:
        """True for the liquid cores (cfc, ltc)."""
        return self.core in LIQUID_CORES

    @property
    def perception_size(self) -> int:
        """Length of the perception features a step hands out (``DrivingPolicy.step_with_features``,
        the OOD monitor's 'features' source): the conv head's ``feature_size`` outputs, or the CNN's
        ``CNN_LATENT_SIZE`` latent."""
        return CNN_LATENT_SIZE if self.core == 'cnn' else self.feature_size
