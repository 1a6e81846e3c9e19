"""OOD statistics from the network's own driving: closed-loop episodes on in-distribution scenes.

Statistics fitted on recorded *expert* driving miss what the network does itself: its own commands
(and the filter's corrections of them) give IMU inputs, hence hidden states, the expert never produced,
so a monitor calibrated that way reads "new world" on the very scene it was trained on
(docs/benchmarks.md). Here the model drives the training scenes in the simulator exactly as in
evaluation (same Controller, frame assembler and settings; random starts and pushes per seed), the
hidden state after every policy step is collected per episode, and the Gaussian monitor is fitted on
those states (runtime/ood.py).

    liquid-controller calibrate-ood models/cfc.json --closed-loop summer --seeds 100-115
"""
from __future__ import annotations

import numpy as np

from liquid_controller.errors import InputError
from liquid_controller.evaluation.evaluate import ControllerDriver, EvalConfig, evaluate_driver

__all__ = ['StateRecordingDriver', 'calibrate_closed_loop']


class StateRecordingDriver(ControllerDriver):
    """A ControllerDriver that keeps the hidden state after every policy step (OK / RESET outputs)
    of each episode; ``episode_stats`` hands them back as ``states`` ((T, S) list)."""

    def act(self, observation, truth):
        command = super().act(observation, truth)
        out = self.last_output
        if not out.safe and out.certificate is not None and out.neurons is not None:
            self._states.append(np.asarray(out.neurons, dtype=np.float64))
        return command

    def _reset_stats(self):
        super()._reset_stats()
        self._states = []

    def episode_stats(self):
        stats = super().episode_stats()
        stats['states'] = [s.tolist() for s in self._states]
        return stats


def calibrate_closed_loop(model, scenes, seeds, laps=1.0, random_start=True, disturbance_rate_hz=0.1,
                          window=10, quantile=0.995, settings=None, workers=1, progress=True,
                          max_seconds=None):
    """Drive ``model`` on ``scenes`` for every seed (``laps`` laps, or ``max_seconds`` each), fit the
    OOD monitor on its hidden states and store it in the model card. Returns (OodStatistics, the
    evaluation report without the states)."""
    from liquid_controller.runtime.model_file import set_ood_statistics
    from liquid_controller.runtime.ood import fit_gaussian_monitor
    driver = StateRecordingDriver(model, settings)
    if driver.model.backend != 'torch':
        raise InputError('backend', driver.model.backend, 'calibrate a model card (torch backend), then '
                                                          'export it again')
    if driver.model.policy.state_size == 0:
        raise InputError('model', driver.name, 'has no recurrent state; the run-time OOD monitor models the state')
    config = EvalConfig(scenes=tuple(scenes), laps=laps, seeds=tuple(seeds), plots=False,
                        random_start=random_start, disturbance_rate_hz=disturbance_rate_hz,
                        max_seconds=max_seconds)
    report = evaluate_driver(driver, config, progress=progress, workers=workers,
                             label=f'{driver.name} closed-loop OOD calibration')
    episodes = [np.asarray(e.pop('states'), dtype=np.float64) for e in report['episodes']]
    episodes = [e for e in episodes if e.ndim == 2 and e.shape[0] > 0]
    if not episodes:
        raise InputError('scenes', list(scenes), 'no policy steps were driven')
    stats = fit_gaussian_monitor(episodes, 'neurons', window=window, quantile=quantile)
    set_ood_statistics(driver.model.json_path, stats.to_dict())
    return stats, report
