"""Resumable training checkpoints without pickle: safetensors for tensors, JSON for everything else.

A checkpoint in ``RUN_DIR`` is three files written in this order (each atomically):

- ``checkpoint.model.safetensors``: the policy's state_dict;
- ``checkpoint.optim.safetensors``: the optimiser's per-parameter tensors (``state/<i>/<name>``);
- ``checkpoint.json``: step, epoch, position in the epoch, history, best validation loss, the
  optimiser's param_groups, the training config, and the step each safetensors file was written at
  (checked on load, so a crash between the writes is detected instead of resuming inconsistent state).

``best.safetensors`` holds the weights with the best validation loss so far.
"""
import json
import os
import tempfile
from pathlib import Path

import torch
from safetensors.torch import load_file, save_file

from liquid_controller.errors import InputError

MODEL_FILE = 'checkpoint.model.safetensors'
OPTIM_FILE = 'checkpoint.optim.safetensors'
STATE_FILE = 'checkpoint.json'
BEST_FILE = 'best.safetensors'


def _tmp_path(path):
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=path.name, suffix='.tmp')
    os.close(fd)
    return tmp


def save_tensors(path, tensors, step):
    """Atomically write ``tensors`` (name -> tensor) with the step in the file's metadata."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = _tmp_path(path)
    try:
        save_file({k: v.detach().to('cpu').contiguous().clone() for k, v in tensors.items()}, tmp,
                  metadata={'step': str(int(step))})
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def _step_of(path):
    from safetensors import safe_open
    with safe_open(str(path), framework='pt') as f:
        return int((f.metadata() or {}).get('step', -1))


def optimizer_tensors(optimizer):
    """Optimiser state -> (tensors {'state/<i>/<name>': tensor}, param_groups as JSON-able data)."""
    sd = optimizer.state_dict()
    tensors = {}
    for idx, state in sd['state'].items():
        for name, value in state.items():
            t = value if isinstance(value, torch.Tensor) else torch.tensor(value)
            tensors[f'state/{idx}/{name}'] = t
    groups = [{k: (list(v) if isinstance(v, tuple) else v) for k, v in g.items()} for g in sd['param_groups']]
    return tensors, groups


def load_optimizer(optimizer, tensors, groups):
    """Inverse of :func:`optimizer_tensors`: load into ``optimizer`` (same parameters, same order)."""
    state = {}
    for key, value in tensors.items():
        _, idx, name = key.split('/', 2)
        state.setdefault(int(idx), {})[name] = value
    param_groups = []
    for g in groups:
        g = dict(g)
        if 'betas' in g:
            g['betas'] = tuple(g['betas'])
        param_groups.append(g)
    optimizer.load_state_dict({'state': state, 'param_groups': param_groups})


def save_checkpoint(run_dir, model, optimizer, state):
    """Write the three checkpoint files; ``state`` is a JSON-able dict including 'step'."""
    run_dir = Path(run_dir)
    step = int(state['step'])
    save_tensors(run_dir / MODEL_FILE, model.state_dict(), step)
    tensors, groups = optimizer_tensors(optimizer)
    save_tensors(run_dir / OPTIM_FILE, tensors, step)
    data = dict(state, param_groups=groups, files_step=step)
    tmp = _tmp_path(run_dir / STATE_FILE)
    try:
        Path(tmp).write_text(json.dumps(data, indent=1) + '\n')
        os.replace(tmp, run_dir / STATE_FILE)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def has_checkpoint(run_dir):
    return (Path(run_dir) / STATE_FILE).is_file()


def load_checkpoint(run_dir, model, optimizer, device):
    """Restore ``model`` and ``optimizer`` from ``run_dir``; returns the JSON state dict."""
    run_dir = Path(run_dir)
    try:
        state = json.loads((run_dir / STATE_FILE).read_text())
    except (OSError, json.JSONDecodeError) as exc:
        raise InputError('checkpoint', str(run_dir / STATE_FILE), f'unreadable: {exc}') from None
    step = int(state.get('files_step', -2))
    for name in (MODEL_FILE, OPTIM_FILE):
        path = run_dir / name
        if not path.is_file() or _step_of(path) != step:
            raise InputError('checkpoint', str(path), f'missing or not written at step {step} '
                             '(interrupted while saving?): start again without --resume')
    model.load_state_dict(load_file(str(run_dir / MODEL_FILE), device=str(device)), strict=True)
    load_optimizer(optimizer, load_file(str(run_dir / OPTIM_FILE), device=str(device)), state['param_groups'])
    return state
