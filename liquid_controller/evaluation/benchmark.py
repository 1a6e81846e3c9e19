"""The held-out benchmark: a fixed suite of generated scenes, several models, filter on and off.

A suite is a folder with ``suite.yaml`` listing its scene files (relative paths) and their family
(``appearance``: the training track with new looks, ``shape``: new tracks in the training looks,
``both``), the generator commands that made them, and the episode settings. The shipped suite
(``liquid_controller/sim/benchmark_suite``) is committed, so results are comparable across versions;
its generator seeds (:data:`HELDOUT_GENERATOR_SEEDS`) must never be used for training data.

Each model is driven through the same runtime Controller as the robot (evaluation/evaluate.py), on
every scene, ``episodes_per_scene`` times with seeds 0..K-1; every episode starts at its own random
place on the lap and gets its own command disturbances (evaluation/trials.py), so episodes are
separate trials. Results: completion, lane departures, collisions, off-road ends and filter
interventions by row type (evaluation/interventions.py), each as a mean over episodes with a 95%
Student-t confidence interval (evaluation/statistics.py), overall, per family and per corner direction
(left / right corner / straight under the rover, sim/metrics.py), for the filter on and off (shadow).
"""
import math
import time
from dataclasses import dataclass, field
from pathlib import Path

import yaml

from liquid_controller.errors import InputError
from liquid_controller.evaluation.interventions import ROW_TYPES
from liquid_controller.evaluation.statistics import format_ci, mean_ci
# Generator seeds of the shipped suite: held out, never to be used for training scenes.
from liquid_controller.sim.scene_generator import HELDOUT_GENERATOR_SEEDS  # noqa: F401 - re-exported

SUITE_DIR = Path(__file__).resolve().parents[1] / 'sim' / 'benchmark_suite'
FAMILIES = ('appearance', 'shape', 'both')
FILTER_MODES = ('on', 'off')
CORNERS = ('left', 'right', 'straight')
_SUITE_KEYS = ('name', 'version', 'description', 'generator_seeds', 'generated_by', 'episode', 'scenes')
_EPISODE_KEYS = ('laps', 'seconds_per_lap', 'random_start', 'disturbance_rate_hz')


def check_training_seeds(seeds):
    """Raise InputError when any generator seed in ``seeds`` belongs to the held-out suite."""
    clash = sorted(set(int(s) for s in seeds) & HELDOUT_GENERATOR_SEEDS)
    if clash:
        raise InputError('seeds', clash, 'held-out benchmark generator seeds: never train on them')


@dataclass
class BenchmarkSuite:
    """A loaded suite: name, version, scene paths with their family, episode settings and the
    commands that generated it."""
    name: str
    version: int
    scenes: list            # [(absolute path str, family)]
    episode: dict
    description: str = ''
    generator_seeds: dict = field(default_factory=dict)
    generated_by: list = field(default_factory=list)
    path: str = ''
    names: list = field(default_factory=list)  # the scenes' ``name`` keys, in order

    def family_of(self, scene_name):
        """Family of a scene by its ``name`` (or file stem)."""
        return self._families[scene_name]

    def __post_init__(self):
        self._families = {Path(p).stem: f for p, f in self.scenes}
        self._families.update({n: f for n, (_, f) in zip(self.names, self.scenes)})


def load_suite(path=None):
    """Load and validate ``suite.yaml`` (a folder holding it, or the file; None: the shipped suite).

    Every error is an InputError naming the file and key; every listed scene must exist and validate.
    """
    from liquid_controller.errors import SceneError
    from liquid_controller.sim.scene import load_scene
    path = Path(path) if path is not None else SUITE_DIR
    if path.is_dir():
        path = path / 'suite.yaml'
    if not path.is_file():
        raise InputError('suite', str(path), 'no suite.yaml there')
    try:
        data = yaml.safe_load(path.read_text())
    except yaml.YAMLError as exc:
        raise InputError('suite', str(path), f'YAML syntax error: {exc}') from None
    where = str(path)
    if not isinstance(data, dict):
        raise InputError(where, type(data).__name__, 'must be a mapping')
    unknown = sorted(set(data) - set(_SUITE_KEYS))
    if unknown:
        raise InputError(f'{where}: {unknown[0]}', data[unknown[0]], f'unknown key (allowed: {list(_SUITE_KEYS)})')
    for key in ('name', 'version', 'episode', 'scenes'):
        if key not in data:
            raise InputError(f'{where}: {key}', None, 'missing required key')
    episode = data['episode']
    if not isinstance(episode, dict) or set(episode) - set(_EPISODE_KEYS):
        raise InputError(f'{where}: episode', episode, f'must be a mapping with keys from {list(_EPISODE_KEYS)}')
    scenes, scene_names = [], []
    if not isinstance(data['scenes'], list) or not data['scenes']:
        raise InputError(f'{where}: scenes', data['scenes'], 'must be a non-empty list')
    for i, item in enumerate(data['scenes']):
        key = f'{where}: scenes[{i}]'
        if not isinstance(item, dict) or set(item) != {'file', 'family'}:
            raise InputError(key, item, 'must be a mapping with keys file and family')
        if item['family'] not in FAMILIES:
            raise InputError(f'{key}.family', item['family'], f'must be one of {list(FAMILIES)}')
        scene_path = path.parent / item['file']
        try:
            scene_names.append(load_scene(str(scene_path)).name)
        except SceneError as exc:
            raise InputError(f'{key}.file', item['file'], str(exc)) from None
        scenes.append((str(scene_path), item['family']))
    if len(set(scene_names)) != len(scene_names):
        raise InputError(f'{where}: scenes', scene_names, 'scene names must be unique')
    return BenchmarkSuite(name=str(data['name']), version=int(data['version']), scenes=scenes,
                          episode=dict(episode), description=str(data.get('description', '')),
                          generator_seeds=dict(data.get('generator_seeds') or {}),
                          generated_by=list(data.get('generated_by') or []), path=where,
                          names=scene_names)


def suite_eval_config(suite, episodes_per_scene):
    """The EvalConfig of a suite run: every scene, seeds 0..K-1, the suite's episode settings
    (random start and disturbances on unless the suite says otherwise), no plots."""
    from liquid_controller.evaluation.evaluate import EvalConfig
    if not isinstance(episodes_per_scene, int) or isinstance(episodes_per_scene, bool) \
            or episodes_per_scene < 1:
        raise InputError('episodes_per_scene', episodes_per_scene, 'must be an integer >= 1')
    e = suite.episode
    return EvalConfig(scenes=tuple(p for p, _ in suite.scenes), laps=float(e.get('laps', 1.0)),
                      seeds=tuple(range(episodes_per_scene)),
                      seconds_per_lap=float(e.get('seconds_per_lap', 90.0)),
                      random_start=bool(e.get('random_start', True)),
                      disturbance_rate_hz=float(e.get('disturbance_rate_hz', 0.0)), plots=False)


# ------------------------------------------------------------------------------------------ summary

def _core(episodes):
    """Completion, departures, collisions, off-road ends and interventions over ``episodes``."""
    steps = sum(e.get('filter_steps', 0) for e in episodes)
    by_type = {t: sum(e.get('filter_rows', {}).get('by_type', {}).get(t, 0) for e in episodes)
               for t in ROW_TYPES}
    return {
        'episodes': len(episodes),
        'completed': sum(bool(e['completed']) for e in episodes),
        'lap_completion_pct': mean_ci([e['lap_completion_pct'] for e in episodes]),
        'lane_departures': mean_ci([e['lane_departures'] for e in episodes]),
        'lane_departures_total': int(sum(e['lane_departures'] for e in episodes)),
        'collisions': mean_ci([e['collisions'] for e in episodes]),
        'collisions_total': int(sum(e['collisions'] for e in episodes)),
        'off_road_ends': sum(e['end_reason'] == 'off_road' for e in episodes),
        'mean_abs_lateral_offset_m': mean_ci([e['mean_abs_lateral_offset_m'] for e in episodes]),
        'filter_steps': int(steps),
        'intervention_rate': mean_ci([e['filter_intervention_rate'] for e in episodes if e.get('filter_steps')]),
        'interventions_total': int(sum(e.get('filter_interventions', 0) for e in episodes)),
        'interventions_by_row_type': by_type,
        'interventions_by_row_type_rate': {t: (n / steps if steps else 0.0) for t, n in by_type.items()},
    }


def _corners(episodes):
    """Per turn direction under the rover: seconds driven, lane departures (total and per minute),
    time outside the lane, frame-weighted mean speed, and off-road ends there."""
    out = {}
    for c in CORNERS:
        parts = [e['by_corner'][c] for e in episodes if e.get('by_corner')]
        seconds = sum(p.get('seconds', 0.0) for p in parts)
        frames = sum(p.get('frames', 0) for p in parts)
        departures = sum(p.get('lane_departures', 0) for p in parts)
        speed = sum(p['mean_speed_mps'] * p['frames'] for p in parts if p.get('frames'))
        out[c] = {'seconds': seconds, 'frames': frames, 'lane_departures': departures,
                  'departures_per_minute': 60.0 * departures / seconds if seconds > 0 else None,
                  'time_outside_lane_s': sum(p.get('time_outside_lane_s', 0.0) for p in parts),
                  'mean_speed_mps': speed / frames if frames else None,
                  'off_road_ends': sum(e['end_reason'] == 'off_road' and e['by_corner'].get('end') == c
                                       for e in episodes if e.get('by_corner'))}
    tight = [e['by_corner']['tight'] for e in episodes if e.get('by_corner', {}).get('tight', {}).get('frames')]
    frames = sum(t['frames'] for t in tight)
    out['tight'] = {'frames': frames,
                    'mean_speed_mps': sum(t['mean_speed_mps'] * t['frames'] for t in tight) / frames
                    if frames else None}
    return out


def summarize(episodes, suite):
    """Overall, per-family and per-corner-direction summary of episode records of one model and
    filter mode on ``suite``."""
    families = {}
    for e in episodes:
        families.setdefault(suite.family_of(e['scene']), []).append(e)
    from liquid_controller.evaluation.ood_separation import ood_separation
    return {'overall': _core(episodes),
            'families': {f: _core(families[f]) for f in FAMILIES if f in families},
            'corners': _corners(episodes),
            'ood': ood_separation(episodes)}


# ------------------------------------------------------------------------------------------ running

def _driver(model, use_filter, settings):
    from liquid_controller.evaluation.evaluate import ControllerDriver, ExpertDriverAdapter
    if model == 'expert':
        return ExpertDriverAdapter()
    return ControllerDriver(model, settings, use_filter=use_filter)


def run_benchmark(models, suite=None, episodes_per_scene=1, filter_modes=('on',), workers=1,
                  out_dir=None, settings=None, progress=True, ray=None, command=None):
    """Run every model (model file names/paths, or 'expert' for the privileged reference) on the
    suite in each filter mode ('on', 'off' = network's nominal command drives, filter in shadow).
    ``workers`` processes, or Ray tasks with ``ray`` ('auto' or a cluster address; see evaluate_driver).

    Returns a JSON-able report {suite, config, runs: [{model, filter, info, summary, episodes, speed}],
    commands}; with ``out_dir`` writes ``benchmark.json`` and ``benchmark.md`` there. ``command``: the
    command line that made it (kept in ``commands``, which the README section quotes).
    """
    suite = suite if isinstance(suite, BenchmarkSuite) else load_suite(suite)
    if not models:
        raise InputError('models', models, 'give at least one model')
    modes = tuple(filter_modes)
    if not modes or any(m not in FILTER_MODES for m in modes):
        raise InputError('filter_modes', filter_modes, f'must be a non-empty list from {list(FILTER_MODES)}')
    from liquid_controller.evaluation.evaluate import evaluate_driver
    config = suite_eval_config(suite, episodes_per_scene)
    runs = []
    t0 = time.perf_counter()
    for model in models:
        for mode in (modes if model != 'expert' else ('n/a',)):
            driver = _driver(model, mode != 'off', settings)
            report = evaluate_driver(driver, config, progress=progress, workers=workers, ray=ray,
                                     label=f'{driver.name} filter {mode}')
            runs.append({'model': driver.name, 'filter': mode, 'info': report['model'],
                         'summary': summarize(report['episodes'], suite), 'episodes': report['episodes'],
                         'speed': report['speed']})
    result = {'suite': {'name': suite.name, 'version': suite.version, 'path': suite.path,
                        'scenes': len(suite.scenes),
                        'families': {f: sum(1 for _, g in suite.scenes if g == f) for f in FAMILIES}},
              'config': dict(config.to_dict(), scenes=[Path(p).stem for p in config.scenes],
                             episodes_per_scene=episodes_per_scene, workers=workers, ray=ray),
              'generated_utc': time.strftime('%Y-%m-%dT%H:%M:%SZ', time.gmtime()),
              'elapsed_s': time.perf_counter() - t0, 'runs': runs,
              'commands': [command] if command else []}
    if out_dir is not None:
        from liquid_controller.evaluation.results import write_report
        write_report(result, out_dir, 'benchmark', format_markdown(result))
    return result


def merge_results(results, command=None):
    """One report from several :func:`run_benchmark` reports (dicts) of the same suite and episode
    settings, e.g. one per model run at different times: their runs in order, their commands, plus
    ``command`` (the merge's own). InputError naming the first report that does not match."""
    if not results:
        raise InputError('results', results, 'give at least one benchmark report')
    first = results[0]
    key = ('episodes_per_scene', 'laps', 'random_start', 'disturbance_rate_hz', 'seconds_per_lap', 'scenes')
    for i, r in enumerate(results):
        if not isinstance(r, dict) or 'runs' not in r or 'suite' not in r:
            raise InputError(f'results[{i}]', type(r).__name__, 'not a report written by liquid-controller benchmark')
        if (r['suite']['name'], r['suite']['version']) != (first['suite']['name'], first['suite']['version']):
            raise InputError(f'results[{i}].suite', f"{r['suite']['name']} v{r['suite']['version']}",
                             f"differs from {first['suite']['name']} v{first['suite']['version']}")
        for k in key:
            if r['config'].get(k) != first['config'].get(k):
                raise InputError(f'results[{i}].config.{k}', r['config'].get(k),
                                 f"differs from the first report's {first['config'].get(k)!r}")
    seen = set()
    for r in results:
        for run in r['runs']:
            if (run['model'], run['filter']) in seen:
                raise InputError('results', f"{run['model']} filter {run['filter']}", 'appears twice')
            seen.add((run['model'], run['filter']))
    commands = [c for r in results for c in r.get('commands', [])] + ([command] if command else [])
    return dict(first, runs=[run for r in results for run in r['runs']], commands=commands,
                elapsed_s=sum(r.get('elapsed_s', 0.0) for r in results),
                generated_utc=max(r['generated_utc'] for r in results))


def load_result(path):
    """Read a ``benchmark.json`` (InputError naming the file when it is not one)."""
    from liquid_controller.evaluation.results import read_report
    return read_report(path, 'benchmark json', ('runs', 'suite'), 'liquid-controller benchmark')


def readme_section(result):
    """The README's held-out benchmark block: what was run, the overall table, the per-family table
    (both straight from :func:`format_markdown`) and the commands that regenerate it."""
    tables = format_markdown(result).split('\n\nPer turn direction')[0]   # header, overall, families
    models = {}
    for r in result['runs']:
        models.setdefault(r['model'], r['info'])
    lines = ['## Held-out benchmark', '', tables, '',
             'Models: ' + '; '.join(
                 f"{name} ({info.get('core')}, {info.get('parameters', 0):,} parameters"
                 + (f", {info.get('liquid_neurons')} liquid neurons" if info.get('liquid_neurons') else '')
                 + ')' for name, info in models.items()) + '. Per corner direction, interventions by '
             'row type and the OOD monitor: [docs/benchmarks.md](docs/benchmarks.md).']
    if result.get('commands'):
        lines += ['', 'Regenerate this section:', '', '```bash', *result['commands'], '```']
    return '\n'.join(lines)


# ------------------------------------------------------------------------------------------ markdown

def _rows(head, rows):
    lines = ['| ' + ' | '.join(head) + ' |', '|' + '---|' * len(head)]
    lines += ['| ' + ' | '.join(str(c) for c in r) + ' |' for r in rows]
    return '\n'.join(lines)


def format_markdown(result):
    """Markdown tables of a :func:`run_benchmark` result: overall, per family, per corner direction,
    interventions by row type. Cells with ± are means over episodes with their 95% t-interval."""
    s, cfg = result['suite'], result['config']
    fam = ', '.join(f'{n} {f}' for f, n in s['families'].items())
    out = [f"Suite `{s['name']}` v{s['version']}: {s['scenes']} scenes ({fam}); "
           f"{cfg['episodes_per_scene']} episode(s) per scene, {cfg['laps']:g} lap(s) each, random start "
           f"{'on' if cfg['random_start'] else 'off'}, disturbances {cfg['disturbance_rate_hz']:g}/s; "
           f"generated {result['generated_utc']}. ± is the 95% Student-t interval over episodes (n).", '']
    rows = []
    for r in result['runs']:
        o = r['summary']['overall']
        rows.append((r['model'], r['filter'], o['episodes'], format_ci(o['lap_completion_pct'], 1),
                     f"{o['completed']}/{o['episodes']}", format_ci(o['lane_departures'], 2),
                     o['collisions_total'], o['off_road_ends'],
                     format_ci(o['intervention_rate'], 1, 100.0, '%') if o['filter_steps'] else '-'))
    out.append(_rows(('Model', 'Filter', 'Episodes', 'Lap completion %', 'Completed', 'Departures / episode',
                      'Collisions', 'Off-road ends', 'Interventions (% of steps)'), rows))
    out += ['', 'Per family: lap completion % / departures per episode / off-road ends.', '']
    rows = []
    for r in result['runs']:
        f = r['summary']['families']
        rows.append((r['model'], r['filter']) + tuple(
            (f"{format_ci(f[x]['lap_completion_pct'], 1)} / {f[x]['lane_departures']['mean']:.2f} / "
             f"{f[x]['off_road_ends']}") if x in f else '-' for x in FAMILIES))
    out.append(_rows(('Model', 'Filter') + FAMILIES, rows))
    out += ['', 'Per turn direction of the track under the rover (corner: radius < 10 m): lane departures '
                '(per minute there) / off-road ends / mean speed m/s; last column: mean speed in corners '
                'tighter than 2 m radius.', '']
    rows = []
    for r in result['runs']:
        c = r['summary']['corners']
        rows.append((r['model'], r['filter']) + tuple(
            f"{c[x]['lane_departures']} ({c[x]['departures_per_minute'] or 0:.2f}/min) / {c[x]['off_road_ends']} / "
            f"{c[x]['mean_speed_mps'] or 0:.2f}" for x in CORNERS)
            + (f"{c['tight']['mean_speed_mps']:.2f}" if c['tight']['mean_speed_mps'] is not None else '-',))
    out.append(_rows(('Model', 'Filter', 'left corners', 'right corners', 'straights', 'tight-corner speed'),
                     rows))
    rows = []
    for r in result['runs']:
        o = r['summary']['overall']
        if not o['filter_steps']:
            continue
        rows.append((r['model'], r['filter']) + tuple(
            f"{100 * o['interventions_by_row_type_rate'][t]:.1f}%" for t in ROW_TYPES))
    if rows:
        out += ['', 'Filter interventions by binding row type, % of filter steps (a step where two types '
                    'bind counts under both; with the filter off they are counted in shadow).', '',
                _rows(('Model', 'Filter') + ROW_TYPES, rows)]
    rows = []
    for r in result['runs']:
        o = r['summary'].get('ood') or {}
        if o.get('available'):
            rows.append((r['model'], r['filter'], f"{o['failing']}/{o['episodes']}", _num(o['auroc_max'], 3),
                         _num(o['auroc_mean'], 3), f"{o['failing_warned_before_departure']}/{o['failing']}",
                         _num(o['median_lead_s'], 2), _num(100 * o['clean_fraction_over'], 2)))
    if rows:
        out += ['', 'OOD monitor: failing episodes (a lane departure, off-road or collision end) of all scored; '
                    'AUROC of the per-episode max and mean score for failing vs clean; failing episodes whose '
                    'score crossed 1 before the first departure; median lead time (s); % of clean episodes\' '
                    'frames above 1 (false warnings).', '',
                _rows(('Model', 'Filter', 'Failing', 'AUROC max', 'AUROC mean', 'Warned before departure',
                       'Median lead s', 'Clean frames over 1 %'), rows)]
    return '\n'.join(out)


def _num(x, digits):
    return '-' if x is None or (isinstance(x, float) and math.isnan(x)) else f'{x:.{digits}f}'
