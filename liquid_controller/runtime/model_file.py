"""Model files: ``NAME.safetensors`` (weights) plus ``NAME.json`` (the model card).

The card alone is enough to rebuild the network. Loading never executes code: JSON for the card,
safetensors for the tensors (no pickle). A missing, corrupt, out-of-range or mismatched file raises
:class:`~liquid_controller.errors.ModelFileError` with a message that names the file, the field (as a
path such as ``policy.feature_size``), the value and what is allowed, so the node's configure
transition can fail cleanly.

Card layout (format_version 2). No key other than those listed is accepted, at any level, except
inside the sections marked free-form; an unknown key is named with its path, the allowed keys and the
closest one (a typo such as ``nominal_dtt`` must not silently leave a default in force). Every
top-level key but ``ood`` and every key of ``input`` and ``weights`` is required; in the descriptive sections
``output``, ``limits``, ``wiring`` and ``training`` each listed key is optional:

- ``name`` (non-empty string), ``description``, ``created_utc`` (strings), ``untrained`` (bool).
- ``format`` = ``'liquid_controller.model'``, ``format_version`` = 2.
- ``policy``: ``PolicyConfig.to_dict()``; keys missing from it take PolicyConfig's defaults, every
  value is checked by PolicyConfig against the ranges in policy/driving_policy.py (``INT_RANGES``,
  ``FLOAT_RANGES``, ``MAX_*``; e.g. feature_size 1..4096, units up to 1000, ltc_unfolds 1..64,
  images 8..1024 px), reported as ``policy.<field>``.
- ``input``: image_height, image_width (equal to the policy's), image_encoding ``'rgb8'``,
  image_normalisation ``'divide_by_255'``, imu_size (1..64, equal to the policy's; the runtime
  Controller computes 6), imu_features (imu_size names), imu_mean (imu_size numbers, |x| <= 1e6),
  imu_std (imu_size numbers in (0, 1e6]).
- ``nominal_dt``: seconds in (0, 1], the camera period the model was trained at.
- ``topics``: input role -> topic name; roles among ``TOPIC_KEYS``.
- ``output``: command, aux (lists of names), scaling (string), v_max, w_max (PolicyConfig's ranges).
- ``limits``: v_max, w_max (as above), barrier_param_range ([] or [low, high], 0 < low < high <= 1e4).
- ``wiring``: core (string), units (1..1000), neuron_groups (label -> state indices in [0, 2047]: the
  largest state, an LSTM's hidden + cell with lstm_hidden <= 1024).
- ``weights``: file (bare file name), sha256 (64 lowercase hex digits: the sha256 of the weights
  file's bytes), tensors (name -> {shape: list of sizes, dtype: one of ``TENSOR_DTYPES``}; at most
  ``MAX_TENSORS`` tensors and ``MAX_PARAMETERS`` elements in all).
- ``training``: a record of how the model was made: untrained (bool), episodes, frames, steps, epochs,
  parameters, liquid_neurons (counts), train_seconds (>= 0), stopped, device, torch, machine, curves
  (strings); its ``data`` and ``config`` (objects) and ``history_epochs`` (list) are free-form copies of
  the trainer's data summary, TrainConfig and history, kept for provenance and never read to run.
- ``metrics``: free-form object (offline and closed-loop results; ``evaluation/evaluate.py`` adds results
  to it after the model was saved).
- ``ood`` (optional; absent = no monitor): the out-of-distribution monitor's training statistics,
  ``runtime.ood.OodStatistics.to_dict()`` (method, source, mean, precision, threshold, window,
  quantile, frames, shrinkage); with source ``neurons`` its size must equal the core's state size,
  with source ``features`` the policy's ``perception_size`` (the conv head's features, the cnn's
  latent).
- ``card_sha256``: see below.

Integrity: ``weights.sha256`` covers the weights file; ``card_sha256`` covers the card: it is the
sha256 of the card's canonical JSON (:func:`card_digest`: sorted keys, no whitespace, ASCII) with every
key except ``metrics`` and ``card_sha256`` itself. As the covered part includes ``weights.sha256``, one
card hash vouches for the configuration (policy, input contract, nominal_dt, topics, output, limits,
wiring, tensor list), the labels (name, untrained, description), the training record and, through the
weights hash, the weights. ``metrics`` is left out because evaluation results are legitimately added
to a saved card. The hashes detect corruption and edits; they are not signatures (anyone can
recompute them), so a card from an untrusted source is bounded by the range checks, not by the hashes.

Everything in the card is checked before anything is built or read into memory: loading parses the
card (at most ``MAX_CARD_BYTES``), checks every section, verifies ``card_sha256``, hashes the weights
file, compares the safetensors header (names, shapes, dtypes; no tensor data) with the card, compares
the card's tensor list with the network the policy configuration describes (built on PyTorch's
``meta`` device, which allocates no memory), and only then reads the tensors and builds the network.

Format 1 cards (whose sha256 covered only the weights) are refused with a message pointing to
:func:`upgrade_model_file` (also ``python -m liquid_controller.runtime.model_file upgrade PATH``), which
checks the model fully and rewrites the card as format 2; the weights file is not touched.
"""
from __future__ import annotations

import argparse
import dataclasses
import difflib
import hashlib
import json
import math
import numbers
import os
import re
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from liquid_controller.errors import InputError, ModelFileError
from liquid_controller.validation import check_int, check_number

FORMAT = 'liquid_controller.model'
# 1: weights.sha256 covered only the weights file. 2: card_sha256 covers the card as well.
FORMAT_VERSION = 2
IMU_FEATURES = ('gyro_x', 'gyro_y', 'gyro_z', 'accel_x', 'accel_y', 'accel_z')
DEFAULT_TOPICS = {'image': 'camera/image_raw', 'imu': 'imu/data'}
# Input roles a card may require: those the node can provide (image and imu always; odom, range and
# scan when enabled). load_model(available_topics=...) checks the card's against the caller's.
TOPIC_KEYS = ('image', 'imu', 'odom', 'range', 'scan')
UNTRAINED_WARNING = ('UNTRAINED: random weights. This model does not drive; it exists to bring up and '
                     'test the node before a trained model is available.')

# Bounds on what a card may make the loader read or allocate (all far above the shipped models: cards
# of ~25 KB, 25 tensors, 65k-195k parameters).
MAX_CARD_BYTES = 16 * 2 ** 20
MAX_TENSORS = 10_000
MAX_TENSOR_DIMS = 8
MAX_PARAMETERS = 50_000_000          # tensor elements in all: 200 MB as float32
TENSOR_DTYPES = ('float32', 'float64', 'float16', 'bfloat16', 'int64', 'int32', 'int16', 'int8',
                 'uint8', 'bool')
# safetensors header dtype -> the torch name the card uses
_SAFETENSORS_DTYPES = {'F32': 'float32', 'F64': 'float64', 'F16': 'float16', 'BF16': 'bfloat16',
                       'I64': 'int64', 'I32': 'int32', 'I16': 'int16', 'I8': 'int8', 'U8': 'uint8',
                       'BOOL': 'bool'}
NOMINAL_DT_MAX = 1.0                 # s; nominal_dt is in (0, NOMINAL_DT_MAX]
IMU_SIZE_RANGE = (1, 64)             # the policy allows 0..64; a card always has IMU input
IMU_MEAN_MAX = 1e6                   # |imu_mean[i]|
IMU_STD_MAX = 1e6                    # imu_std[i] in (0, IMU_STD_MAX]
MAX_COUNT = 2 ** 53                  # counts in the training record (exact in a JSON double)
MAX_TRAIN_SECONDS = 1e9
# card_sha256 covers every top-level key except these (see the module docstring).
UNHASHED_KEYS = ('metrics', 'card_sha256')
_HEX64 = re.compile(r'[0-9a-f]{64}')


def _policy_module():
    # The torch-free configuration module: validating a card (the policy section, the speed ranges)
    # must work on the edge runtime, which has no torch.
    from liquid_controller.policy import policy_config
    return policy_config


def _network_module():
    # Imported lazily: the network code needs torch, which only building a torch policy needs.
    from liquid_controller.policy import driving_policy
    return driving_policy


# -------------------------------------------------------------------------------------------------
# Field checks. Each names the field by its path in the card, shows the value and the allowed range.
# -------------------------------------------------------------------------------------------------
def _shown(value):
    text = repr(value)
    return text if len(text) <= 80 else text[:77] + '...'


def _fail(path, value, reason):
    raise ModelFileError(f'model card {path}={_shown(value)}: {reason}')


def _join(path, key):
    return f'{path}.{key}' if path else str(key)


def _int(path, value, low, high):
    try:   # the shared rule (liquid_controller/validation.py), reported as a model-card error
        return check_int(path, value, low, high)
    except InputError as exc:
        _fail(path, value, exc.reason)


def _real(path, value, low, high, low_excluded=False):
    try:
        return check_number(path, value, low, high, low_open=low_excluded)
    except InputError as exc:
        _fail(path, value, exc.reason)


def _text(path, value, non_empty=False):
    if not isinstance(value, str) or (non_empty and not value):
        _fail(path, value, 'must be a non-empty string' if non_empty else 'must be a string')
    return value


def _flag(path, value):
    if not isinstance(value, bool):
        _fail(path, value, 'must be true or false')
    return value


def _list(path, value, length=None):
    if not isinstance(value, (list, tuple)) or (length is not None and len(value) != length):
        _fail(path, value, 'must be a list' if length is None else f'must be a list of {length}')
    return list(value)


def _names(path, value, length=None):
    items = _list(path, value, length)
    for i, v in enumerate(items):
        _text(f'{path}[{i}]', v, non_empty=True)
    return [str(v) for v in items]


def _object(path, value):
    if not isinstance(value, dict):
        _fail(path, value, f'must be an object, got {type(value).__name__}')
    return value


def _check_keys(d, allowed, path, required=()):
    """Reject keys of the object ``d`` (at ``path``; '' = top level) outside ``allowed``, naming the
    key, the closest allowed one and all of them; then reject missing ``required`` keys."""
    where = path or 'top level'
    _object(path or 'card', d)
    allowed = sorted(allowed)
    for key in d:
        if key not in allowed:
            close = difflib.get_close_matches(str(key), allowed, n=1)
            hint = f' (did you mean {close[0]}?)' if close else ''
            raise ModelFileError(f'model card {_join(path, key)}: unknown key{hint}; allowed keys at '
                                 f'{where}: {allowed}')
    missing = [k for k in required if k not in d]
    if missing:
        raise ModelFileError(f'model card {where}: missing key(s) {missing}')


def _check_section(d, path, checks, required=True):
    """``checks``: key -> function(path, value); no other key is allowed. ``required``: every key of
    ``checks`` must be present (else any subset may be)."""
    _check_keys(d, checks, path, required=tuple(checks) if required else ())
    for key, value in d.items():
        checks[key](_join(path, key), value)


def _policy_config(d):
    """The card's ``policy`` section as a validated PolicyConfig; errors name ``policy.<field>``."""
    dp = _policy_module()
    _check_keys(d, [f.name for f in dataclasses.fields(dp.PolicyConfig)], 'policy')
    try:
        return dp.PolicyConfig.from_dict(dict(d))
    except InputError as exc:
        name = exc.name.replace('PolicyConfig.', 'policy.', 1) if exc.name.startswith(
            'PolicyConfig.') else f'policy ({exc.name})'
        raise ModelFileError(f'model card {name}={_shown(exc.value)}: {exc.reason}') from exc


def _speed_check(name):
    low, high, low_excluded = _policy_module().FLOAT_RANGES[name]
    return lambda path, v: _real(path, v, low, high, low_excluded)


def _barrier_range(path, value):
    items = _list(path, value)
    high = _policy_module().MAX_BARRIER_PARAM
    ok = len(items) == 0 or (len(items) == 2 and all(
        not isinstance(v, bool) and isinstance(v, numbers.Real) and math.isfinite(v) for v in items)
        and 0 < items[0] < items[1] <= high)
    if not ok:
        _fail(path, value, f'must be [] or [low, high] with 0 < low < high <= {high:g}')


def _neuron_groups(path, value):
    # Indices into the recurrent state; the largest any valid policy has is an LSTM's (hidden + cell).
    dp = _policy_module()
    last = max(dp.MAX_UNITS, 2 * dp.INT_RANGES['lstm_hidden'][1]) - 1
    for label, indices in _object(path, value).items():
        for i, v in enumerate(_list(f'{path}.{label}', indices)):
            _int(f'{path}.{label}[{i}]', v, 0, last)


def _check_output(d):
    _check_section(d, 'output', {
        'command': _names, 'aux': _names, 'scaling': _text,
        'v_max': _speed_check('v_max'), 'w_max': _speed_check('w_max')}, required=False)


def _check_limits(d):
    _check_section(d, 'limits', {
        'v_max': _speed_check('v_max'), 'w_max': _speed_check('w_max'),
        'barrier_param_range': _barrier_range}, required=False)


def _check_wiring(d):
    _check_section(d, 'wiring', {
        'core': _text, 'units': lambda p, v: _int(p, v, 1, _policy_module().MAX_UNITS),
        'neuron_groups': _neuron_groups}, required=False)


def _check_topics(d):
    _check_keys(d, TOPIC_KEYS, 'topics')
    for key, topic in d.items():
        _text(f'topics.{key}', topic, non_empty=True)


def _count(path, value):
    return _int(path, value, 0, MAX_COUNT)


# The training record: these keys only (any subset: an untrained model's record is short).
TRAINING_CHECKS = {
    'untrained': _flag, 'episodes': _count, 'frames': _count, 'steps': _count, 'epochs': _count,
    'parameters': lambda p, v: _int(p, v, 0, MAX_PARAMETERS),
    'liquid_neurons': lambda p, v: _int(p, v, 0, _policy_module().MAX_UNITS),
    'train_seconds': lambda p, v: _real(p, v, 0.0, MAX_TRAIN_SECONDS),
    'world_size': lambda p, v: _int(p, v, 1, 1 << 20), 'global_batch': _count,   # distributed training
    'stopped': _text, 'device': _text, 'torch': _text, 'machine': _text, 'curves': _text,
    'distributed_backend': _text,
    'data': _object, 'config': _object, 'history_epochs': _list,     # free-form inside
}


def _check_training(d):
    _check_section(d, 'training', TRAINING_CHECKS, required=False)


def _check_tensor_list(tensors):
    _object('weights.tensors', tensors)
    if not 1 <= len(tensors) <= MAX_TENSORS:
        raise ModelFileError(f'model card weights.tensors: must list 1 to {MAX_TENSORS} tensors '
                             f'(name -> shape, dtype), has {len(tensors)}')
    total = 0
    for name, spec in tensors.items():
        if not isinstance(name, str) or not name:
            _fail('weights.tensors', name, 'tensor names must be non-empty strings')
        path = f'weights.tensors[{name!r}]'
        _check_keys(spec, ('shape', 'dtype'), path, required=('shape', 'dtype'))
        shape = _list(f'{path}.shape', spec['shape'])
        if len(shape) > MAX_TENSOR_DIMS:
            _fail(f'{path}.shape', shape, f'must have at most {MAX_TENSOR_DIMS} dimensions')
        numel = 1
        for i, size in enumerate(shape):
            numel *= _int(f'{path}.shape[{i}]', size, 0, MAX_PARAMETERS)
        if spec['dtype'] not in TENSOR_DTYPES:
            _fail(f'{path}.dtype', spec['dtype'], f'must be one of {list(TENSOR_DTYPES)}')
        total += numel
        if total > MAX_PARAMETERS:
            raise ModelFileError(f'model card weights.tensors: more than {MAX_PARAMETERS} elements in '
                                 f'all (reached at {name!r}); this loader refuses networks this large')


# -------------------------------------------------------------------------------------------------
# The card
# -------------------------------------------------------------------------------------------------
@dataclass
class InputSpec:
    """How sensor data is encoded and normalised before it reaches the network."""
    image_height: int = 64
    image_width: int = 128
    image_encoding: str = 'rgb8'
    # uint8 RGB (H,W,3) -> float32 (3,H,W) in [0, 1]: x / 255.
    image_normalisation: str = 'divide_by_255'
    imu_size: int = 6
    imu_features: list = field(default_factory=lambda: list(IMU_FEATURES))
    # feature -> (feature - mean) / std, applied after windowing (runtime/preprocess.py).
    imu_mean: list = field(default_factory=lambda: [0.0] * 6)
    imu_std: list = field(default_factory=lambda: [1.0] * 6)

    def __post_init__(self):
        ranges = _policy_module().INT_RANGES       # the policy's: the two must agree anyway
        for name in ('image_height', 'image_width'):
            _int(f'input.{name}', getattr(self, name), *ranges[name])
        if self.image_encoding != 'rgb8':
            _fail('input.image_encoding', self.image_encoding, "only 'rgb8' is supported")
        if self.image_normalisation != 'divide_by_255':
            _fail('input.image_normalisation', self.image_normalisation,
                  "only 'divide_by_255' is supported")
        # imu_size is checked first: it sizes the three lists.
        n = _int('input.imu_size', self.imu_size, *IMU_SIZE_RANGE)
        self.imu_features = _names('input.imu_features', self.imu_features, n)
        self.imu_mean = [_real(f'input.imu_mean[{i}]', v, -IMU_MEAN_MAX, IMU_MEAN_MAX)
                         for i, v in enumerate(_list('input.imu_mean', self.imu_mean, n))]
        self.imu_std = [_real(f'input.imu_std[{i}]', v, 0.0, IMU_STD_MAX, low_excluded=True)
                        for i, v in enumerate(_list('input.imu_std', self.imu_std, n))]

    def to_dict(self):
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, d):
        names = [f.name for f in dataclasses.fields(cls)]
        _check_keys(d, names, 'input', required=names)
        return cls(**d)


@dataclass
class WeightsSpec:
    """The weights file named by the card and what it must contain."""
    file: str
    sha256: str                  # of the weights file's bytes
    tensors: dict                # name -> {'shape': [...], 'dtype': 'float32'}

    def __post_init__(self):
        if not isinstance(self.file, str) or not self.file or '/' in self.file or '\\' in self.file \
                or self.file in ('.', '..'):
            _fail('weights.file', self.file, 'must be a bare file name (next to the card)')
        if not isinstance(self.sha256, str) or not _HEX64.fullmatch(self.sha256):
            _fail('weights.sha256', self.sha256, 'must be 64 lowercase hex digits')
        _check_tensor_list(self.tensors)

    def to_dict(self):
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, d):
        names = [f.name for f in dataclasses.fields(cls)]
        _check_keys(d, names, 'weights', required=names)
        return cls(**d)


@dataclass
class ModelCard:
    """Everything needed to rebuild and trust a model, stored next to its weights as JSON (layout and
    ranges: see the module docstring)."""
    name: str
    policy: dict                      # PolicyConfig.to_dict()
    weights: WeightsSpec
    input: InputSpec = field(default_factory=InputSpec)
    untrained: bool = False
    description: str = ''
    nominal_dt: float = 1.0 / 30.0    # s, the camera period the model was trained at
    output: dict = field(default_factory=dict)    # command layout and scaling
    limits: dict = field(default_factory=dict)    # v/w limits, barrier parameter range
    wiring: dict = field(default_factory=dict)    # neuron groups (labels for ~/neurons)
    topics: dict = field(default_factory=lambda: dict(DEFAULT_TOPICS))
    training: dict = field(default_factory=dict)  # data summary (scenes, episodes, frames, ...)
    metrics: dict = field(default_factory=dict)   # offline / closed-loop metrics (free-form)
    created_utc: str = ''
    ood: dict = field(default_factory=dict)       # OOD monitor statistics (runtime/ood.py); optional
    format: str = FORMAT
    format_version: int = FORMAT_VERSION
    card_sha256: str = ''             # card_digest(); '' until the card is written

    def __post_init__(self):
        _check_format(self.format, self.format_version)
        _text('name', self.name, non_empty=True)
        # The policy first: every later cross-check leans on it, and it bounds what gets built.
        config = _policy_config(_object('policy', self.policy))
        _real('nominal_dt', self.nominal_dt, 0.0, NOMINAL_DT_MAX, low_excluded=True)
        if isinstance(self.input, dict):
            self.input = InputSpec.from_dict(self.input)
        if isinstance(self.weights, dict):
            self.weights = WeightsSpec.from_dict(self.weights)
        if not isinstance(self.input, InputSpec) or not isinstance(self.weights, WeightsSpec):
            raise ModelFileError('model card input and weights: must be objects')
        _check_output(self.output)
        _check_limits(self.limits)
        _check_wiring(self.wiring)
        _check_topics(self.topics)
        _check_training(self.training)
        _check_ood(self.ood, config)
        _object('metrics', self.metrics)
        _flag('untrained', self.untrained)
        _text('description', self.description)
        _text('created_utc', self.created_utc)
        if self.card_sha256 != '' and not (isinstance(self.card_sha256, str)
                                           and _HEX64.fullmatch(self.card_sha256)):
            _fail('card_sha256', self.card_sha256, 'must be 64 lowercase hex digits')
        spec = self.input
        if (config.image_height, config.image_width) != (spec.image_height, spec.image_width):
            raise ModelFileError(f'model card policy image size {config.image_height}x'
                                 f'{config.image_width} disagrees with input spec '
                                 f'{spec.image_height}x{spec.image_width}')
        if config.imu_size != spec.imu_size:
            raise ModelFileError(f'model card policy.imu_size={config.imu_size} disagrees with '
                                 f'input.imu_size={spec.imu_size}')
        if config.image_channels != 3:
            _fail('policy.image_channels', config.image_channels,
                  "must be 3: input.image_encoding 'rgb8' gives 3 channels")

    def to_dict(self):
        d = dataclasses.asdict(self)
        d['weights'] = self.weights.to_dict()
        d['input'] = self.input.to_dict()
        if not d['ood']:
            del d['ood']   # optional: a card without statistics keeps the layout (and hash) it had
        return d

    @classmethod
    def from_dict(cls, d):
        """Validate a parsed card (every section, then ``card_sha256``) and build it."""
        return _card_from_data(d)


def _check_format(fmt, version):
    if fmt != FORMAT:
        _fail('format', fmt, f'expected {FORMAT!r}')
    if version == 1:
        raise ModelFileError(
            'model card format_version=1: written before the card carried card_sha256 (its sha256 '
            'covered only the weights, so its configuration cannot be verified). Upgrade it once '
            'with `python -m liquid_controller.runtime.model_file upgrade PATH` (or '
            'liquid_controller.runtime.model_file.upgrade_model_file), or save the model again')
    if isinstance(version, bool) or version != FORMAT_VERSION:
        _fail('format_version', version, f'this reader supports format_version {FORMAT_VERSION}')


_CARD_KEYS = tuple(f.name for f in dataclasses.fields(ModelCard))
_OPTIONAL_CARD_KEYS = ('ood',)


def _check_ood(d, config):
    """The ``ood`` section: empty (no monitor) or OodStatistics whose size fits the network."""
    _object('ood', d)
    if not d:
        return
    from liquid_controller.runtime.ood import OodStatistics
    try:
        stats = OodStatistics.from_dict(d)
    except InputError as exc:
        _fail(exc.name, exc.value, exc.reason)
    if stats.source == 'neurons':
        size = {'cfc': config.units, 'ltc': config.units, 'lstm': 2 * config.lstm_hidden}.get(config.core, 0)
        if stats.dim != size:
            _fail('ood.mean', stats.dim, f'the {config.core} core has {size} state values')
    elif stats.dim != config.perception_size:   # 'features': checked here, not at the first step
        _fail('ood.mean', stats.dim, f'the {config.core} core hands out {config.perception_size} '
                                     'perception features')


def _card_from_data(d, verify_hash=True):
    if not isinstance(d, dict):
        raise ModelFileError(f'model card must be a JSON object, got {type(d).__name__}')
    # format first: an unrelated JSON file or an old card gets that message, not a list of keys
    _check_format(d.get('format'), d.get('format_version'))
    _check_keys(d, _CARD_KEYS, '', required=tuple(k for k in _CARD_KEYS if k not in _OPTIONAL_CARD_KEYS))
    try:
        card = ModelCard(**d)
    except TypeError as exc:  # pragma: no cover - every key is checked above
        raise ModelFileError(f'malformed model card: {exc}') from exc
    if verify_hash:
        if not _HEX64.fullmatch(card.card_sha256):
            _fail('card_sha256', card.card_sha256, 'must be 64 lowercase hex digits')
        digest = card_digest(d)
        if digest != card.card_sha256:
            raise ModelFileError(
                f'model card card_sha256 {card.card_sha256} does not match its contents ({digest}): '
                'the card was edited or corrupted after it was saved. To change a model, save it '
                'again (save_model); only metrics may be edited in place')
    return card


def card_digest(card_dict):
    """sha256 (hex) of the card's canonical JSON without ``metrics`` and ``card_sha256``.

    ``card_dict`` is the card as parsed from JSON (or ``ModelCard.to_dict()`` passed through JSON):
    keys sorted, no whitespace, ASCII escapes, so the digest depends on the values only.
    """
    covered = {k: v for k, v in card_dict.items() if k not in UNHASHED_KEYS}
    text = json.dumps(covered, sort_keys=True, separators=(',', ':'), ensure_ascii=True)
    return hashlib.sha256(text.encode('ascii')).hexdigest()


@dataclass
class LoadedModel:
    """A policy rebuilt from its card with verified weights, ready for inference (eval mode).

    backend 'torch': ``policy`` is a DrivingPolicy, ``weights_path`` the safetensors file.
    backend 'onnx' (runtime/onnx_backend.py): ``policy`` is an OnnxPolicy, ``weights_path`` the graph.
    """
    policy: object
    card: ModelCard
    json_path: Path
    weights_path: Path
    backend: str = 'torch'

    @property
    def image_size(self):
        return (self.card.input.image_height, self.card.input.image_width)


def sha256_file(path):
    """Hex sha256 of a file's bytes."""
    h = hashlib.sha256()
    with open(path, 'rb') as f:
        for chunk in iter(lambda: f.read(1 << 20), b''):
            h.update(chunk)
    return h.hexdigest()


def resolve_model_paths(name_or_path, models_dir=None):
    """Map a model name or a path (to the .json, the .safetensors or without suffix) to the card path.

    An ONNX export (its folder, its ``NAME.onnx.json`` or ``NAME.onnx``) means the model card copied
    into it. A path with a folder is taken as it is. A bare name (no folder; ``cfc``, ``cfc.json``) that is not a
    file here is looked up, first match wins, in ``./NAME.json``, ``./models/NAME.json``, then the
    package's ``models/`` and ``models/baselines/``; when none exists, ModelFileError lists every place
    looked. With ``models_dir`` given, a bare name means ``models_dir/NAME.json`` (not searched).
    """
    s = str(name_or_path)
    if not s:
        raise ModelFileError('model path is empty: set the `model` parameter to a model name or path')
    p = Path(s).expanduser()
    if p.is_dir() or p.name.endswith('.onnx.json') or p.suffix == '.onnx':
        # an ONNX export (runtime/onnx_backend.py): the model card copied into it
        from liquid_controller.runtime.onnx_backend import read_export_card, resolve_export_card
        return read_export_card(resolve_export_card(p)).model_card_path
    json_path = p.with_suffix('.json') if p.suffix in ('', '.safetensors') else \
        (p if p.suffix == '.json' else Path(str(p) + '.json'))
    if p.suffix not in ('', '.json', '.safetensors') and p.with_suffix('.json').exists():
        json_path = p.with_suffix('.json')        # the older naming rule (suffix replaced), if on disk
    if p.parent != Path('.') or json_path.exists():
        return json_path
    if models_dir is not None:
        return Path(models_dir) / json_path.name
    from liquid_controller.paths import models_dir as default_models_dir
    shipped = Path(default_models_dir())
    candidates = list(dict.fromkeys([json_path, Path('models') / json_path.name,
                                     shipped / json_path.name, shipped / 'baselines' / json_path.name]))
    for c in candidates:
        if c.is_file():
            return c
    raise ModelFileError(f'model {s!r} not found; looked in: ' + ', '.join(str(c) for c in candidates))


# -------------------------------------------------------------------------------------------------
# Writing
# -------------------------------------------------------------------------------------------------
def _write_card(json_path, card):
    """Set ``card.card_sha256`` and write the card atomically. The text is validated exactly as a
    reader will (hash included) before it replaces anything: no writer can produce a card that
    load_model refuses."""
    card.card_sha256 = ''
    card.card_sha256 = card_digest(json.loads(json.dumps(card.to_dict())))
    text = json.dumps(card.to_dict(), indent=2, sort_keys=False) + '\n'
    _card_from_data(json.loads(text))
    _atomic_write(json_path, text.encode())


def _atomic_write(path, data):
    """Write ``data`` (bytes) to ``path`` via a temporary file in the same folder and a rename, so a
    reader never sees half a file."""
    tmp = path.with_name(path.name + '.tmp')
    tmp.write_bytes(data)
    os.replace(tmp, path)


def save_model(policy, path, *, name=None, untrained=False, description='', nominal_dt=1.0 / 30.0,
               input_spec=None, training=None, metrics=None, topics=None, ood=None):
    """Write ``policy`` (a DrivingPolicy) to ``path`` (.json card + .safetensors weights).

    ``ood``: the OOD monitor's statistics (``OodStatistics.to_dict()``), or None for none.

    Returns the written :class:`ModelCard`. ``path`` may be given with or without a suffix. The card
    is checked exactly as a reader checks it: a value outside the card's ranges (module docstring)
    or a ``training`` key outside ``TRAINING_CHECKS`` raises ModelFileError and writes nothing.
    """
    from safetensors.torch import save as safetensors_bytes
    json_path = Path(path)
    json_path = json_path.with_suffix('.json') if json_path.suffix in ('', '.json', '.safetensors') \
        else Path(str(json_path) + '.json')
    weights_path = json_path.with_suffix('.safetensors')
    config = policy.config
    n_imu = int(config.imu_size)
    # safetensors refuses shared or non-contiguous storage: store independent contiguous copies.
    tensors = {k: v.detach().to('cpu').contiguous().clone() for k, v in policy.state_dict().items()}
    # Serialised in memory and written only after the card built from it passed its checks, so a
    # refused card leaves no orphan weights file behind.
    blob = safetensors_bytes(tensors, metadata={'format': FORMAT, 'name': name or json_path.stem})
    try:
        spec = input_spec or InputSpec(
            image_height=int(config.image_height), image_width=int(config.image_width),
            imu_size=n_imu,
            imu_features=list(IMU_FEATURES[:n_imu]) if n_imu <= 6 else [f'imu_{i}' for i in range(n_imu)],
            imu_mean=[0.0] * n_imu, imu_std=[1.0] * n_imu)
        card = ModelCard(
            name=name or json_path.stem,
            policy=config.to_dict(),
            weights=WeightsSpec(file=weights_path.name, sha256=hashlib.sha256(blob).hexdigest(),
                                tensors={k: {'shape': list(v.shape),
                                             'dtype': str(v.dtype).replace('torch.', '')}
                                         for k, v in tensors.items()}),
            input=spec,
            untrained=bool(untrained),
            description=(UNTRAINED_WARNING + ' ' + description).strip() if untrained else description,
            nominal_dt=float(nominal_dt),
            output={'command': ['linear_x_m_s', 'angular_z_rad_s'],
                    'scaling': 'tanh(raw) * [v_max, w_max]',
                    'v_max': float(config.v_max),
                    'w_max': float(config.w_max),
                    'aux': ['lane_offset_m', 'heading_error_rad']},
            limits={'v_max': float(config.v_max),
                    'w_max': float(config.w_max),
                    'barrier_param_range': list(config.barrier_param_range)},
            wiring={'core': str(config.core), 'units': int(config.units),
                    'neuron_groups': _neuron_group_lists(policy)},
            topics=dict(topics or DEFAULT_TOPICS),
            training=dict(training if training else ({'untrained': True} if untrained else {})),
            metrics=dict(metrics or {}),
            created_utc=time.strftime('%Y-%m-%dT%H:%M:%SZ', time.gmtime()),
            ood=dict(ood or {}),
        )
    except ModelFileError as exc:
        raise ModelFileError(f'{json_path}: refusing to save: {exc}') from exc
    json_path.parent.mkdir(parents=True, exist_ok=True)
    _atomic_write(weights_path, blob)
    _write_card(json_path, card)
    return card


def create_random_model(path, config=None, *, name=None, seed=None):
    """Create a model file with random (untrained) weights; the card says so in ``untrained`` and
    ``description``. For tests and for bringing up the node before a trained model exists."""
    import torch
    dp = _network_module()
    config = config if config is not None else dp.PolicyConfig()
    torch.manual_seed(int(seed if seed is not None else getattr(config, 'seed', 0)))
    policy = dp.DrivingPolicy(config)
    return save_model(policy, path, name=name, untrained=True,
                      training={'untrained': True, 'episodes': 0, 'frames': 0})


def upgrade_model_file(path, models_dir=None):
    """Rewrite a format_version 1 card as the current format (adds ``card_sha256``).

    The old card must pass every check of the current format and the model must load (weights
    sha256, tensor list, network fit): the upgrade vouches for what the card says, so it only runs
    on a consistent model. The weights file is not touched. A card already in the current format is
    verified and returned unchanged. Returns the :class:`ModelCard`.
    """
    json_path = resolve_model_paths(path, models_dir)
    data = _read_json(json_path)
    if not (isinstance(data, dict) and data.get('format_version') == 1):
        return read_card(json_path)
    data = {**data, 'format_version': FORMAT_VERSION, 'card_sha256': ''}
    try:
        card = _card_from_data(data, verify_hash=False)
    except ModelFileError as exc:
        raise ModelFileError(f'{json_path}: {exc}') from exc
    _load_checked(json_path, card)
    _write_card(json_path, card)
    return card


def set_ood_statistics(path, ood):
    """Store (or, with ``ood`` None, remove) the OOD monitor's statistics in a saved model's card.

    The model must load and check fully first (the new ``card_sha256`` vouches for the whole card);
    the weights file is not touched. Returns the new :class:`ModelCard`.
    """
    json_path = resolve_model_paths(path)
    card = read_card(json_path)
    _load_checked(json_path, card)
    card = _card_from_data({**card.to_dict(), 'ood': dict(ood or {}), 'card_sha256': ''}, verify_hash=False)
    _write_card(json_path, card)
    return card


# -------------------------------------------------------------------------------------------------
# Reading
# -------------------------------------------------------------------------------------------------
def _no_duplicate_keys(pairs):
    d = {}
    for key, value in pairs:
        if key in d:
            raise ModelFileError(f'model card: key {key!r} appears twice in one object')
        d[key] = value
    return d


def _read_json(json_path):
    if not json_path.is_file():
        raise ModelFileError(f'model card not found: {json_path}')
    size = json_path.stat().st_size
    if size > MAX_CARD_BYTES:
        raise ModelFileError(f'model card {json_path} is {size} bytes; a card is at most '
                             f'{MAX_CARD_BYTES} bytes')
    try:
        return json.loads(json_path.read_text(), object_pairs_hook=_no_duplicate_keys)
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise ModelFileError(f'model card {json_path} is not valid JSON: {exc}') from exc
    except ModelFileError as exc:
        raise ModelFileError(f'{json_path}: {exc}') from exc


def read_card(path):
    """Read and validate only the card (every section and ``card_sha256``; no weights read, no torch
    module built)."""
    json_path = resolve_model_paths(path)
    data = _read_json(json_path)
    try:
        return _card_from_data(data)
    except ModelFileError as exc:
        raise ModelFileError(f'{json_path}: {exc}') from exc


def load_model(path, *, expected_image_size=None, available_topics=None, models_dir=None):
    """Load a model file: validate the card, the weights file (sha256, tensor names and shapes), rebuild
    the network from the card alone and load the weights into it (strict).

    ``expected_image_size`` (H, W): the configured input size, checked against the card.
    ``available_topics``: topic keys the caller provides (e.g. {'image', 'imu'}); every topic the card
    requires must be among them. Raises ModelFileError on any problem; everything the card says is
    checked before tensors are read or the network is built (module docstring).
    """
    json_path = resolve_model_paths(path, models_dir)
    card = read_card(json_path)
    return _load_checked(json_path, card, expected_image_size, available_topics)


def _load_checked(json_path, card, expected_image_size=None, available_topics=None):
    """The part of load_model after the card passed its checks."""
    weights_path = json_path.parent / card.weights.file
    if not weights_path.is_file():
        raise ModelFileError(f'weights file not found: {weights_path} (named by {json_path})')
    digest = sha256_file(weights_path)
    if digest != card.weights.sha256:
        raise ModelFileError(f'{weights_path}: sha256 {digest} does not match the card '
                             f'({card.weights.sha256}): the weights were changed or corrupted')
    check_card_for_caller(json_path, card, expected_image_size, available_topics)
    _check_tensors_against_card(_read_header(weights_path), card, weights_path)
    import torch  # the torch backend: this builds a torch network (runtime/onnx_backend.py does not)
    dp = _network_module()
    config = dp.PolicyConfig.from_dict(card.policy)     # validated with the card
    expected = _network_shapes(dp, config, json_path)
    listed = {k: tuple(v['shape']) for k, v in card.weights.tensors.items()}
    if expected != listed:
        missing = sorted(set(expected) - set(listed))
        extra = sorted(set(listed) - set(expected))
        wrong = sorted(k for k in set(expected) & set(listed) if expected[k] != listed[k])
        raise ModelFileError(f'{weights_path}: tensors do not fit the network built from the card: '
                             f'missing {missing[:5]}, unexpected {extra[:5]}, wrong shape '
                             f'{[(k, listed[k], expected[k]) for k in wrong[:5]]}')
    # Only now is anything sized by the card allocated: the tensors (their shapes match the card's
    # list, bounded by MAX_PARAMETERS) and the network (the same shapes).
    tensors = _read_tensors(weights_path)
    for k, v in tensors.items():
        if v.is_floating_point() and not torch.isfinite(v).all():
            raise ModelFileError(f'{weights_path}: tensor {k!r} contains NaN or Inf')
    try:
        policy = dp.DrivingPolicy(config)
    except Exception as exc:
        raise ModelFileError(f'{json_path}: cannot build the policy from the card: {exc}') from exc
    try:
        policy.load_state_dict(tensors, strict=True)
    except Exception as exc:
        raise ModelFileError(f'{weights_path}: cannot load weights: {exc}') from exc
    policy.eval()
    return LoadedModel(policy=policy, card=card, json_path=json_path, weights_path=weights_path)


def check_card_for_caller(json_path, card, expected_image_size=None, available_topics=None):
    """The caller's configuration against the card (both backends): image size (H, W) and the input
    topics the card requires. Raises ModelFileError naming the card."""
    if expected_image_size is not None:
        want = tuple(int(v) for v in expected_image_size)
        have = (card.input.image_height, card.input.image_width)
        if want != have:
            raise ModelFileError(f'{json_path}: model expects images of {have[0]}x{have[1]} (HxW) but '
                                 f'the configuration says {want[0]}x{want[1]}')
    if available_topics is not None:
        missing = sorted(set(card.topics) - set(available_topics))
        if missing:
            raise ModelFileError(f'{json_path}: model needs input topic(s) {missing} '
                                 f'({[card.topics[k] for k in missing]}) that are not configured')


def _network_shapes(dp, config, json_path):
    """Tensor name -> shape of the network ``config`` describes, built on the meta device: parameters
    there have shapes but no storage, so a configuration that asks for a huge network costs nothing
    here (the liquid wiring's small masks are still drawn on the CPU)."""
    import torch
    try:
        with torch.device('meta'):
            policy = dp.DrivingPolicy(config)
    except Exception as exc:
        raise ModelFileError(f'{json_path}: cannot build the policy from the card: {exc}') from exc
    return {k: tuple(v.shape) for k, v in policy.state_dict().items()}


def _read_header(weights_path):
    """Tensor name -> (shape, torch dtype name) from the safetensors header; no tensor data is read."""
    from safetensors import SafetensorError, safe_open
    try:
        # framework 'numpy': reading a header must not need torch (the edge runtime checks weights too)
        with safe_open(str(weights_path), framework='numpy') as f:
            header = {}
            for k in f.keys():
                s = f.get_slice(k)
                header[k] = (list(s.get_shape()), _SAFETENSORS_DTYPES.get(s.get_dtype(), s.get_dtype()))
            return header
    except (SafetensorError, OSError, ValueError, RuntimeError) as exc:
        raise ModelFileError(f'{weights_path}: not a valid safetensors file: {exc}') from exc


def _read_tensors(weights_path):
    from safetensors import SafetensorError
    from safetensors.torch import load_file
    try:
        return load_file(str(weights_path), device='cpu')
    except (SafetensorError, OSError, ValueError, RuntimeError) as exc:
        raise ModelFileError(f'{weights_path}: not a valid safetensors file: {exc}') from exc


def _check_tensors_against_card(header, card, weights_path):
    listed = card.weights.tensors
    if set(listed) != set(header):
        raise ModelFileError(f'{weights_path}: tensor names differ from the card: only in card '
                             f'{sorted(set(listed) - set(header))[:5]}, only in file '
                             f'{sorted(set(header) - set(listed))[:5]}')
    for k, (shape, dtype) in header.items():
        if list(listed[k]['shape']) != shape:
            raise ModelFileError(f'{weights_path}: tensor {k!r} has shape {shape}, card says '
                                 f'{listed[k]["shape"]}')
        if listed[k]['dtype'] != dtype:
            raise ModelFileError(f'{weights_path}: tensor {k!r} has dtype {dtype}, card says '
                                 f'{listed[k]["dtype"]}')


def _neuron_group_lists(policy):
    try:
        groups = policy.neuron_groups()
    except Exception:  # a baseline without neurons (cnn) has no groups
        return {}
    return {str(k): [int(i) for i in np.asarray(v).ravel()] for k, v in dict(groups).items()}


def list_models(models_dir=None):
    """Cards of every model in ``models_dir`` (default: the package's models/), unreadable ones skipped
    and reported as (path, error) in the second list."""
    from liquid_controller.paths import models_dir as default_models_dir
    folder = Path(models_dir or default_models_dir())
    cards, errors = [], []
    for p in sorted(folder.glob('*.json')):
        try:
            cards.append((p, read_card(p)))
        except ModelFileError as exc:
            errors.append((p, str(exc)))
    return cards, errors


def best_available_model(models_dir=None):
    """The best shipped model: trained beats untrained; among trained ones the card's
    ``metrics['closed_loop_laps']`` (higher), then ``metrics['val_loss']`` (lower), then newest.
    Returns (json_path, card) or None when the folder has no model."""
    cards, _ = list_models(models_dir)
    if not cards:
        return None

    def key(item):
        _, card = item
        laps = card.metrics.get('closed_loop_laps')
        loss = card.metrics.get('val_loss')
        return (not card.untrained,
                float(laps) if isinstance(laps, (int, float)) else -1.0,
                -float(loss) if isinstance(loss, (int, float)) else -math.inf,
                card.created_utc)
    return max(cards, key=key)


def main(argv=None):
    """``python -m liquid_controller.runtime.model_file upgrade PATH...`` (format 1 -> current) and
    ``... check PATH...`` (load each model as the node would). Exit code 1 when any file fails."""
    parser = argparse.ArgumentParser(prog='python -m liquid_controller.runtime.model_file',
                                     description=main.__doc__)
    parser.add_argument('action', choices=('upgrade', 'check'))
    parser.add_argument('paths', nargs='+', help='model cards (.json), weights or names')
    args = parser.parse_args(argv)
    failed = 0
    for p in args.paths:
        try:
            if args.action == 'upgrade':
                card = upgrade_model_file(p)
            else:
                card = load_model(p).card
            print(f'{p}: ok ({card.name}, format_version {card.format_version}, '
                  f'card_sha256 {card.card_sha256})')
        except ModelFileError as exc:
            failed += 1
            print(f'{p}: {exc}', file=sys.stderr)
    return 1 if failed else 0


if __name__ == '__main__':
    sys.exit(main())
