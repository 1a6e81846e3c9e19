"""Which OOD score to ship: three candidates scored side by side on the same closed-loop episodes.

- ``neurons``: Mahalanobis distance of the recurrent state (what the runtime monitor computes).
- ``features``: Mahalanobis distance of the perception head's output (the 32 image features), fitted on
  the same training data (``ControllerOutput.features``).
- ``aux``: a prediction-consistency score without any statistics of the inputs: the policy's own lane
  offset estimate must change as the rover's motion says, d(offset)/dt = v * sin(heading error); the
  score is the smoothed absolute mismatch (m/s) divided by its 99.5% quantile on the training data.

Each candidate is smoothed over the same window and scaled so that 1 is its training threshold; each
episode gets each candidate's max and the time it first crossed 1. ``liquid-controller benchmark``
reports only the shipped monitor; this study is run by ``python -m liquid_controller.evaluation.ood_study``
(results in docs/benchmarks.md).

Closed-loop mode (:func:`run_closed_loop_study`): the two Mahalanobis sources, ``neurons`` and
``features``, both calibrated the way the shipped monitor is, on the model's *own* driving of the
calibration scenes (one closed-loop drive collects both vectors, evaluation/closed_loop_calibration.py),
then scored side by side, as shadow monitors that never act, on the held-out suite and on fresh
in-distribution episodes (the calibration scenes with other seeds). Per source: AUROC of the
per-episode mean, max and share of frames above 1 for failing vs clean held-out episodes, failing
episodes warned before their first departure, median lead time, and the false-warning share of frames
on clean held-out episodes and on the fresh in-distribution ones. Any backend that hands out the
features runs it (torch; onnx with a current export); the model card is not changed.

    python -m liquid_controller.evaluation.ood_study --closed-loop summer --seeds 100-115 \
        --model models/cfc.json --workers 2 --out out/ood_study_closed_loop
"""
from __future__ import annotations

import argparse
import json
from collections import deque
from pathlib import Path

import numpy as np

from liquid_controller.errors import InputError
from liquid_controller.evaluation.evaluate import ControllerDriver, ood_episode_stats
from liquid_controller.evaluation.ood_separation import auroc, failed
from liquid_controller.runtime.ood import FEATURE_SOURCES, OodMonitor, smoothed_scores

__all__ = ['CANDIDATES', 'OodStudyDriver', 'ShadowMonitorDriver', 'calibrate_candidates', 'run_study',
           'run_closed_loop_study', 'source_summary', 'format_source_summary']

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

    def reset(self, world, seed):
        super().reset(world, seed)
        self._feature_monitor = OodMonitor(self.candidates['features'])
        self._aux_recent = deque(maxlen=self.candidates['neurons'].window)
        self._prev_offset = None
        self._trace = {c: [] for c in CANDIDATES}
        self._times = []

    def act(self, observation, truth):
        command = super().act(observation, truth)
        out_score = self._ood[-1][1]
        t = observation.stamp
        self._times.append(t)
        self._trace['neurons'].append(out_score)
        features = self.last_output.features    # (F,) None when no policy step ran for this frame
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


# ------------------------------------------------------------------------------- closed-loop mode

class ShadowMonitorDriver(ControllerDriver):
    """The benchmark's ControllerDriver that also scores every policy step with OOD monitors of its
    own, one per source ({'neurons' | 'features': OodStatistics}). They are shadows: the driving is
    the Controller's alone (its own card monitor and the settings' ``ood_action`` included). Each
    episode record gets ``ood_sources``: per source, :func:`evaluate.ood_episode_stats` of its scores
    (mean, max, frames above 1, first crossing, lead time before the first departure)."""

    def __init__(self, model, monitors, settings=None, use_filter=True):
        for source in monitors:
            if source not in FEATURE_SOURCES:
                raise InputError('monitors', source, f'sources must be among {FEATURE_SOURCES}')
        self.monitors = dict(monitors)  # before the base class's __init__: it resets the stats
        super().__init__(model, settings, use_filter=use_filter)

    def reset(self, world, seed):
        super().reset(world, seed)
        self._shadow = {s: OodMonitor(stats) for s, stats in self.monitors.items()}

    def _reset_stats(self):
        super()._reset_stats()
        self._shadow_samples = {s: [] for s in self.monitors}   # (sim time s, score, in lane)

    def act(self, observation, truth):
        command = super().act(observation, truth)
        out = self.last_output
        # the features are set only on outputs a policy step made; other frames are unscored (nan),
        # as the Controller's own monitor leaves them
        stepped = out.features is not None
        for source, monitor in self._shadow.items():
            vector = out.neurons if source == 'neurons' else out.features
            score = monitor.update(vector, observation.stamp) if stepped else float('nan')
            self._shadow_samples[source].append((observation.stamp, score, bool(truth.in_lane)))
        return command

    def episode_stats(self):
        stats = super().episode_stats()
        stats['ood_sources'] = {s: ood_episode_stats(v) for s, v in self._shadow_samples.items()}
        return stats


def _none_if_nan(value):
    # JSON reports carry None, not NaN (as runtime/ood.ood_summary)
    return None if value is None or (isinstance(value, float) and np.isnan(value)) else value


def source_summary(heldout, fresh, sources=FEATURE_SOURCES):
    """Per source, over held-out episode records ``heldout`` and fresh in-distribution ones ``fresh``
    (both with ``ood_sources``): counts, AUROC of the per-episode mean / max / share of frames above 1
    for failing vs clean held-out episodes, failing episodes warned before their first departure,
    median lead time (s), and the share of frames above 1 on clean held-out and on fresh episodes.
    Unavailable values are None."""
    out = {}
    for source in sources:
        scored = [e for e in heldout if e['ood_sources'][source]['available']]
        bad = [e['ood_sources'][source] for e in scored if failed(e)]
        good = [e['ood_sources'][source] for e in scored if not failed(e)]
        new = [e['ood_sources'][source] for e in fresh if e['ood_sources'][source]['available']]
        leads = [r['lead_s'] for r in bad if r['lead_s'] is not None]

        def share(records):
            frames = sum(r['frames'] for r in records)
            return sum(r['frames_over'] for r in records) / frames if frames else None

        out[source] = {
            'episodes': len(scored), 'failing': len(bad), 'clean': len(good),
            **{f'auroc_{key}': _none_if_nan(auroc([r[key] for r in bad], [r[key] for r in good]))
               for key in ('mean', 'max', 'fraction_over')},
            'failing_warned_before_departure': len(leads),
            'median_lead_s': float(np.median(leads)) if leads else None,
            'clean_fraction_over': share(good),
            'fresh_episodes': len(new),
            'fresh_fraction_over': share(new),
        }
    return out


def _fmt(value, digits=3, pct=False):
    if value is None:
        return 'n/a'
    return f'{100 * value:.2f}%' if pct else f'{value:.{digits}f}'


def _seed_text(seeds):
    # '100-115' for a run of consecutive seeds, else the list
    seeds = list(seeds)
    if len(seeds) > 2 and seeds == list(range(seeds[0], seeds[-1] + 1)):
        return f'{seeds[0]}-{seeds[-1]}'
    return ', '.join(str(v) for v in seeds)


def format_source_summary(result):
    """Markdown of a :func:`run_closed_loop_study` result: the settings and one row per source."""
    c = result['calibration']
    lines = [f"# OOD sources under closed-loop calibration: {result['model']}", '',
             f"Calibration: the model's own driving of {', '.join(c['scenes'])}, seeds "
             f"{_seed_text(c['seeds'])} ({c['episodes']} episodes, {c['frames']} policy steps); "
             f"window {result['window']} frames, quantile {100 * result['quantile']:g}%. Held-out: "
             f"{result['heldout']['suite']} ({result['heldout']['episodes']} episodes); fresh in-distribution: "
             f"seeds {_seed_text(result['fresh']['seeds'])} "
             f"({result['fresh']['episodes']} episodes).", '',
             '| source | dims | AUROC mean | AUROC max | AUROC share above 1 | failing warned before '
             'departure | median lead s | clean held-out frames above 1 | fresh in-distribution frames '
             'above 1 |',
             '| --- | --- | --- | --- | --- | --- | --- | --- | --- |']
    for source, row in result['summary'].items():
        lines.append(
            f"| {source} | {c['dims'][source]} | {_fmt(row['auroc_mean'])} | {_fmt(row['auroc_max'])} | "
            f"{_fmt(row['auroc_fraction_over'])} | {row['failing_warned_before_departure']}/{row['failing']} | "
            f"{_fmt(row['median_lead_s'], 2)} | {_fmt(row['clean_fraction_over'], pct=True)} | "
            f"{_fmt(row['fresh_fraction_over'], pct=True)} |")
    return '\n'.join(lines) + '\n'


def run_closed_loop_study(model, scenes, seeds, fresh_seeds=tuple(range(8)), suite=None,
                          episodes_per_scene=1, laps=1.0, max_seconds=None, suite_max_seconds=None,
                          window=10, quantile=0.995, settings=None, workers=1, out_dir=None,
                          progress=True):
    """Fit the 'neurons' and the 'features' monitor from one closed-loop calibration drive of
    ``model`` on ``scenes`` x ``seeds`` (random starts and pushes, ``laps`` laps or ``max_seconds``),
    then drive the held-out ``suite`` (None: the shipped one; ``episodes_per_scene`` seeds each;
    ``suite_max_seconds`` shortens its episodes) and fresh in-distribution episodes (``scenes`` x
    ``fresh_seeds``, as the calibration) with both as shadow monitors, and summarise
    (:func:`source_summary`). The model card is not changed.

    Returns {'model', 'window', 'quantile', 'calibration' (with both fitted monitors, as the card's
    ``ood`` section stores them), 'heldout', 'fresh', 'summary', 'episodes', 'fresh_episodes'}; with
    ``out_dir``, also writes ``ood_sources.json`` and ``ood_sources.md`` there.
    """
    import dataclasses

    from liquid_controller.evaluation.benchmark import load_suite, suite_eval_config
    from liquid_controller.evaluation.closed_loop_calibration import collect_closed_loop
    from liquid_controller.evaluation.evaluate import EvalConfig, evaluate_driver
    from liquid_controller.runtime.ood import fit_gaussian_monitor
    from liquid_controller.runtime.policy_backend import load_runtime_model
    from liquid_controller.runtime.settings import load_settings
    seeds, fresh_seeds = tuple(seeds), tuple(fresh_seeds)
    overlap = sorted(set(seeds) & set(fresh_seeds))
    if overlap:
        raise InputError('fresh_seeds', overlap, 'must differ from the calibration seeds')
    settings = settings if settings is not None else load_settings()
    loaded = load_runtime_model(model, settings['backend'])
    if loaded.policy.state_size == 0:
        raise InputError('model', loaded.card.name, "has no recurrent state: only 'features' applies, "
                                                    'nothing to compare')
    vectors, calib_report, _ = collect_closed_loop(
        loaded, scenes, seeds, FEATURE_SOURCES, laps=laps, max_seconds=max_seconds, settings=settings,
        workers=workers, progress=progress, label=f'{loaded.card.name} OOD calibration (both sources)')
    if not vectors['neurons']:
        raise InputError('scenes', list(scenes), 'no policy steps were driven')
    monitors = {s: fit_gaussian_monitor(vectors[s], s, window=window, quantile=quantile)
                for s in FEATURE_SOURCES}
    driver = ShadowMonitorDriver(loaded, monitors, settings)
    suite = load_suite(suite)
    heldout_config = suite_eval_config(suite, episodes_per_scene)
    if suite_max_seconds is not None:
        heldout_config = dataclasses.replace(heldout_config, max_seconds=suite_max_seconds)
    heldout = evaluate_driver(driver, heldout_config, progress=progress, workers=workers,
                              label=f'{loaded.card.name} OOD sources, held-out')
    fresh_config = EvalConfig(scenes=tuple(scenes), laps=laps, seeds=fresh_seeds, plots=False,
                              random_start=True, disturbance_rate_hz=0.1, max_seconds=max_seconds)
    fresh = evaluate_driver(driver, fresh_config, progress=progress, workers=workers,
                            label=f'{loaded.card.name} OOD sources, fresh in-distribution')
    result = {
        'model': loaded.card.name, 'window': window, 'quantile': quantile,
        'calibration': {'scenes': list(scenes), 'seeds': list(seeds), 'laps': laps,
                        'max_seconds': max_seconds, 'frames': monitors['neurons'].frames,
                        'dims': {s: m.dim for s, m in monitors.items()},
                        'thresholds': {s: m.threshold for s, m in monitors.items()},
                        'episodes': len(calib_report['episodes']),
                        # the fitted monitors as a card stores them: the better one can be shipped
                        # as it is (runtime.model_file.set_ood_statistics)
                        'statistics': {s: m.to_dict() for s, m in monitors.items()}},
        'heldout': {'suite': suite.name, 'episodes_per_scene': episodes_per_scene,
                    'episodes': len(heldout['episodes']), 'max_seconds': suite_max_seconds},
        'fresh': {'scenes': list(scenes), 'seeds': list(fresh_seeds), 'episodes': len(fresh['episodes'])},
        'summary': source_summary(heldout['episodes'], fresh['episodes']),
        'episodes': heldout['episodes'], 'fresh_episodes': fresh['episodes'],
    }
    if out_dir is not None:
        out_dir = Path(out_dir)
        out_dir.mkdir(parents=True, exist_ok=True)
        (out_dir / 'ood_sources.json').write_text(json.dumps(result, indent=1) + '\n')
        (out_dir / 'ood_sources.md').write_text(format_source_summary(result))
    return result


def main(argv=None):
    """The study's command line: ``--bags`` (three candidates, expert calibration) or
    ``--closed-loop`` (the two Mahalanobis sources, closed-loop calibration)."""
    from liquid_controller.evaluation.closed_loop_calibration import parse_seeds
    p = argparse.ArgumentParser(prog='python -m liquid_controller.evaluation.ood_study',
                                description='Compare OOD scores on the held-out benchmark suite: with '
                                            '--bags three candidates (hidden-state Mahalanobis, '
                                            'head-feature Mahalanobis, lane-estimate consistency) '
                                            'calibrated on recorded driving; with --closed-loop the '
                                            'hidden-state and the perception-feature Mahalanobis '
                                            "monitors calibrated on the model's own driving.")
    p.add_argument('--model', default='cfc', help='model name or path (default cfc)')
    mode = p.add_mutually_exclusive_group(required=True)
    mode.add_argument('--bags', nargs='+', help='training driving to calibrate on (torch backend)')
    mode.add_argument('--closed-loop', nargs='+', metavar='SCENE',
                      help='scenes the model drives itself to calibrate both sources on')
    p.add_argument('--seeds', default='100-115',
                   help='closed loop: calibration seeds, a list 1,2,3 or a range (default 100-115)')
    p.add_argument('--fresh-seeds', default='0-7',
                   help='closed loop: seeds of the fresh in-distribution episodes (default 0-7)')
    p.add_argument('--laps', type=float, default=1.0,
                   help='closed loop: laps per calibration / fresh episode (default 1.0)')
    p.add_argument('--episodes-per-scene', type=int, default=1,
                   help='closed loop: held-out episodes per suite scene (default 1)')
    p.add_argument('--workers', type=int, default=1, help='closed loop: processes (default 1)')
    p.add_argument('--suite', help='benchmark suite (default: the shipped one)')
    p.add_argument('--cache', default='out/cache', help='dataset cache folder (default out/cache)')
    p.add_argument('--out', default=None,
                   help='--bags: the JSON result file (default out/ood_study.json); --closed-loop: '
                        'the folder for ood_sources.json and .md (default out/ood_study_closed_loop)')
    args = p.parse_args(argv)
    if args.closed_loop:
        result = run_closed_loop_study(args.model, args.closed_loop, parse_seeds(args.seeds),
                                       parse_seeds(args.fresh_seeds, '--fresh-seeds'), args.suite,
                                       episodes_per_scene=args.episodes_per_scene, laps=args.laps,
                                       workers=args.workers,
                                       out_dir=args.out or 'out/ood_study_closed_loop')
        print(format_source_summary(result))
        return 0
    result = run_study(args.model, args.bags, args.suite, args.cache, args.out or 'out/ood_study.json')
    print(json.dumps(result['summary'], indent=1))
    return 0


if __name__ == '__main__':
    raise SystemExit(main())
