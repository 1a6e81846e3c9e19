"""Which engine runs the policy step: ``torch`` (the trained DrivingPolicy) or ``onnx`` (an exported
graph in ONNX Runtime, no torch anywhere on the path).

Both backends sit behind one small interface that the Controller drives with numpy arrays:

    stepper.initial_state() -> (1, S) float32 zeros
    stepper.step(image (1, 3, H, W) float32, imu (imu_size,) float32, dt float s, state (1, S))
        -> PolicyStepResult(command (2,), aux (A,), barrier_params (K,), state (1, S),
                            features (F,) or None)
    stepper.neuron_groups() -> {label: [state indices]}
    stepper.provides_features -> bool: whether ``step`` hands out the perception features (the
        torch backend always; the onnx backend when its export has the ``features`` output)

The choice is the node parameter ``backend`` (runtime/settings.py): ``auto`` (default) is torch when
torch can be imported, else onnx. :func:`load_runtime_model` loads a model for a backend: the torch
backend a model card + safetensors (runtime/model_file.py), the onnx backend an export
(runtime/onnx_backend.py). Importing this module imports neither torch nor onnxruntime.
"""
from __future__ import annotations

import importlib.util
from dataclasses import dataclass

import numpy as np

from liquid_controller.errors import InputError

__all__ = ['BACKENDS', 'PolicyStepResult', 'resolve_backend', 'load_runtime_model', 'policy_stepper']

BACKENDS = ('auto', 'torch', 'onnx')


@dataclass
class PolicyStepResult:
    """One policy step's outputs (numpy float32): command (2,) nominal (v, w), aux (A,),
    barrier_params (K,), state (1, S) the new hidden state, features (F,) the perception features
    (``DrivingPolicy.step_with_features``: the conv head's output, the cnn's latent; what the OOD
    monitor's source 'features' models), None from an ONNX export made before the graph had them."""
    command: np.ndarray
    aux: np.ndarray
    barrier_params: np.ndarray
    state: np.ndarray
    features: np.ndarray | None = None


def torch_available():
    """True when torch can be imported here (found on the path; not imported by this call)."""
    try:
        return importlib.util.find_spec('torch') is not None
    except (ImportError, ValueError):   # a blocked or broken torch counts as absent
        return False


def resolve_backend(backend):
    """'auto' | 'torch' | 'onnx' -> 'torch' | 'onnx' ('auto': torch when importable, else onnx).
    InputError for another value."""
    if backend not in BACKENDS:
        raise InputError('backend', backend, f'must be one of {BACKENDS}')
    if backend == 'auto':
        return 'torch' if torch_available() else 'onnx'
    return backend


def load_runtime_model(model, backend='auto', *, expected_image_size=None, available_topics=None,
                       models_dir=None, num_threads=1):
    """Load ``model`` for ``backend``; returns a ``model_file.LoadedModel`` (``.backend`` says which).

    ``model``: a model name / card path (both backends; the onnx backend then needs the export's
    ``NAME.onnx.json`` next to the card), or an ONNX export folder / export card (the onnx backend
    runs its graph; the torch backend loads the model card copied into it). A LoadedModel is passed
    through when ``backend`` is 'auto' or its own. ModelFileError / InputError on any problem.
    """
    from liquid_controller.runtime import model_file
    if isinstance(model, model_file.LoadedModel):
        # already loaded: 'auto' takes it as it is, an explicit backend must match
        if backend not in ('auto', model.backend):
            resolve_backend(backend)                     # an unknown name is named as such first
            raise InputError('model', f'a {model.backend} model', f'backend {backend!r} was asked for')
        return model
    backend = resolve_backend(backend)
    kwargs = dict(expected_image_size=expected_image_size, available_topics=available_topics,
                  models_dir=models_dir)
    if backend == 'onnx':
        from liquid_controller.runtime.onnx_backend import load_onnx_model
        return load_onnx_model(model, num_threads=num_threads, **kwargs)
    # an ONNX export folder / card resolves to the model card copied into it (model_file)
    return model_file.load_model(model, **kwargs)


def policy_stepper(model, num_threads=1):
    """The numpy step interface (module docstring) for a LoadedModel of either backend."""
    if getattr(model, 'backend', 'torch') == 'onnx':
        return model.policy
    from liquid_controller.runtime.torch_backend import TorchPolicyStep
    return TorchPolicyStep(model.policy, num_threads=num_threads)
