"""Golden-bag regression checks built on :func:`liquid_controller.data.replay.replay_bag`.

A scenario folder holds a bag, a model file, golden outputs (``golden.npz``: the arrays of
:meth:`ReplayResult.save_npz`) and ``thresholds.yaml`` (tolerances and behaviour limits; see
test/bags/summer_lane/thresholds.yaml). Failures raise AssertionError with the array, the frame, its
stamp and both values, so a CI log says what changed.

Computed float outputs are only ever compared with a golden file through tolerances: oneDNN and
OpenBLAS/MKL pick CPU-specific kernels (AVX-512 / AVX2 / SSE, Intel / AMD), which sum in another order
and move float32 results by an ulp or so (1.2e-7 seen on the summer_lane commands; provoke it on one
machine with ``ONEDNN_MAX_CPU_ISA=AVX2`` or ``OPENBLAS_CORETYPE=Haswell``). Compare bit for bit only two
results computed in the same process.
"""
from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import yaml

from liquid_controller.config_base import check_known_keys
from liquid_controller.errors import InputError
from liquid_controller.validation import check_number

COMPARED = ('command', 'nominal', 'neurons')
DEFAULT_TOLERANCES = {'command': {'atol': 1e-4, 'rtol': 1e-4}, 'nominal': {'atol': 1e-4, 'rtol': 1e-4},
                      'neurons': {'atol': 1e-3, 'rtol': 1e-3}}
UPDATE_ENV = 'LIQUID_CONTROLLER_UPDATE_GOLDEN'
# Frame stamps say which frames were replayed; they are not computed by the network: header stamps read
# from the bag (int sec + int nanosec * 1e-9 in Python floats, the same bits on every CPU). They are still
# compared with a tolerance (rtol 0) so that a golden file written by another tool, or the same stamp
# rounded another way (nanosec / 1e9: one float64 ulp, 2.4e-7 s at epoch-time stamps), is not taken for
# another frame; 1 us is far below any frame period (>= 1 ms).
STAMP_ATOL = 1e-6


@dataclass
class Tolerance:
    """numpy.testing.assert_allclose tolerances: |actual - golden| <= atol + rtol * |golden|."""
    atol: float = 1e-4
    rtol: float = 1e-4

    def __post_init__(self):
        for name in ('atol', 'rtol'):
            setattr(self, name, check_number(name, getattr(self, name), 0.0))

    def to_dict(self):
        return {'atol': self.atol, 'rtol': self.rtol}

    @classmethod
    def from_dict(cls, d):
        check_known_keys(d, ('atol', 'rtol'), 'tolerance')
        return cls(**{k: float(v) for k, v in d.items()})


def _tolerances(tolerances):
    out = {k: Tolerance.from_dict(v) for k, v in DEFAULT_TOLERANCES.items()}
    for k, v in (tolerances or {}).items():
        if k == 'statuses_equal':
            continue
        if k not in COMPARED:
            raise InputError('tolerances', k, f'unknown array; known: {list(COMPARED)}')
        out[k] = v if isinstance(v, Tolerance) else Tolerance.from_dict(dict(v))
    return out


def _load_arrays(golden):
    if isinstance(golden, (str, os.PathLike)):
        with np.load(golden) as data:
            return {k: data[k] for k in data.files}
    return golden


def _result_arrays(result):
    """ReplayResult or a mapping of its arrays (e.g. an .npz from ``replay --golden-out``)."""
    if isinstance(result, (str, os.PathLike)) or hasattr(result, 'keys'):
        data = _load_arrays(result)
        out = {k: np.asarray(data[k]) for k in ('stamps',) + COMPARED}
        out['status'] = [str(s) for s in np.asarray(data['status']).tolist()]
        return out
    out = {k: np.asarray(getattr(result, k)) for k in ('stamps',) + COMPARED}
    out['status'] = list(result.status)
    return out


def assert_matches_golden(result, golden, tolerances=None, statuses_equal=True):
    """Compare replay outputs with golden arrays, within tolerances (never bit for bit).

    ``result``: a ReplayResult, or a mapping of its arrays / path of an .npz (ReplayResult.save_npz);
    ``golden``: a path to an .npz or a mapping of arrays. Per array ``|result - golden| <= atol + rtol *
    |golden|`` (``tolerances``: as in thresholds.yaml; DEFAULT_TOLERANCES for arrays not given); frame
    stamps within STAMP_ATOL; statuses equal when ``statuses_equal``.
    """
    data = _load_arrays(golden)
    actual_arrays = _result_arrays(result)
    tol = _tolerances(tolerances)
    stamps = actual_arrays['stamps']
    frames = int(stamps.shape[0])
    n_gold = int(np.asarray(data['stamps']).shape[0])
    if frames != n_gold:
        raise AssertionError(f'replay produced {frames} frames, golden has {n_gold}')
    gold_stamps = np.asarray(data['stamps'])
    bad = ~np.isclose(stamps, gold_stamps, atol=STAMP_ATOL, rtol=0)
    if bad.any():
        frame = int(np.argwhere(bad)[0][0])
        raise AssertionError(f'frame stamps differ from golden in {int(bad.sum())} of {frames} frames; first '
                             f'at frame {frame}: replay {stamps[frame]:.9f} s vs golden {gold_stamps[frame]:.9f} s '
                             f'(atol {STAMP_ATOL} s): not the same frames')
    for name in COMPARED:
        actual, expected = actual_arrays[name], np.asarray(data[name])
        if actual.shape != expected.shape:
            raise AssertionError(f'{name}: shape {actual.shape} differs from golden {expected.shape}')
        t = tol[name]
        bad = ~np.isclose(actual, expected, atol=t.atol, rtol=t.rtol)
        if bad.any():
            frame = int(np.argwhere(bad)[0][0])
            err = np.abs(actual.astype(np.float64) - expected.astype(np.float64))
            raise AssertionError(
                f'{name} differs from golden in {int(bad.any(axis=tuple(range(1, bad.ndim))).sum())} of '
                f'{frames} frames (atol {t.atol}, rtol {t.rtol}); first at frame {frame} '
                f'(stamp {stamps[frame]:.6f} s): replay {actual[frame].tolist()[:6]} vs golden '
                f'{expected[frame].tolist()[:6]}; max abs error {float(err.max()):.3g}')
    if statuses_equal:
        gold_status = [str(s) for s in np.asarray(data['status']).tolist()]
        for i, (a, b) in enumerate(zip(actual_arrays['status'], gold_status)):
            if a != b:
                raise AssertionError(f'status differs from golden at frame {i} '
                                     f'(stamp {stamps[i]:.6f} s): {a!r} vs {b!r}')


def check_expectations(result, expect):
    """Behaviour limits (keys as in thresholds.yaml ``expect``); AssertionError naming the first failure."""
    expect = dict(expect or {})
    known = {'frames', 'min_compared', 'max_bad_input', 'max_abs_v', 'max_abs_w', 'max_mae_v', 'max_mae_w',
             'max_intervention_rate', 'min_corr_v', 'min_corr_w'}
    unknown = sorted(set(expect) - known)
    if unknown:
        raise InputError('expect', unknown, f'unknown keys; known: {sorted(known)}')
    m = result.metrics()
    if not np.isfinite(result.command).all():
        raise AssertionError('replay produced a non-finite command')
    checks = [
        ('frames', lambda v: m['frames'] == v, m['frames']),
        ('min_compared', lambda v: m['compared'] >= v, m['compared']),
        ('max_bad_input', lambda v: m['status_counts'].get('bad_input', 0) <= v,
         m['status_counts'].get('bad_input', 0)),
        ('max_abs_v', lambda v: np.abs(result.command[:, 0]).max(initial=0) <= v + 1e-9,
         float(np.abs(result.command[:, 0]).max(initial=0))),
        ('max_abs_w', lambda v: np.abs(result.command[:, 1]).max(initial=0) <= v + 1e-9,
         float(np.abs(result.command[:, 1]).max(initial=0))),
        ('max_mae_v', lambda v: m['mae_v'] <= v, m['mae_v']),
        ('max_mae_w', lambda v: m['mae_w'] <= v, m['mae_w']),
        ('max_intervention_rate', lambda v: m['intervention_rate'] <= v, m['intervention_rate']),
        ('min_corr_v', lambda v: m['corr_v'] >= v, m['corr_v']),
        ('min_corr_w', lambda v: m['corr_w'] >= v, m['corr_w']),
    ]
    for key, ok, actual in checks:
        if key in expect and not ok(expect[key]):
            raise AssertionError(f'{key}: expected {expect[key]}, replay gave {actual} ({result.bag})')


def replay_regression(bag, model, golden, tolerances=None, *, expect=None, config=None, out=None,
                      update=None, statuses_equal=True):
    """Replay ``bag`` with ``model`` and assert the outputs match ``golden`` within ``tolerances``.

    Args:
        bag, model: as for :func:`liquid_controller.data.replay.replay_bag`.
        golden: path of the golden .npz (written when missing and ``update``).
        tolerances: {'command'|'nominal'|'neurons': {'atol': .., 'rtol': ..}} (defaults in
            DEFAULT_TOLERANCES: 1e-4 for commands, 1e-3 for neurons).
        expect: behaviour limits for :func:`check_expectations`.
        config: a :class:`liquid_controller.data.replay.ReplayConfig` (topic names etc.).
        out: optional output bag directory (to open in Foxglove when a test fails).
        update: write a missing golden file (default: env LIQUID_CONTROLLER_UPDATE_GOLDEN=1); the
            call then fails so that a golden file is never silently created in CI.
    Returns the ReplayResult.
    """
    from liquid_controller.data.replay import replay_bag
    result = replay_bag(bag, model, out=out, config=config)
    check_expectations(result, expect)
    golden = Path(golden)
    if not golden.exists():
        update = os.environ.get(UPDATE_ENV) == '1' if update is None else update
        if update:
            result.save_npz(golden)
            raise AssertionError(f'golden file {golden} did not exist and was written: review and commit it')
        raise AssertionError(f'golden file {golden} not found (set {UPDATE_ENV}=1 to create it)')
    assert_matches_golden(result, golden, tolerances, statuses_equal=statuses_equal)
    return result


@dataclass
class RegressionScenario:
    """A scenario folder: bag + model + golden + thresholds.yaml (see test/bags/summer_lane)."""
    root: Path
    bag: Path
    model: Path
    golden: Path
    topics: dict = field(default_factory=dict)
    tolerances: dict = field(default_factory=dict)
    statuses_equal: bool = True
    expect: dict = field(default_factory=dict)
    dds: dict = field(default_factory=dict)

    def replay_config(self, **kwargs):
        from liquid_controller.data.replay import ReplayConfig, ReplayTopics
        return ReplayConfig(topics=ReplayTopics.from_dict(self.topics), **kwargs)

    def check(self, out=None):
        """Replay the scenario and assert it against golden and expectations; returns the result."""
        return replay_regression(self.bag, self.model, self.golden, self.tolerances, expect=self.expect,
                                 config=self.replay_config(), out=out, statuses_equal=self.statuses_equal)


def load_scenario(folder, thresholds='thresholds.yaml'):
    """Read ``folder/thresholds.yaml`` into a :class:`RegressionScenario` (paths relative to folder)."""
    root = Path(folder)
    path = root / thresholds
    try:
        data = yaml.safe_load(path.read_text()) or {}
    except (OSError, yaml.YAMLError) as exc:
        raise InputError('thresholds', str(path), f'cannot read: {exc}') from None
    known = {'bag', 'model', 'golden', 'topics', 'tolerances', 'expect', 'dds'}
    unknown = sorted(set(data) - known)
    if unknown:
        raise InputError(str(path), unknown, f'unknown keys; known: {sorted(known)}')
    tolerances = dict(data.get('tolerances') or {})
    statuses_equal = bool(tolerances.pop('statuses_equal', True))
    _tolerances(tolerances)  # validate now: a typo fails at load, not after the replay
    return RegressionScenario(root=root, bag=root / data.get('bag', 'bag'),
                              model=root / data.get('model', 'model.json'),
                              golden=root / data.get('golden', 'golden.npz'),
                              topics=dict(data.get('topics') or {}), tolerances=tolerances,
                              statuses_equal=statuses_equal, expect=dict(data.get('expect') or {}),
                              dds=dict(data.get('dds') or {}))
