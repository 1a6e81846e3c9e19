"""Typed, validated training configuration (YAML on disk) with a to_dict/from_dict round trip.

A config file has these sections (all optional except ``policy.core``)::

    name: cfc                 # model name (the card's name unless --out says otherwise)
    policy: {core: cfc, units: 19, ...}        # PolicyConfig fields
    safety: {lane_half_width: 0.6, ...}        # SafetyConfig fields for the BarrierNet layer
    dataset: {camera_topic: camera/image_raw, ...}   # DatasetConfig fields (image size from policy)
    augment: {brightness: 0.2, ...}            # AugmentConfig fields
    train: {epochs: 30, batch_size: 16, ...}   # the fields of TrainConfig below

Sub-configs are validated by their own classes (PolicyConfig, SafetyConfig, DatasetConfig,
AugmentConfig), so an error names the field and the value wherever it is.
"""
from dataclasses import dataclass, field, fields
from pathlib import Path

from liquid_controller.data.augment import AugmentConfig
from liquid_controller.data.dataset import DatasetConfig
from liquid_controller.config_base import check_known_keys
from liquid_controller.errors import InputError
from liquid_controller.validation import check_bool, check_choice, check_int, check_number, check_numbers

DEVICES = ('auto', 'cpu', 'cuda')
LR_SCHEDULES = ('constant', 'cosine')
BARRIER_LANE_SOURCES = ('aux', 'truth', 'none')


def _policy_config_class():
    from liquid_controller.policy.driving_policy import PolicyConfig
    return PolicyConfig


def _safety_config_class():
    from liquid_controller.safety.config import SafetyConfig
    return SafetyConfig


@dataclass
class TrainConfig:
    """Everything a training run needs besides the bags. Validated in ``__post_init__``.

    Optimisation: ``seq_len`` frames per window (windows start every ``stride`` frames), truncated
    BPTT in chunks of ``tbptt_steps`` (one optimiser step per chunk, hidden state carried across the
    chunks of a window and detached between them), ``batch_size`` windows per batch, AdamW with
    ``lr`` / ``weight_decay``, gradient norm clipped to ``grad_clip``, ``lr_schedule`` constant or
    cosine over the planned steps. ``epochs`` passes over the training windows (each at most
    ``windows_per_epoch`` windows when > 0); ``max_steps`` > 0 stops after that many steps (one step =
    one batch of windows = ceil(seq_len / tbptt_steps) optimiser updates).
    Validation after every epoch runs over the validation windows (``seq_len`` frames, not overlapping),
    at most ``val_windows`` of them when > 0 (evenly spaced, the same every epoch).
    Early stopping after ``patience`` epochs without a validation improvement of ``min_delta``.

    Loss: squared error of the BarrierNet-filtered command against the recorded one, each component
    divided by its range (v_max, w_max) and weighted by ``command_weights``; plus ``reference_weight``
    times the same error of the unfiltered reference; plus ``aux_weight`` times the squared error of the
    lane offset / heading error predictions (divided by ``aux_scales``) where ground truth exists.
    ``use_barrier`` False trains on the reference command alone (an ablation).
    ``barrier_lane_source``: where the lane barrier gets lane offset and heading error in training:
    'aux' (the network's own predictions, as at run time), 'truth' (ground truth where present) or
    'none' (lane rows off).
    """

    name: str = 'model'
    policy: dict = field(default_factory=lambda: {'core': 'cfc'})
    safety: dict = field(default_factory=dict)
    dataset: DatasetConfig = field(default_factory=DatasetConfig)
    augment: AugmentConfig = field(default_factory=AugmentConfig)
    seq_len: int = 32
    stride: int = 8
    tbptt_steps: int = 16
    batch_size: int = 16
    epochs: int = 30
    max_steps: int = 0
    windows_per_epoch: int = 0
    val_windows: int = 0
    lr: float = 2e-3
    weight_decay: float = 1e-4
    lr_schedule: str = 'cosine'
    grad_clip: float = 1.0
    patience: int = 6
    min_delta: float = 1e-4
    val_fraction: float = 0.2
    max_dt: float = 0.2
    command_weights: tuple = (1.0, 1.0)
    reference_weight: float = 0.1
    aux_weight: float = 0.2
    aux_scales: tuple = (0.3, 0.3)
    use_barrier: bool = True
    barrier_lane_source: str = 'aux'
    seed: int = 0
    device: str = 'auto'
    num_threads: int = 0
    checkpoint_every: int = 200

    def __post_init__(self):
        if not isinstance(self.name, str) or not self.name or '/' in self.name:
            raise InputError('name', self.name, 'expected a non-empty name without /')
        if isinstance(self.dataset, dict):
            self.dataset = DatasetConfig.from_dict(self.dataset)
        if isinstance(self.augment, dict):
            self.augment = AugmentConfig.from_dict(self.augment)
        if not isinstance(self.dataset, DatasetConfig):
            raise InputError('dataset', self.dataset, 'expected a DatasetConfig or a mapping')
        if not isinstance(self.augment, AugmentConfig):
            raise InputError('augment', self.augment, 'expected an AugmentConfig or a mapping')
        if not isinstance(self.policy, dict):
            raise InputError('policy', self.policy, 'expected a mapping of PolicyConfig fields')
        if not isinstance(self.safety, dict):
            raise InputError('safety', self.safety, 'expected a mapping of SafetyConfig fields')
        pc = self.policy_config()          # validates the policy section
        self.safety_config()               # validates the safety section
        # the cached images must have the network's input size
        if (self.dataset.image_height, self.dataset.image_width) != (pc.image_height, pc.image_width):
            self.dataset = DatasetConfig.from_dict({**self.dataset.to_dict(),
                                                    'image_height': pc.image_height,
                                                    'image_width': pc.image_width})
        for name, low in (('seq_len', 1), ('stride', 1), ('tbptt_steps', 1), ('batch_size', 1),
                          ('epochs', 1), ('max_steps', 0), ('windows_per_epoch', 0), ('val_windows', 0),
                          ('patience', 1),
                          ('seed', 0), ('num_threads', 0), ('checkpoint_every', 1)):
            setattr(self, name, check_int(f'train.{name}', getattr(self, name), low))
        for name, low, high, low_open in (('lr', 0.0, 1.0, True), ('weight_decay', 0.0, 1.0, False),
                                          ('grad_clip', 0.0, 1e6, True), ('min_delta', 0.0, 1e6, False),
                                          ('max_dt', 0.0, 10.0, True), ('reference_weight', 0.0, 1e3, False),
                                          ('aux_weight', 0.0, 1e3, False)):
            setattr(self, name, check_number(f'train.{name}', getattr(self, name), low, high,
                                             low_open=low_open))
        self.val_fraction = check_number('train.val_fraction', self.val_fraction, 0.0, 1.0, high_open=True)
        for name in ('command_weights', 'aux_scales'):
            setattr(self, name, check_numbers(f'train.{name}', getattr(self, name), 2, 0.0, low_open=True))
        check_bool('train.use_barrier', self.use_barrier)
        for name, choices in (('device', DEVICES), ('lr_schedule', LR_SCHEDULES),
                              ('barrier_lane_source', BARRIER_LANE_SOURCES)):
            check_choice(f'train.{name}', getattr(self, name), choices)
        if self.tbptt_steps > self.seq_len:
            raise InputError('train.tbptt_steps', self.tbptt_steps, f'must be <= seq_len ({self.seq_len})')

    # -------------------------------------------------------------------------------- sub-configs
    def policy_config(self):
        """The PolicyConfig built from the ``policy`` section (InputError naming a bad field)."""
        try:
            return _policy_config_class().from_dict(dict(self.policy))
        except InputError:
            raise
        except (TypeError, ValueError) as exc:
            raise InputError('policy', self.policy, f'invalid PolicyConfig: {exc}') from None

    def safety_config(self):
        """The SafetyConfig of the BarrierNet layer. Limits and barrier parameters follow the policy
        (v_max, w_max, num_barrier_params, barrier_param_range) unless the section sets them."""
        pc = self.policy_config()
        base = {'v_min': min(0.0, pc.v_min), 'v_max': pc.v_max, 'w_max': pc.w_max,
                'num_barrier_params': pc.num_barrier_params,
                'barrier_param_range': tuple(pc.barrier_param_range)}
        data = {**base, **dict(self.safety)}
        try:
            return _safety_config_class().from_dict(data)
        except InputError as exc:
            raise InputError(f'safety.{exc.name}', exc.value, exc.reason) from None

    # ---------------------------------------------------------------------------- (de)serialising
    def to_dict(self):
        """Nested plain data in the YAML layout (see the module docstring)."""
        train = {}
        for f in fields(self):
            if f.name in ('name', 'policy', 'safety', 'dataset', 'augment'):
                continue
            value = getattr(self, f.name)
            train[f.name] = list(value) if isinstance(value, tuple) else value
        return {'name': self.name, 'policy': _plain(self.policy), 'safety': _plain(self.safety),
                'dataset': self.dataset.to_dict(), 'augment': self.augment.to_dict(), 'train': train}

    @classmethod
    def from_dict(cls, data):
        """Inverse of :meth:`to_dict`; unknown sections or keys raise InputError naming them."""
        if not isinstance(data, dict):
            raise InputError('config', type(data).__name__, 'expected a mapping')
        sections = {'name', 'policy', 'safety', 'dataset', 'augment', 'train'}
        unknown = set(data) - sections
        if unknown:
            raise InputError('config', sorted(unknown), f'unknown sections; expected {sorted(sections)}')
        train = data.get('train') or {}
        if not isinstance(train, dict):
            raise InputError('train', train, 'expected a mapping')
        check_known_keys(train, {f.name for f in fields(cls)} - sections, 'train')
        kwargs = dict(train)
        for key in ('name', 'policy', 'safety', 'dataset', 'augment'):
            if key in data and data[key] is not None:
                kwargs[key] = data[key]
        return cls(**kwargs)

    @classmethod
    def load(cls, path):
        """Read a YAML config file (safe loader)."""
        import yaml
        path = Path(path)
        try:
            data = yaml.safe_load(path.read_text())
        except OSError as exc:
            raise InputError('config', str(path), f'cannot read: {exc}') from None
        except yaml.YAMLError as exc:
            raise InputError('config', str(path), f'invalid YAML: {exc}') from None
        return cls.from_dict(data or {})

    def save(self, path):
        import yaml
        Path(path).write_text(yaml.safe_dump(self.to_dict(), sort_keys=False))


def _plain(value):
    """Tuples -> lists recursively (YAML/JSON friendly)."""
    if isinstance(value, dict):
        return {k: _plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_plain(v) for v in value]
    return value
