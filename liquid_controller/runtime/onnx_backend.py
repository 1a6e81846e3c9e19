"""The torch-free policy backend: an exported ONNX step graph run by ONNX Runtime.

An ONNX export (``liquid-controller export MODEL --format onnx --out DIR``) is a folder holding

    NAME.json, NAME.safetensors   copies of the model card and weights (the torch backend loads these)
    NAME.onnx                     the graph of the whole streaming step (policy/onnx_export.py)
    NAME.onnx.json                the export card (below)

The export card (``EXPORT_FORMAT``, version ``EXPORT_FORMAT_VERSION``) says which model card the graph
was made from (file name and that card's ``card_sha256``), the graph file and its sha256, the input /
output contract (names, shapes with ``batch`` free, dtypes, meaning), the hidden state (size, one name
per column, neuron groups), a summary of the network (core, liquid neurons, parameters) and the
export's own verification (largest difference to torch and what it was measured on).

Loading (:func:`load_onnx_model`) checks, before a session is built: every key of the export card
(an unknown or missing key is named), the graph's sha256, the model card (validated exactly as the
torch backend does, torch-free) and that its ``card_sha256`` is the one the export was made from, and
then that the session's inputs and outputs match the contract. Any problem is a ModelFileError naming
the file and the field. Nothing here imports torch (the test suite checks this in a subprocess in which
torch cannot be imported).

Outputs and older exports: the graph's outputs are ``OUTPUT_NAMES`` (command, aux, barrier_params,
state_out, features). An export made before the ``features`` output existed lists
``LEGACY_OUTPUT_NAMES`` in its contract; it is the same format (version 1, same checks and hashes)
and still loads and drives, but its steps hand out no perception features (``features`` None,
``OnnxPolicy.provides_features`` False). A model card whose OOD statistics model the features
(source ``features``) then has no run-time monitor: the Controller reports the score as unavailable
(nan) and says why (``Controller.ood_unavailable``, logged as a warning); exporting again adds the
output.

Where the graph comes from: ``resolve_export_card`` accepts the export folder, the export card, the
``.onnx`` file, or a model name/card for which ``NAME.onnx.json`` lies next to the card (export into
``models/`` to ship both backends side by side).
"""
from __future__ import annotations

import json
import math
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from liquid_controller.errors import InputError, ModelFileError
from liquid_controller.runtime import model_file

__all__ = ['EXPORT_FORMAT', 'EXPORT_FORMAT_VERSION', 'EXPORT_SUFFIX', 'OUTPUT_NAMES',
           'LEGACY_OUTPUT_NAMES', 'ExportCard', 'OnnxPolicy',
           'export_card_path_for', 'resolve_export_card', 'read_export_card', 'load_onnx_model',
           'write_export_card']

EXPORT_FORMAT = 'liquid_controller.onnx_step'
EXPORT_FORMAT_VERSION = 1
EXPORT_SUFFIX = '.onnx.json'
INPUT_NAMES = ('image', 'imu', 'state', 'dt')          # policy/onnx_export.py writes these
OUTPUT_NAMES = ('command', 'aux', 'barrier_params', 'state_out', 'features')
# the outputs of an export made before the graph handed out the perception features (still accepted)
LEGACY_OUTPUT_NAMES = OUTPUT_NAMES[:4]
_CARD_KEYS = ('format', 'format_version', 'name', 'model_card', 'graph', 'policy', 'inputs', 'outputs',
              'state', 'summary', 'verification', 'exported_utc', 'producer')
_MAX_EXPORT_CARD_BYTES = 4 * 2 ** 20


# -------------------------------------------------------------------------------------------------
# The export card
# -------------------------------------------------------------------------------------------------
@dataclass
class ExportCard:
    """A parsed and checked export card (layout: module docstring)."""
    path: Path
    data: dict

    @property
    def graph_path(self) -> Path:
        return self.path.parent / self.data['graph']['file']

    @property
    def model_card_path(self) -> Path:
        return self.path.parent / self.data['model_card']['file']

    @property
    def state_size(self) -> int:
        return int(self.data['state']['size'])

    @property
    def output_names(self) -> tuple:
        """The graph's outputs in order: OUTPUT_NAMES, or LEGACY_OUTPUT_NAMES for an older export."""
        return _output_names(self.data['outputs'])

    @property
    def features_size(self):
        """Width of the ``features`` output; None for an export without it (LEGACY_OUTPUT_NAMES)."""
        spec = self.data['outputs'].get('features')
        return None if spec is None else int(spec['shape'][1])


def export_card_path_for(name):
    """The export card's file name for model ``name`` (``NAME.onnx.json``)."""
    return f'{name}{EXPORT_SUFFIX}'


def _fail(path, field, value, reason):
    shown = repr(value)
    shown = shown if len(shown) <= 80 else shown[:77] + '...'
    raise ModelFileError(f'{path}: export card {field}={shown}: {reason}')


def _section(path, d, name, keys):
    value = d.get(name)
    if not isinstance(value, dict):
        _fail(path, name, value, 'must be an object')
    missing = [k for k in keys if k not in value]
    extra = sorted(set(value) - set(keys))
    if missing or extra:
        _fail(path, name, sorted(value), f'keys must be {list(keys)} (missing {missing}, unknown {extra})')
    return value


def _bare_file(path, field, value, suffix):
    if not isinstance(value, str) or not value.endswith(suffix) or '/' in value or '\\' in value:
        _fail(path, field, value, f'must be a bare file name ending in {suffix!r} (next to the card)')
    return value


def _output_names(outputs):
    # an export card without 'features' was written before the graph had it (module docstring)
    return OUTPUT_NAMES if isinstance(outputs, dict) and 'features' in outputs else LEGACY_OUTPUT_NAMES


def _contract(path, d, name, names):
    section = _section(path, d, name, names)
    for key in names:
        spec = section[key]
        if not isinstance(spec, dict) or set(spec) != {'shape', 'dtype', 'description'}:
            _fail(path, f'{name}.{key}', spec, "must be {shape, dtype, description}")
        shape = spec['shape']
        if not isinstance(shape, list) or not shape or shape[0] != 'batch' or not all(
                isinstance(v, int) and not isinstance(v, bool) and 0 <= v <= 1 << 20
                for v in shape[1:]):
            _fail(path, f'{name}.{key}.shape', shape, "must be ['batch', sizes...]")
        if spec['dtype'] != 'float32':
            _fail(path, f'{name}.{key}.dtype', spec['dtype'], "must be 'float32'")
    return section


def _check_export_card(path, d):
    if not isinstance(d, dict):
        raise ModelFileError(f'{path}: export card must be a JSON object, got {type(d).__name__}')
    if d.get('format') != EXPORT_FORMAT:
        _fail(path, 'format', d.get('format'), f'expected {EXPORT_FORMAT!r} (is this an export card?)')
    if d.get('format_version') != EXPORT_FORMAT_VERSION or isinstance(d.get('format_version'), bool):
        _fail(path, 'format_version', d.get('format_version'),
              f'this reader supports format_version {EXPORT_FORMAT_VERSION}')
    missing = [k for k in _CARD_KEYS if k not in d]
    extra = sorted(set(d) - set(_CARD_KEYS))
    if missing or extra:
        raise ModelFileError(f'{path}: export card keys: missing {missing}, unknown {extra}')
    if not isinstance(d['name'], str) or not d['name']:
        _fail(path, 'name', d['name'], 'must be a non-empty string')
    card = _section(path, d, 'model_card', ('file', 'card_sha256'))
    _bare_file(path, 'model_card.file', card['file'], '.json')
    graph = _section(path, d, 'graph', ('file', 'sha256', 'opset', 'ir_version'))
    _bare_file(path, 'graph.file', graph['file'], '.onnx')
    for field, value in (('model_card.card_sha256', card['card_sha256']),
                         ('graph.sha256', graph['sha256'])):
        if not isinstance(value, str) or not model_file._HEX64.fullmatch(value):
            _fail(path, field, value, 'must be 64 lowercase hex digits')
    if not isinstance(d['policy'], dict):
        _fail(path, 'policy', d['policy'], 'must be an object (the PolicyConfig)')
    _contract(path, d, 'inputs', INPUT_NAMES)
    _contract(path, d, 'outputs', _output_names(d['outputs']))
    if 'features' in d['outputs']:
        shape = d['outputs']['features']['shape']
        if len(shape) != 2 or shape[1] < 1:
            _fail(path, 'outputs.features.shape', shape, "must be ['batch', F] with F >= 1")
    state = _section(path, d, 'state', ('size', 'names', 'groups'))
    size = state['size']
    if isinstance(size, bool) or not isinstance(size, int) or size < 0:
        _fail(path, 'state.size', size, 'must be an integer >= 0')
    if not isinstance(state['names'], list) or len(state['names']) != size \
            or not all(isinstance(n, str) for n in state['names']):
        _fail(path, 'state.names', state['names'], f'must be {size} strings')
    for field in ('inputs', 'outputs'):
        key = 'state' if field == 'inputs' else 'state_out'
        if d[field][key]['shape'] != ['batch', size]:
            _fail(path, f'{field}.{key}.shape', d[field][key]['shape'], f"must be ['batch', {size}]")
    summary = _section(path, d, 'summary', ('core', 'liquid_neurons', 'num_parameters'))
    for key in ('liquid_neurons', 'num_parameters'):
        if isinstance(summary[key], bool) or not isinstance(summary[key], int) or summary[key] < 0:
            _fail(path, f'summary.{key}', summary[key], 'must be an integer >= 0')
    if not isinstance(d['verification'], dict) or not isinstance(d['producer'], dict):
        _fail(path, 'verification/producer', type(d['verification']).__name__, 'must be objects')


def resolve_export_card(model, models_dir=None):
    """The export card for ``model``: an export folder (its single ``*.onnx.json``), an export card,
    a ``.onnx`` graph (its ``.onnx.json`` next to it), or a model name / card path whose
    ``NAME.onnx.json`` lies next to the card. ModelFileError says where it looked."""
    path = Path(str(model))
    if path.is_dir():
        cards = sorted(path.glob(f'*{EXPORT_SUFFIX}'))
        if len(cards) != 1:
            raise ModelFileError(f'{path}: an ONNX export folder holds exactly one *{EXPORT_SUFFIX} '
                                 f'export card, found {[c.name for c in cards]}')
        return cards[0]
    if path.name.endswith(EXPORT_SUFFIX):
        if not path.is_file():
            raise ModelFileError(f'export card not found: {path}')
        return path
    if path.suffix == '.onnx':
        card = path.with_name(path.name + '.json')
        if not card.is_file():
            raise ModelFileError(f'{path}: no export card {card.name} next to the graph')
        return card
    json_path = model_file.resolve_model_paths(model, models_dir)
    card = json_path.parent / export_card_path_for(json_path.stem)
    if not card.is_file():
        raise ModelFileError(
            f'model {model!r} ({json_path}) has no ONNX export ({card} not found): the onnx backend '
            f'runs an exported graph. Export it once where torch is installed: `liquid-controller '
            f'export {model} --format onnx --out DIR`, then pass DIR (or DIR/{card.name}) as the '
            f'model, or export into {json_path.parent} to keep it next to the card')
    return card


def read_export_card(path):
    """Parse and check an export card (keys and types only; :func:`load_onnx_model` checks the files
    it names). Returns an :class:`ExportCard`."""
    path = Path(path)
    try:
        raw = path.read_bytes()
    except OSError as exc:
        raise ModelFileError(f'cannot read export card {path}: {exc}') from exc
    if len(raw) > _MAX_EXPORT_CARD_BYTES:
        raise ModelFileError(f'{path}: export card larger than {_MAX_EXPORT_CARD_BYTES} bytes')
    try:
        data = json.loads(raw.decode('utf-8'))
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise ModelFileError(f'{path}: export card is not valid JSON: {exc}') from exc
    _check_export_card(path, data)
    return ExportCard(path=path, data=data)


def write_export_card(path, data):
    """Write an export card (checked as a reader checks it first). Returns the :class:`ExportCard`."""
    path = Path(path)
    _check_export_card(path, data)
    path.write_text(json.dumps(data, indent=2, sort_keys=True) + '\n')
    return ExportCard(path=path, data=data)


# -------------------------------------------------------------------------------------------------
# The policy
# -------------------------------------------------------------------------------------------------
class OnnxPolicy:
    """The exported step graph in an ONNX Runtime session, behind the runtime's policy interface
    (``initial_state``, ``step``, ``provides_features``; see runtime/policy_backend.py) and the
    descriptive attributes the callers read (``config``, ``state_size``, ``liquid_neurons``,
    ``num_parameters``, ``neuron_groups``).

    ``num_threads``: ONNX Runtime intra-op threads (1 is fastest for batch-1 steps, as for torch).
    """

    backend = 'onnx'

    def __init__(self, export_card, config, num_threads=1):
        self.export_card = export_card
        self.config = config                              # the model card's PolicyConfig
        self.state_size = export_card.state_size
        # False for an export made before the graph had the features output (module docstring)
        self.provides_features = export_card.features_size is not None
        summary = export_card.data['summary']
        self.liquid_neurons = int(summary['liquid_neurons'])
        self._num_parameters = int(summary['num_parameters'])
        self._groups = {str(k): [int(i) for i in v]
                        for k, v in export_card.data['state']['groups'].items()}
        self._num_threads = int(num_threads)
        self._open_session()

    def _open_session(self):
        import onnxruntime
        export_card = self.export_card
        options = onnxruntime.SessionOptions()
        options.intra_op_num_threads = self._num_threads
        options.inter_op_num_threads = 1
        options.execution_mode = onnxruntime.ExecutionMode.ORT_SEQUENTIAL
        options.log_severity_level = 3                    # warnings about unused initialisers etc.
        try:
            self.session = onnxruntime.InferenceSession(
                str(export_card.graph_path), options, providers=['CPUExecutionProvider'])
        except Exception as exc:  # onnxruntime raises its own exception types
            raise ModelFileError(f'{export_card.graph_path}: ONNX Runtime cannot load the graph: '
                                 f'{exc}') from exc
        self._check_session()
        self._state_shape = (1, self.state_size)

    def __getstate__(self):
        # an ONNX Runtime session cannot be pickled (evaluation's worker processes pickle the
        # driver): ship the paths and reopen the checked graph on the other side
        state = dict(self.__dict__)
        del state['session']
        return state

    def __setstate__(self, state):
        self.__dict__.update(state)
        self._open_session()

    def _check_session(self):
        path = self.export_card.graph_path
        for kind, listed, names in (('inputs', self.session.get_inputs(), INPUT_NAMES),
                                    ('outputs', self.session.get_outputs(),
                                     self.export_card.output_names)):
            got = [a.name for a in listed]
            if got != list(names):
                raise ModelFileError(f'{path}: graph {kind} {got} differ from the contract {list(names)}')
            contract = self.export_card.data[kind]
            for arg in listed:
                want = contract[arg.name]['shape']
                if len(arg.shape) != len(want) or any(
                        isinstance(w, int) and w != s for w, s in zip(want, arg.shape)):
                    raise ModelFileError(f'{path}: graph {kind[:-1]} {arg.name!r} has shape '
                                         f'{arg.shape}, the export card says {want}')

    def num_parameters(self):
        """Trainable parameters of the exported network (from the export card)."""
        return self._num_parameters

    def neuron_groups(self):
        """Labelled index lists into the state (from the export card)."""
        return {k: list(v) for k, v in self._groups.items()}

    def initial_state(self):
        """The reset state (1, state_size) float32 zeros."""
        return np.zeros(self._state_shape, dtype=np.float32)

    def step(self, image, imu, dt, state):
        """image (1, 3, H, W) float32 in [0, 1], imu (imu_size,) float32, dt float seconds > 0,
        state (1, S) float32 -> PolicyStepResult (numpy; ``features`` None when the export has no
        such output). The caller (the Controller) has validated the inputs; dt must be finite and
        > 0."""
        from liquid_controller.runtime.policy_backend import PolicyStepResult
        if not (isinstance(dt, (int, float)) and math.isfinite(dt) and dt > 0):
            raise InputError('dt', dt, 'must be a finite number of seconds > 0')
        outputs = self.session.run(None, {
            'image': image,
            'imu': np.asarray(imu, dtype=np.float32).reshape(1, -1),      # (1, imu_size)
            'state': state,
            'dt': np.array([dt], dtype=np.float32),                       # (1,)
        })
        command, aux, barrier, new_state = outputs[:4]
        features = outputs[4].reshape(-1) if self.provides_features else None  # (1, F) -> (F,)
        return PolicyStepResult(command=command.reshape(-1), aux=aux.reshape(-1),
                                barrier_params=barrier.reshape(-1), state=new_state,
                                features=features)


def load_onnx_model(model, *, expected_image_size=None, available_topics=None, models_dir=None,
                    num_threads=1):
    """Load an ONNX export for the torch-free backend (checks: module docstring).

    ``model``: see :func:`resolve_export_card`. ``expected_image_size``/``available_topics``: as
    ``model_file.load_model``. Returns a ``model_file.LoadedModel`` whose ``policy`` is an
    :class:`OnnxPolicy`, ``weights_path`` the graph and ``backend`` 'onnx'.
    """
    card_path = resolve_export_card(model, models_dir)
    export = read_export_card(card_path)
    graph_path = export.graph_path
    if not graph_path.is_file():
        raise ModelFileError(f'ONNX graph not found: {graph_path} (named by {card_path})')
    digest = model_file.sha256_file(graph_path)
    if digest != export.data['graph']['sha256']:
        raise ModelFileError(f'{graph_path}: sha256 {digest} does not match the export card '
                             f'({export.data["graph"]["sha256"]}): the graph was changed or corrupted')
    json_path = export.model_card_path
    if not json_path.is_file():
        raise ModelFileError(f'model card not found: {json_path} (named by {card_path})')
    card = model_file.read_card(json_path)
    if card.card_sha256 != export.data['model_card']['card_sha256']:
        raise ModelFileError(f'{card_path}: exported from the model card with card_sha256 '
                             f'{export.data["model_card"]["card_sha256"]}, but {json_path} has '
                             f'{card.card_sha256}: export the model again')
    model_file.check_card_for_caller(json_path, card, expected_image_size, available_topics)
    config = model_file._policy_config(card.policy)
    if model_file._policy_config(export.data['policy']).to_dict() != config.to_dict():
        raise ModelFileError(f'{card_path}: export card policy differs from the model card\'s '
                             f'({json_path}): export the model again')
    if export.features_size is not None and export.features_size != config.perception_size:
        _fail(card_path, 'outputs.features.shape', export.data['outputs']['features']['shape'],
              f'the {config.core} core hands out {config.perception_size} perception features')
    policy = OnnxPolicy(export, config, num_threads=num_threads)
    return model_file.LoadedModel(policy=policy, card=card, json_path=json_path,
                                  weights_path=graph_path, backend='onnx')
