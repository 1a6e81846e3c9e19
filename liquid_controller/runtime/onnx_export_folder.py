"""Write an ONNX export folder for a model and verify it against torch (needs torch and onnx).

    result = export_onnx_folder(loaded_model, out_dir, sequences)

The folder layout and the export card are described in runtime/onnx_backend.py (which reads them
without torch). The export verifies itself before anything is written: every verification sequence
(the caller passes recorded frames, e.g. a bag's, and :func:`random_sequence` adds one with irregular
dt) is run through ``DrivingPolicy.step_with_features`` and through the graph in ONNX Runtime, each
carrying its own hidden state over the whole sequence; the largest difference of any output (the
perception features included) or state must be at most ``tolerance`` (default 1e-5), else ExportError
and nothing is written.
"""
from __future__ import annotations

import hashlib
import shutil
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from liquid_controller.errors import LiquidControllerError
from liquid_controller.runtime import onnx_backend

__all__ = ['DEFAULT_TOLERANCE', 'MIN_VERIFY_STEPS', 'ExportError', 'VerificationSequence',
           'ExportResult', 'random_sequence', 'export_onnx_folder', 'state_names']

DEFAULT_TOLERANCE = 1e-5
MIN_VERIFY_STEPS = 60        # the random sequence's length: state carried at least this long


class ExportError(LiquidControllerError):
    """The export could not be made or did not match torch."""


@dataclass
class VerificationSequence:
    """Inputs for the self-check: images (T, B, 3, H, W), imu (T, B, imu_size), dt (T, B) float32
    seconds > 0; ``source`` says where they came from (written into the card)."""
    source: str
    images: np.ndarray
    imu: np.ndarray
    dt: np.ndarray

    def __post_init__(self):
        t = self.images.shape[0] if self.images.ndim == 5 else -1
        if t < 1 or self.imu.ndim != 3 or self.imu.shape[0] != t or self.dt.shape[:1] != (t,) \
                or self.dt.ndim != 2:
            raise ExportError(f'verification sequence {self.source!r}: shapes images '
                              f'{self.images.shape}, imu {self.imu.shape}, dt {self.dt.shape} must be '
                              f'(T, B, 3, H, W), (T, B, imu_size), (T, B) with T >= 1')
        if not (np.isfinite(self.dt).all() and (self.dt > 0).all()):
            raise ExportError(f'verification sequence {self.source!r}: dt must be finite and > 0')


@dataclass
class ExportResult:
    """What was written: the export card path, the graph path and the verification numbers."""
    card_path: Path
    graph_path: Path
    max_abs_diff: float
    per_sequence: dict


def random_sequence(config, steps=MIN_VERIFY_STEPS + 4, batch=2, seed=0):
    """A random verification sequence: images uniform in [0, 1], IMU features N(0, 1) (with a few
    beyond the clip range), irregular dt from 5 ms to 0.25 s, some far above the nominal period."""
    rng = np.random.default_rng(seed)
    images = rng.random((steps, batch, config.image_channels, config.image_height,
                         config.image_width), dtype=np.float32)
    imu = rng.normal(size=(steps, batch, config.imu_size)).astype(np.float32)
    imu[steps // 2] *= 50.0                                    # beyond imu_clip once
    dt = rng.uniform(0.005, 0.25, size=(steps, batch)).astype(np.float32)
    dt[::7] = np.float32(1.0 / 30.0)
    return VerificationSequence('random (irregular dt 5 ms .. 0.25 s)', images, imu, dt)


def state_names(groups, size):
    """One name per state column from the neuron groups: '<group>_<index>' ('state_<i>' when a
    column has no group)."""
    names = [f'state_{i}' for i in range(size)]
    for label, indices in groups.items():
        for i in indices:
            if 0 <= int(i) < size:
                names[int(i)] = f'{label}_{int(i)}'
    return names


def _session(graph_bytes):
    import onnxruntime
    options = onnxruntime.SessionOptions()
    options.intra_op_num_threads = 1
    options.log_severity_level = 3
    return onnxruntime.InferenceSession(graph_bytes, options, providers=['CPUExecutionProvider'])


def _verified_graph(policy, sequences):
    """Build the graph and run every verification sequence (plus a random one) through torch and
    ONNX Runtime. Returns (graph, {source: {steps, batch, max_abs_diff}})."""
    from liquid_controller.policy.onnx_export import build_step_graph, compare_step_with_torch
    graph = build_step_graph(policy)
    session = _session(graph.SerializeToString())

    def run_step(image, imu, state, dt):
        return session.run(None, {'image': image, 'imu': imu, 'state': state, 'dt': dt})

    per_sequence = {}
    for seq in list(sequences) + [random_sequence(policy.config)]:
        diff = compare_step_with_torch(policy, run_step, seq.images, seq.imu, seq.dt)
        per_sequence[seq.source] = {'steps': int(seq.images.shape[0]),
                                    'batch': int(seq.images.shape[1]), 'max_abs_diff': diff}
    return graph, per_sequence


def export_onnx_folder(model, out_dir, sequences=(), *, tolerance=DEFAULT_TOLERANCE):
    """Export ``model`` (a torch ``LoadedModel``) to ``out_dir`` (created; existing export files of
    this model are replaced) and verify it (module docstring). ``sequences``: extra
    :class:`VerificationSequence` s (a random one is always added). Returns an :class:`ExportResult`.
    """
    import onnx
    import onnxruntime
    import torch

    from liquid_controller.policy.onnx_export import OPSET, step_contract
    if getattr(model, 'backend', 'torch') != 'torch':
        raise ExportError('export needs the torch model (backend torch): the graph is built from its '
                          'weights')
    policy, card = model.policy, model.card
    threads = torch.get_num_threads()
    torch.set_num_threads(1)          # batch-1 steps: 1 thread is fastest (restored below)
    try:
        graph, per_sequence = _verified_graph(policy, sequences)
    finally:
        torch.set_num_threads(threads)
    graph_bytes = graph.SerializeToString()
    worst = max(v['max_abs_diff'] for v in per_sequence.values())
    if not worst <= tolerance:
        raise ExportError(f'ONNX Runtime differs from torch by {worst:.3g} > tolerance {tolerance:g} '
                          f'({per_sequence}); nothing written')
    name = card.name
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    # the model card and weights travel with the graph: the folder is a complete model for both
    # backends, and the onnx backend checks the card it was made from
    for src in (model.json_path, model.weights_path):
        dst = out / src.name
        if src.resolve() != dst.resolve():
            shutil.copyfile(src, dst)
    graph_path = out / f'{model.json_path.stem}.onnx'
    graph_path.write_bytes(graph_bytes)
    contract = step_contract(policy)
    groups = {str(k): [int(i) for i in v] for k, v in policy.neuron_groups().items()}
    data = {
        'format': onnx_backend.EXPORT_FORMAT,
        'format_version': onnx_backend.EXPORT_FORMAT_VERSION,
        'name': name,
        'model_card': {'file': model.json_path.name, 'card_sha256': card.card_sha256},
        'graph': {'file': graph_path.name, 'sha256': hashlib.sha256(graph_bytes).hexdigest(),
                  'opset': OPSET, 'ir_version': int(graph.ir_version)},
        'policy': policy.config.to_dict(),
        'inputs': {k: {'shape': shape, 'dtype': 'float32', 'description': text}
                   for k, (shape, text) in contract['inputs'].items()},
        'outputs': {k: {'shape': shape, 'dtype': 'float32', 'description': text}
                    for k, (shape, text) in contract['outputs'].items()},
        'state': {'size': int(policy.state_size),
                  'names': state_names(groups, int(policy.state_size)), 'groups': groups},
        'summary': {'core': policy.config.core, 'liquid_neurons': int(policy.liquid_neurons),
                    'num_parameters': int(policy.num_parameters())},
        'verification': {'tolerance': tolerance, 'max_abs_diff': worst,
                         'sequences': per_sequence,
                         'compared': 'command, aux, barrier_params, state and features at every '
                                     'step; each side carries its own state'},
        'exported_utc': time.strftime('%Y-%m-%dT%H:%M:%SZ', time.gmtime()),
        'producer': {'torch': torch.__version__, 'onnx': onnx.__version__,
                     'onnxruntime': onnxruntime.__version__},
    }
    card_path = out / onnx_backend.export_card_path_for(model.json_path.stem)
    onnx_backend.write_export_card(card_path, data)
    return ExportResult(card_path=card_path, graph_path=graph_path, max_abs_diff=worst,
                        per_sequence=per_sequence)
