"""Model files: ``NAME.safetensors`` (weights) plus ``NAME.json`` (the model card).

The card alone is enough to rebuild the network: it stores the policy configuration
(``PolicyConfig.to_dict()``), the input encoding and normalisation, the nominal time step, output scaling
and limits, a summary of the training data, metrics, and the sha256 plus name/shape/dtype of every
weight tensor. Loading never executes code: JSON for the card, safetensors for the tensors (no pickle).

A missing, corrupt or mismatched file raises :class:`~liquid_controller.errors.ModelFileError` with a
message that names the file and what is wrong, so the node's configure transition can fail cleanly.
"""
from __future__ import annotations

import dataclasses
import hashlib
import json
import math
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch

from liquid_controller.errors import ModelFileError

FORMAT = 'liquid_controller.model'
FORMAT_VERSION = 1
IMU_FEATURES = ('gyro_x', 'gyro_y', 'gyro_z', 'accel_x', 'accel_y', 'accel_z')
DEFAULT_TOPICS = {'image': 'camera/image_raw', 'imu': 'imu/data'}
UNTRAINED_WARNING = ('UNTRAINED: random weights. This model does not drive; it exists to bring up and '
                     'test the node before a trained model is available.')


def _policy_module():
    # Imported lazily: loading a card for inspection must not pay for (or fail on) torch modules.
    from liquid_controller.policy import driving_policy
    return driving_policy


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
        for name in ('image_height', 'image_width', 'imu_size'):
            value = getattr(self, name)
            if not isinstance(value, int) or isinstance(value, bool) or value <= 0:
                raise ModelFileError(f'model card input.{name}={value!r}: must be a positive integer')
        if self.image_encoding != 'rgb8':
            raise ModelFileError(f'model card input.image_encoding={self.image_encoding!r}: only rgb8')
        if self.image_normalisation != 'divide_by_255':
            raise ModelFileError(
                f'model card input.image_normalisation={self.image_normalisation!r}: only divide_by_255')
        for name in ('imu_mean', 'imu_std', 'imu_features'):
            value = getattr(self, name)
            if not isinstance(value, (list, tuple)) or len(value) != self.imu_size:
                raise ModelFileError(
                    f'model card input.{name}={value!r}: must be a list of imu_size={self.imu_size}')
        for v in list(self.imu_mean) + list(self.imu_std):
            if not isinstance(v, (int, float)) or not math.isfinite(v):
                raise ModelFileError(f'model card input imu normalisation value {v!r} is not finite')
        if any(s <= 0 for s in self.imu_std):
            raise ModelFileError(f'model card input.imu_std={self.imu_std!r}: must be > 0')
        self.imu_mean = [float(v) for v in self.imu_mean]
        self.imu_std = [float(v) for v in self.imu_std]
        self.imu_features = [str(v) for v in self.imu_features]

    def to_dict(self):
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, d):
        return cls(**_known_keys(cls, d, 'input'))


@dataclass
class WeightsSpec:
    """The weights file named by the card and what it must contain."""
    file: str
    sha256: str
    tensors: dict  # name -> {'shape': [...], 'dtype': 'float32'}

    def __post_init__(self):
        if not isinstance(self.file, str) or '/' in self.file or '\\' in self.file or not self.file:
            raise ModelFileError(f'model card weights.file={self.file!r}: must be a bare file name')
        if not isinstance(self.sha256, str) or len(self.sha256) != 64:
            raise ModelFileError(f'model card weights.sha256={self.sha256!r}: must be 64 hex digits')
        if not isinstance(self.tensors, dict) or not self.tensors:
            raise ModelFileError('model card weights.tensors: must list every tensor (name -> shape)')

    def to_dict(self):
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, d):
        return cls(**_known_keys(cls, d, 'weights'))


@dataclass
class ModelCard:
    """Everything needed to rebuild and trust a model, stored next to its weights as JSON."""
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
    metrics: dict = field(default_factory=dict)   # offline / closed-loop metrics
    created_utc: str = ''
    format: str = FORMAT
    format_version: int = FORMAT_VERSION

    def __post_init__(self):
        if self.format != FORMAT:
            raise ModelFileError(f'model card format={self.format!r}: expected {FORMAT!r}')
        if not isinstance(self.format_version, int) or not 1 <= self.format_version <= FORMAT_VERSION:
            raise ModelFileError(
                f'model card format_version={self.format_version!r}: this reader supports 1..'
                f'{FORMAT_VERSION}')
        if not isinstance(self.name, str) or not self.name:
            raise ModelFileError(f'model card name={self.name!r}: must be a non-empty string')
        if not isinstance(self.policy, dict) or not self.policy:
            raise ModelFileError('model card policy: must be the PolicyConfig dictionary')
        if not isinstance(self.nominal_dt, (int, float)) or not 0 < self.nominal_dt <= 1.0:
            raise ModelFileError(f'model card nominal_dt={self.nominal_dt!r}: must be in (0, 1] s')
        if isinstance(self.weights, dict):
            self.weights = WeightsSpec.from_dict(self.weights)
        if isinstance(self.input, dict):
            self.input = InputSpec.from_dict(self.input)
        for name in ('output', 'limits', 'wiring', 'topics', 'training', 'metrics'):
            if not isinstance(getattr(self, name), dict):
                raise ModelFileError(f'model card {name}={getattr(self, name)!r}: must be an object')
        self.untrained = bool(self.untrained)

    def to_dict(self):
        d = dataclasses.asdict(self)
        d['weights'] = self.weights.to_dict()
        d['input'] = self.input.to_dict()
        return d

    @classmethod
    def from_dict(cls, d):
        if not isinstance(d, dict):
            raise ModelFileError(f'model card must be a JSON object, got {type(d).__name__}')
        return cls(**_known_keys(cls, d, 'card', required=('name', 'policy', 'weights')))


@dataclass
class LoadedModel:
    """A policy rebuilt from its card with verified weights, ready for inference (eval mode)."""
    policy: object        # DrivingPolicy
    card: ModelCard
    json_path: Path
    weights_path: Path

    @property
    def image_size(self):
        return (self.card.input.image_height, self.card.input.image_width)


def _known_keys(cls, d, what, required=()):
    if not isinstance(d, dict):
        raise ModelFileError(f'model card {what}: expected an object, got {type(d).__name__}')
    names = {f.name for f in dataclasses.fields(cls)}
    missing = [k for k in required if k not in d]
    if missing:
        raise ModelFileError(f'model card {what}: missing key(s) {missing}')
    # Unknown keys are ignored on purpose: a newer writer may add fields an older reader can skip.
    try:
        return {k: v for k, v in d.items() if k in names}
    except Exception as exc:  # pragma: no cover - defensive
        raise ModelFileError(f'model card {what}: {exc}') from exc


def sha256_file(path):
    """Hex sha256 of a file's bytes."""
    h = hashlib.sha256()
    with open(path, 'rb') as f:
        for chunk in iter(lambda: f.read(1 << 20), b''):
            h.update(chunk)
    return h.hexdigest()


def resolve_model_paths(name_or_path, models_dir=None):
    """Map a model name or a path (to the .json, the .safetensors or without suffix) to the card path.

    A bare name (no folder, no suffix) is looked up in ``models_dir`` (default: the package's models/).
    """
    s = str(name_or_path)
    if not s:
        raise ModelFileError('model path is empty: set the `model` parameter to a model name or path')
    p = Path(s).expanduser()
    if p.suffix == '.safetensors':
        p = p.with_suffix('.json')
    elif p.suffix != '.json':
        if p.parent == Path('.') and not p.exists() and not p.with_suffix('.json').exists():
            from liquid_controller.paths import models_dir as default_models_dir
            p = Path(models_dir or default_models_dir()) / s
        p = p.with_suffix('.json') if p.suffix != '.json' else p
    return p


def save_model(policy, path, *, name=None, untrained=False, description='', nominal_dt=1.0 / 30.0,
               input_spec=None, training=None, metrics=None, topics=None):
    """Write ``policy`` (a DrivingPolicy) to ``path`` (.json card + .safetensors weights).

    Returns the written :class:`ModelCard`. ``path`` may be given with or without a suffix.
    """
    from safetensors.torch import save_file
    json_path = Path(path)
    json_path = json_path.with_suffix('.json') if json_path.suffix in ('', '.json', '.safetensors') \
        else Path(str(json_path) + '.json')
    weights_path = json_path.with_suffix('.safetensors')
    json_path.parent.mkdir(parents=True, exist_ok=True)
    config = policy.config
    # safetensors refuses shared or non-contiguous storage: store independent contiguous copies.
    tensors = {k: v.detach().to('cpu').contiguous().clone() for k, v in policy.state_dict().items()}
    save_file(tensors, str(weights_path), metadata={'format': FORMAT, 'name': name or json_path.stem})
    spec = input_spec or InputSpec(image_height=int(config.image_height),
                                   image_width=int(config.image_width),
                                   imu_size=int(config.imu_size),
                                   imu_features=list(IMU_FEATURES[:int(config.imu_size)])
                                   if int(config.imu_size) <= 6 else
                                   [f'imu_{i}' for i in range(int(config.imu_size))],
                                   imu_mean=[0.0] * int(config.imu_size),
                                   imu_std=[1.0] * int(config.imu_size))
    groups = _neuron_groups(policy)
    card = ModelCard(
        name=name or json_path.stem,
        policy=config.to_dict(),
        weights=WeightsSpec(file=weights_path.name, sha256=sha256_file(weights_path),
                            tensors={k: {'shape': list(v.shape), 'dtype': str(v.dtype).replace('torch.', '')}
                                     for k, v in tensors.items()}),
        input=spec,
        untrained=untrained,
        description=(UNTRAINED_WARNING + ' ' + description).strip() if untrained else description,
        nominal_dt=float(nominal_dt),
        output={'command': ['linear_x_m_s', 'angular_z_rad_s'],
                'scaling': 'tanh(raw) * [v_max, w_max]',
                'v_max': float(getattr(config, 'v_max', 0.0)),
                'w_max': float(getattr(config, 'w_max', 0.0)),
                'aux': ['lane_offset_m', 'heading_error_rad']},
        limits={'v_max': float(getattr(config, 'v_max', 0.0)),
                'w_max': float(getattr(config, 'w_max', 0.0)),
                'barrier_param_range': list(getattr(config, 'barrier_param_range', []) or [])},
        wiring={'core': str(getattr(config, 'core', '')), 'units': int(getattr(config, 'units', 0)),
                'neuron_groups': groups},
        topics=dict(topics or DEFAULT_TOPICS),
        training=dict(training if training else ({'untrained': True} if untrained else {})),
        metrics=dict(metrics or {}),
        created_utc=time.strftime('%Y-%m-%dT%H:%M:%SZ', time.gmtime()),
    )
    json_path.write_text(json.dumps(card.to_dict(), indent=2, sort_keys=False) + '\n')
    return card


def create_random_model(path, config=None, *, name=None, seed=None):
    """Create a model file with random (untrained) weights; the card says so in ``untrained`` and
    ``description``. For tests and for bringing up the node before a trained model exists."""
    dp = _policy_module()
    config = config if config is not None else dp.PolicyConfig()
    torch.manual_seed(int(seed if seed is not None else getattr(config, 'seed', 0)))
    policy = dp.DrivingPolicy(config)
    return save_model(policy, path, name=name, untrained=True,
                      training={'untrained': True, 'episodes': 0, 'frames': 0})


def read_card(path):
    """Read and validate only the card (no weights, no torch modules built)."""
    json_path = resolve_model_paths(path)
    if not json_path.is_file():
        raise ModelFileError(f'model card not found: {json_path}')
    try:
        data = json.loads(json_path.read_text())
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise ModelFileError(f'model card {json_path} is not valid JSON: {exc}') from exc
    try:
        return ModelCard.from_dict(data)
    except ModelFileError as exc:
        raise ModelFileError(f'{json_path}: {exc}') from exc
    except TypeError as exc:
        raise ModelFileError(f'{json_path}: malformed card: {exc}') from exc


def load_model(path, *, expected_image_size=None, available_topics=None, models_dir=None):
    """Load a model file: validate the card, the weights file (sha256, tensor names and shapes), rebuild
    the network from the card alone and load the weights into it (strict).

    ``expected_image_size`` (H, W): the configured input size, checked against the card.
    ``available_topics``: topic keys the caller provides (e.g. {'image', 'imu'}); every topic the card
    requires must be among them. Raises ModelFileError on any problem.
    """
    json_path = resolve_model_paths(path, models_dir)
    card = read_card(json_path)
    weights_path = json_path.parent / card.weights.file
    if not weights_path.is_file():
        raise ModelFileError(f'weights file not found: {weights_path} (named by {json_path})')
    digest = sha256_file(weights_path)
    if digest != card.weights.sha256:
        raise ModelFileError(f'{weights_path}: sha256 {digest} does not match the card '
                             f'({card.weights.sha256}): the weights were changed or corrupted')
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
    tensors = _read_tensors(weights_path)
    _check_tensors_against_card(tensors, card, weights_path)
    dp = _policy_module()
    try:
        config = dp.PolicyConfig.from_dict(card.policy)
    except Exception as exc:
        raise ModelFileError(f'{json_path}: policy configuration rejected: {exc}') from exc
    if (int(config.image_height), int(config.image_width)) != (card.input.image_height,
                                                               card.input.image_width):
        raise ModelFileError(f'{json_path}: policy image size {config.image_height}x'
                             f'{config.image_width} disagrees with input spec '
                             f'{card.input.image_height}x{card.input.image_width}')
    if int(config.imu_size) != card.input.imu_size:
        raise ModelFileError(f'{json_path}: policy imu_size {config.imu_size} disagrees with input '
                             f'spec imu_size {card.input.imu_size}')
    try:
        policy = dp.DrivingPolicy(config)
    except Exception as exc:
        raise ModelFileError(f'{json_path}: cannot build the policy from the card: {exc}') from exc
    expected = {k: tuple(v.shape) for k, v in policy.state_dict().items()}
    got = {k: tuple(v.shape) for k, v in tensors.items()}
    if expected != got:
        missing = sorted(set(expected) - set(got))
        extra = sorted(set(got) - set(expected))
        wrong = sorted(k for k in set(expected) & set(got) if expected[k] != got[k])
        raise ModelFileError(f'{weights_path}: tensors do not fit the network built from the card: '
                             f'missing {missing[:5]}, unexpected {extra[:5]}, wrong shape '
                             f'{[(k, got[k], expected[k]) for k in wrong[:5]]}')
    for k, v in tensors.items():
        if v.is_floating_point() and not torch.isfinite(v).all():
            raise ModelFileError(f'{weights_path}: tensor {k!r} contains NaN or Inf')
    try:
        policy.load_state_dict(tensors, strict=True)
    except Exception as exc:
        raise ModelFileError(f'{weights_path}: cannot load weights: {exc}') from exc
    policy.eval()
    return LoadedModel(policy=policy, card=card, json_path=json_path, weights_path=weights_path)


def _read_tensors(weights_path):
    from safetensors import SafetensorError
    from safetensors.torch import load_file
    try:
        return load_file(str(weights_path), device='cpu')
    except (SafetensorError, OSError, ValueError, RuntimeError) as exc:
        raise ModelFileError(f'{weights_path}: not a valid safetensors file: {exc}') from exc


def _check_tensors_against_card(tensors, card, weights_path):
    listed = card.weights.tensors
    if set(listed) != set(tensors):
        raise ModelFileError(f'{weights_path}: tensor names differ from the card: only in card '
                             f'{sorted(set(listed) - set(tensors))[:5]}, only in file '
                             f'{sorted(set(tensors) - set(listed))[:5]}')
    for k, t in tensors.items():
        spec = listed[k]
        shape = list(spec.get('shape', [])) if isinstance(spec, dict) else None
        if shape != list(t.shape):
            raise ModelFileError(f'{weights_path}: tensor {k!r} has shape {list(t.shape)}, card says '
                                 f'{shape}')
        dtype = spec.get('dtype')
        if dtype is not None and dtype != str(t.dtype).replace('torch.', ''):
            raise ModelFileError(f'{weights_path}: tensor {k!r} has dtype {t.dtype}, card says {dtype}')


def _neuron_groups(policy):
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
