"""Which OOD score to ship: three candidates scored side by side on the same closed-loop episodes.

- ``neurons``: Mahalanobis distance of the recurrent state (what the runtime monitor computes).
- ``features``: Mahalanobis distance of the perception head's output (the 32 image features), fitted on
  the same training data (needs the torch backend: the features are read with a forward hook).
- ``aux``: a prediction-consistency score without any statistics of the inputs: the policy's own lane
  offset estimate must change as the rover's motion says, d(offset)/dt = v * sin(heading error); the
  score is the smoothed absolute mismatch (m/s) divided by its 99.5% quantile on the training data.

Each candidate is smoothed over the same window and scaled so that 1 is its training threshold; each
episode gets each candidate's max and the time it first crossed 1. ``liquid-controller benchmark``
reports only the shipped monitor; this study is run by ``python -m liquid_controller.evaluation.ood_study``
(results in docs/benchmarks.md).
"""
from __future__ import annotations

import argparse
import json
from collections import deque
from pathlib import Path

import numpy as np

from liquid_controller.evaluation.evaluate import ControllerDriver
from liquid_controller.evaluation.ood_separation import auroc, failed
from liquid_controller.runtime.ood import OodMonitor, smoothed_scores

__all__ = ['CANDIDATES', 'OodStudyDriver', 'calibrate_candidates', 'run_study']

CANDIDATES = ('neurons', 'features', 'aux')


def _aux_mismatch(offset, heading, speed, dt):
    """Per-step |d(offset)/dt - v sin(heading)| (m/s), (T,) -> (T,); the first step is 0."""
    d = np.zeros_like(offset)
    d[1:] = np.abs(np.diff(offset) / np.maximum(dt[1:], 1e-3) - speed[1:] * np.sin(heading[1:]))
    return d


def calibrate_candidates(loaded, episodes, imu_mean, imu_std, max_dt, window, quantile):
    """Statistics of each candidate on training ``episodes`` (data.dataset Episodes):
    {'neurons': OodStatistics, 'features': OodStatistics, 'aux': threshold (m/s)}."""
    import torch

    from liquid_controller.data.dataset import SequenceDataset
    from liquid_controller.runtime.ood import fit_gaussian_monitor
    from liquid_controller.train.ood_calibration import collect_features
    policy = loaded.policy
    longest = max(len(e) for e in episodes)
    dataset = SequenceDataset(episodes, longest, longest, imu_mean=imu_mean, imu_std=imu_std, max_dt=max_dt)
    out = {}
    for source in ('neurons', 'features'):
        feats = collect_features(policy, dataset, source)
        out[source] = fit_gaussian_monitor(feats, source, window=window, quantile=quantile)
    # aux: the policy's own lane estimate along each training episode vs the recorded motion
    from liquid_controller.runtime.preprocess import images_to_tensor
    mismatch = []
    with torch.no_grad():
        for i in range(len(dataset)):
            item = dataset[i]
            n = int(item['mask'].sum())
            images = images_to_tensor(item['images'][:n].numpy())
            state, aux = None, []
            for t in range(n):
                o, state = policy.step(images[t:t + 1], item['imu'][t:t + 1], item['dt'][t:t + 1], state)
                aux.append(o.aux[0, :2].double().numpy())
            aux = np.array(aux)
            speed = item['command'][:n, 0].double().numpy()   # the expert's speed: what the rover drove
            d = _aux_mismatch(aux[:, 0], aux[:, 1], speed, item['dt'][:n].double().numpy())
            mismatch.append(smoothed_scores(d, window))
    out['aux'] = float(np.quantile(np.concatenate(mismatch), quantile))
    return out


class OodStudyDriver(ControllerDriver):
    """The benchmark's ControllerDriver (torch backend) that also scores the two other candidates
    every step and records, per episode, each candidate's max score and first crossing of 1."""

    def __init__(self, model, candidates, settings=None, use_filter=True):
        super().__init__(model, settings, use_filter=use_filter)
        self.candidates = candidates
        self._captured = []

    def reset(self, world, seed):
        super().reset(world, seed)
        if not getattr(self, '_hooked', False):
            head = self.model.policy.head
            head.register_forward_hook(lambda m, a, out: self._captured.append(out.detach()))
            self._hooked = True
        self._feature_monitor = OodMonitor(self.candidates['features'])
        self._aux_recent = deque(maxlen=self.candidates['neurons'].window)
        self._prev_offset = None
        self._trace = {c: [] for c in CANDIDATES}
        self._times = []

    def act(self, observation, truth):
        self._captured.clear()
        command = super().act(observation, truth)
        out_score = self._ood[-1][1]
        t = observation.stamp
        self._times.append(t)
        self._trace['neurons'].append(out_score)
        features = self._captured[-1][0].double().numpy() if self._captured else None
        self._trace['features'].append(self._feature_monitor.update(features, t) if features is not None
                                       else float('nan'))
        aux = self.last_output.aux        # (2,) predicted lane offset, heading error; None when braking
        speed = float(observation.odometry.v)
        if aux is not None and self._prev_offset is not None:
            dt = max(t - self._prev_offset[1], 1e-3)
            self._aux_recent.append(abs((aux[0] - self._prev_offset[0]) / dt - speed * np.sin(aux[1])))
        self._prev_offset = (aux[0], t) if aux is not None else None
        self._trace['aux'].append(float(np.mean(self._aux_recent)) / self.candidates['aux']
                                  if self._aux_recent else 0.0)
        return command

    def episode_stats(self):
        stats = super().episode_stats()
        t = np.asarray(self._times) - (self._times[0] if self._times else 0.0)
        study = {}
        for c in CANDIDATES:
            s = np.asarray(self._trace[c], dtype=np.float64)
            over = np.flatnonzero(s > 1.0)
            study[c] = {'max': float(np.nanmax(s)) if s.size else None,
                        'first_over_s': float(t[over[0]]) if over.size else None,
                        'fraction_over': float((s > 1.0).mean()) if s.size else None}
        stats['ood_study'] = study
        return stats


def study_summary(episodes):
    """Per candidate: AUROC of the per-episode max for failing vs clean, failing episodes warned
    before their first departure, median lead time, share of clean episodes' frames above 1."""
    bad = [e for e in episodes if failed(e)]
    good = [e for e in episodes if not failed(e)]
    out = {'episodes': len(episodes), 'failing': len(bad)}
    for c in CANDIDATES:
        leads = []
        for e in bad:
            first, dep = e['ood_study'][c]['first_over_s'], e['ood'].get('first_departure_s')
            if first is not None and dep is not None and first <= dep:
                leads.append(dep - first)
        out[c] = {'auroc_max': auroc([e['ood_study'][c]['max'] for e in bad],
                                     [e['ood_study'][c]['max'] for e in good]),
                  'warned_before_departure': len(leads),
                  'median_lead_s': float(np.median(leads)) if leads else None,
                  'clean_fraction_over': float(np.mean([e['ood_study'][c]['fraction_over'] for e in good]))
                  if good else None}
    return out


def run_study(model, bags, suite=None, cache_dir='out/cache', out=None, window=10, quantile=0.995,
              episodes_per_scene=1, progress=True):
    """Calibrate the three candidates on ``bags`` (the model's training driving), drive the held-out
    suite with the model (filter on), and summarise. Returns {'summary', 'episodes'}."""
    from liquid_controller.data.dataset import DatasetConfig, load_episodes, prepare
    from liquid_controller.evaluation.benchmark import load_suite, suite_eval_config
    from liquid_controller.evaluation.evaluate import evaluate_driver
    from liquid_controller.runtime.controller import ControllerConfig
    from liquid_controller.runtime.model_file import load_model
    loaded = load_model(model)
    card = loaded.card
    dataset = dict((card.training.get('config') or {}).get('dataset') or {})
    prepared = prepare(bags, cache_dir, DatasetConfig.from_dict(dataset), progress=progress)
    candidates = calibrate_candidates(loaded, load_episodes(prepared), card.input.imu_mean,
                                      card.input.imu_std, ControllerConfig().max_dt, window, quantile)
    if card.ood:   # the shipped monitor's statistics stand for 'neurons' when the card has them
        from liquid_controller.runtime.ood import OodStatistics
        candidates['neurons'] = OodStatistics.from_dict(card.ood)
    suite = load_suite(suite)
    report = evaluate_driver(OodStudyDriver(loaded, candidates), suite_eval_config(suite, episodes_per_scene),
                             progress=progress, label=f'{card.name} OOD study')
    result = {'model': card.name, 'window': window, 'quantile': quantile,
              'summary': study_summary(report['episodes']), 'episodes': report['episodes']}
    if out is not None:
        Path(out).parent.mkdir(parents=True, exist_ok=True)
        Path(out).write_text(json.dumps(result, indent=1) + '\n')
    return result


def main(argv=None):
    p = argparse.ArgumentParser(prog='python -m liquid_controller.evaluation.ood_study',
                                description='Compare three OOD scores (hidden-state Mahalanobis, '
                                            'head-feature Mahalanobis, lane-estimate consistency) on the '
                                            'held-out benchmark suite.')
    p.add_argument('--model', default='cfc', help='model name or path (torch backend; default cfc)')
    p.add_argument('--bags', nargs='+', required=True, help='training driving to calibrate on')
    p.add_argument('--suite', help='benchmark suite (default: the shipped one)')
    p.add_argument('--cache', default='out/cache', help='dataset cache folder')
    p.add_argument('--out', default='out/ood_study.json', help='JSON result file')
    args = p.parse_args(argv)
    result = run_study(args.model, args.bags, args.suite, args.cache, args.out)
    print(json.dumps(result['summary'], indent=1))
    return 0


if __name__ == '__main__':
    raise SystemExit(main())
