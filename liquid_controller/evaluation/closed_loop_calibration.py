"""OOD statistics from the network's own driving: closed-loop episodes on in-distribution scenes.

Statistics fitted on recorded *expert* driving miss what the network does itself: its own commands
(and the filter's corrections of them) give IMU inputs, hence hidden states, the expert never produced,
so a monitor calibrated that way reads "new world" on the very scene it was trained on
(docs/benchmarks.md). Here the model drives the training scenes in the simulator exactly as in
evaluation (same Controller, frame assembler and settings; random starts and pushes per seed), the
monitored vector after every policy step is collected per episode, and the Gaussian monitor is fitted
on those vectors (runtime/ood.py). The vector is the monitor's ``source``: 'neurons' (the hidden state,
``ControllerOutput.neurons``) or 'features' (the perception features, ``ControllerOutput.features``;
the only choice for the cnn, which has no state).

    liquid-controller calibrate-ood models/cfc.json --closed-loop summer --seeds 100-115 [--source features]
"""
from __future__ import annotations

import numpy as np

from liquid_controller.errors import InputError
from liquid_controller.evaluation.evaluate import ControllerDriver, EvalConfig, evaluate_driver
from liquid_controller.runtime.ood import FEATURE_SOURCES, resolve_source

__all__ = ['StateRecordingDriver', 'calibrate_closed_loop', 'collect_closed_loop', 'parse_seeds']


def parse_seeds(text, name='--seeds'):
    """'1,2,5' or '100-115' (inclusive) -> tuple of ints; InputError naming ``name`` otherwise."""
    try:
        if '-' in text.strip('-'):
            low, high = (int(v) for v in text.split('-', 1))
            seeds = tuple(range(low, high + 1))
        else:
            seeds = tuple(int(v) for v in text.split(',') if v.strip())
    except ValueError:
        raise InputError(name, text, "expected a list like 1,2,3 or a range like 100-115") from None
    if not seeds or min(seeds) < 0:
        raise InputError(name, text, 'expected non-negative seeds')
    return seeds


class StateRecordingDriver(ControllerDriver):
    """A ControllerDriver that keeps, after every policy step (OK / RESET outputs) of each episode,
    the vectors of ``sources`` (FEATURE_SOURCES: 'neurons' = ``ControllerOutput.neurons``, 'features' =
    ``ControllerOutput.features``); ``episode_stats`` hands them back as ``ood_vectors``
    ({source: (T, D) list}). One drive can collect both sources."""

    def __init__(self, model, settings=None, sources=('neurons',), **kwargs):
        sources = tuple(sources)
        for source in sources:
            if source not in FEATURE_SOURCES:
                raise InputError('sources', source, f'must be among {FEATURE_SOURCES}')
        if not sources:
            raise InputError('sources', sources, 'name at least one source')
        self.sources = sources          # before the base class's __init__: it resets the stats
        super().__init__(model, settings, **kwargs)

    def act(self, observation, truth):
        command = super().act(observation, truth)
        out = self.last_output
        if not out.safe and out.certificate is not None:
            vectors = {'neurons': out.neurons, 'features': out.features}
            # a step without one of the vectors (an ONNX export without features) is not recorded
            if all(vectors[s] is not None for s in self.sources):
                for source in self.sources:
                    self._vectors[source].append(np.asarray(vectors[source], dtype=np.float64))
        return command

    def _reset_stats(self):
        super()._reset_stats()
        self._vectors = {source: [] for source in self.sources}

    def episode_stats(self):
        stats = super().episode_stats()
        stats['ood_vectors'] = {s: [v.tolist() for v in vs] for s, vs in self._vectors.items()}
        return stats


def collect_closed_loop(model, scenes, seeds, sources=('neurons',), laps=1.0, random_start=True,
                        disturbance_rate_hz=0.1, settings=None, workers=1, progress=True,
                        max_seconds=None, label=None):
    """Drive ``model`` on ``scenes`` for every seed (``laps`` laps, or ``max_seconds`` each) and collect
    the vectors of ``sources`` after every policy step. Returns ({source: [(T_i, D) float64 arrays,
    one per episode with steps]}, the evaluation report without the vectors, the driver).

    Needs a backend that hands out what ``sources`` name (torch; onnx only with a features output).
    """
    driver = StateRecordingDriver(model, settings, sources=sources)
    config = EvalConfig(scenes=tuple(scenes), laps=laps, seeds=tuple(seeds), plots=False,
                        random_start=random_start, disturbance_rate_hz=disturbance_rate_hz,
                        max_seconds=max_seconds)
    for source in driver.sources:
        resolve_source(source, int(driver.model.policy.state_size), f'model {driver.name!r}')
    if 'features' in driver.sources and not _provides_features(driver.model):
        raise InputError('backend', driver.model.backend, 'this export hands out no perception '
                                                          'features: export the model again')
    report = evaluate_driver(driver, config, progress=progress, workers=workers,
                             label=label or f'{driver.name} closed-loop OOD calibration')
    vectors = {source: [] for source in driver.sources}
    for e in report['episodes']:
        for source, rows in e.pop('ood_vectors').items():
            rows = np.asarray(rows, dtype=np.float64)                    # (T, D)
            if rows.ndim == 2 and rows.shape[0] > 0:
                vectors[source].append(rows)
    return vectors, report, driver


def _provides_features(model):
    if getattr(model, 'backend', 'torch') == 'torch':
        return True
    return bool(getattr(model.policy, 'provides_features', False))


def calibrate_closed_loop(model, scenes, seeds, laps=1.0, random_start=True, disturbance_rate_hz=0.1,
                          window=10, quantile=0.995, settings=None, workers=1, progress=True,
                          max_seconds=None, source=None):
    """Drive ``model`` on ``scenes`` for every seed (``laps`` laps, or ``max_seconds`` each), fit the
    OOD monitor on the vector ``source`` names ('neurons': the hidden state; 'features': the
    perception features; None: 'neurons', or 'features' for the cnn, which has no state) and store it
    in the model card. Returns (OodStatistics, the evaluation report without the vectors)."""
    from liquid_controller.runtime.model_file import set_ood_statistics
    from liquid_controller.runtime.ood import fit_gaussian_monitor
    from liquid_controller.runtime.policy_backend import load_runtime_model
    from liquid_controller.runtime.settings import load_settings
    settings = settings if settings is not None else load_settings()
    loaded = load_runtime_model(model, settings['backend'])
    if loaded.backend != 'torch':
        raise InputError('backend', loaded.backend, 'calibrate a model card (torch backend), then '
                                                    'export it again')
    source = resolve_source(source, int(loaded.policy.state_size), f'model {loaded.card.name!r}')
    vectors, report, driver = collect_closed_loop(
        loaded, scenes, seeds, (source,), laps=laps, random_start=random_start,
        disturbance_rate_hz=disturbance_rate_hz, settings=settings, workers=workers,
        progress=progress, max_seconds=max_seconds)
    if not vectors[source]:
        raise InputError('scenes', list(scenes), 'no policy steps were driven')
    stats = fit_gaussian_monitor(vectors[source], source, window=window, quantile=quantile)
    set_ood_statistics(driver.model.json_path, stats.to_dict())
    return stats, report
