"""The held-out benchmark (evaluation/benchmark.py): the shipped suite, suite validation, summaries
with confidence intervals per family and corner direction, and a real run over a small suite."""
import shutil

import pytest
import yaml

from liquid_controller.errors import InputError
from liquid_controller.evaluation import benchmark as bm
from liquid_controller.evaluation.statistics import mean_ci
from liquid_controller.runtime.model_file import create_random_model
from liquid_controller.sim import load_scene


def test_shipped_suite_is_held_out_and_complete():
    suite = bm.load_suite()
    families = [f for _, f in suite.scenes]
    assert len(families) >= 30
    assert {f: families.count(f) for f in set(families)} == {'appearance': 12, 'shape': 12, 'both': 12}
    assert set(suite.generator_seeds.values()) <= set(bm.HELDOUT_GENERATOR_SEEDS)
    assert len(suite.generated_by) == 3 and all('scenes generate' in c for c in suite.generated_by)
    directions = {load_scene(p).track.direction for p, f in suite.scenes if f != 'appearance'}
    assert directions == {'ccw', 'cw'}
    assert suite.episode['random_start'] is True
    with pytest.raises(InputError, match='held-out'):
        bm.check_training_seeds([0, 1, 170002])
    bm.check_training_seeds([0, 1, 2])


def test_shipped_stress_suite_is_held_out_and_beyond_the_training_ranges():
    """The stress suite: 24 scenes whose corners and lanes lie beyond the training scenes' ranges."""
    from liquid_controller.sim import Track
    from liquid_controller.sim.scene_generator import GeneratorConfig
    suite = bm.load_suite(bm.SUITE_DIR.parent / 'stress_suite')
    assert suite.name == 'stress' and len(suite.scenes) == 24
    assert set(suite.generator_seeds.values()) <= set(bm.HELDOUT_GENERATOR_SEEDS)
    assert not set(suite.generator_seeds.values()) & set(bm.load_suite().generator_seeds.values())
    training = GeneratorConfig()             # the ranges the training scenes were drawn from
    scenes = [load_scene(p) for p, _ in suite.scenes]
    assert all(s.track.lane_width <= training.lane_width[0] for s in scenes)
    radii = [1.0 / abs(Track(s.track).curvature).max() for s in scenes]
    assert sum(r < training.corner_radius[0] for r in radii) >= 20


def _small_suite(tmp_path, laps=0.08, seconds_per_lap=75.0):
    """Two scenes of the shipped suite (a clockwise new track and a new look) as a suite of its own."""
    shipped = bm.load_suite()
    picks = [next((p, f) for p, f in shipped.scenes if f == 'shape' and load_scene(p).track.direction == 'cw'),
             next((p, f) for p, f in shipped.scenes if f == 'appearance')]
    entries = []
    for path, family in picks:
        (tmp_path / family).mkdir(parents=True, exist_ok=True)
        shutil.copy(path, tmp_path / family)
        entries.append({'file': f'{family}/{path.rsplit("/", 1)[1]}', 'family': family})
    (tmp_path / 'suite.yaml').write_text(yaml.safe_dump({
        'name': 'tiny', 'version': 1, 'episode': {'laps': laps, 'seconds_per_lap': seconds_per_lap,
                                                  'random_start': True, 'disturbance_rate_hz': 0.2},
        'scenes': entries}))
    return tmp_path


@pytest.mark.parametrize('change, key', [
    (lambda d: d.update(colour=1), 'colour'),
    (lambda d: d['scenes'][0].update(family='texture'), 'scenes[0].family'),
    (lambda d: d['scenes'][0].update(file='shape/missing.yaml'), 'scenes[0].file'),
    (lambda d: d['episode'].update(lapz=1), 'episode'),
    (lambda d: d.pop('scenes'), 'scenes'),
])
def test_suite_errors_name_the_key(tmp_path, change, key):
    folder = _small_suite(tmp_path)
    data = yaml.safe_load((folder / 'suite.yaml').read_text())
    change(data)
    (folder / 'suite.yaml').write_text(yaml.safe_dump(data))
    with pytest.raises(InputError, match=key.replace('[', r'\[').replace(']', r'\]')):
        bm.load_suite(folder)


def _episode(scene, completion, departures, end='laps', corner='straight', steps=100, rows=None):
    rows = rows or {'acceleration': 10}
    by_type = {t: rows.get(t, 0) for t in bm.ROW_TYPES}
    interventions = max(rows.values())
    by_corner = {c: {'frames': 10, 'seconds': 1.0, 'lane_departures': departures if c == corner else 0,
                     'time_outside_lane_s': 0.0, 'mean_abs_lateral_offset_m': 0.1, 'mean_speed_mps': 1.0}
                 for c in bm.CORNERS}
    by_corner['end'] = corner
    return {'scene': scene, 'lap_completion_pct': completion, 'completed': completion >= 100,
            'lane_departures': departures, 'collisions': 0, 'end_reason': end,
            'mean_abs_lateral_offset_m': 0.1, 'filter_steps': steps, 'filter_interventions': interventions,
            'filter_intervention_rate': interventions / steps,
            'filter_rows': {'by_type': by_type}, 'by_corner': by_corner}


def test_summary_splits_families_and_corners_with_intervals(tmp_path):
    suite = bm.load_suite(_small_suite(tmp_path))
    shape_name, look_name = suite.names
    episodes = [_episode(shape_name, 100.0, 0), _episode(shape_name, 40.0, 2, 'off_road', 'right'),
                _episode(look_name, 100.0, 1, corner='left'), _episode(look_name, 80.0, 0)]
    s = bm.summarize(episodes, suite)
    assert s['overall']['lap_completion_pct'] == mean_ci([100.0, 40.0, 100.0, 80.0])
    assert s['overall']['completed'] == 2 and s['overall']['off_road_ends'] == 1
    assert s['families']['shape']['lap_completion_pct']['mean'] == 70.0
    assert s['families']['appearance']['lane_departures']['mean'] == 0.5
    assert s['corners']['right']['lane_departures'] == 2 and s['corners']['right']['off_road_ends'] == 1
    assert s['corners']['left']['lane_departures'] == 1 and s['corners']['left']['off_road_ends'] == 0
    assert s['overall']['interventions_by_row_type']['acceleration'] == 40
    assert s['overall']['interventions_by_row_type_rate']['acceleration'] == pytest.approx(0.1)


def test_real_run_over_a_small_suite_writes_json_and_markdown(tmp_path):
    suite = _small_suite(tmp_path / 'suite')
    model = tmp_path / 'rand_cfc.json'
    create_random_model(model, name='rand_cfc')
    result = bm.run_benchmark([str(model), 'expert'], suite, episodes_per_scene=2, filter_modes=('on', 'off'),
                              out_dir=tmp_path / 'out', progress=False)
    runs = [(r['model'], r['filter']) for r in result['runs']]
    assert runs == [('rand_cfc', 'on'), ('rand_cfc', 'off'), ('expert', 'n/a')]
    for r in result['runs']:
        o = r['summary']['overall']
        assert o['episodes'] == 4 and o['lap_completion_pct']['n'] == 4
        assert set(r['summary']['families']) == {'shape', 'appearance'}
        starts = {round(e['start']['start'], 4) for e in r['episodes']}
        assert len(starts) == 4                                # every episode starts elsewhere
    expert = result['runs'][2]['summary']['overall']
    assert expert['completed'] == 4 and expert['filter_steps'] == 0
    model_on = result['runs'][0]['summary']['overall']
    assert model_on['filter_steps'] > 0
    assert sum(model_on['interventions_by_row_type'].values()) >= model_on['interventions_total']
    md = (tmp_path / 'out' / 'benchmark.md').read_text()
    assert '| rand_cfc | off |' in md and 'right corners' in md and 'acceleration' in md
    assert (tmp_path / 'out' / 'benchmark.json').is_file()
    with pytest.raises(InputError, match='filter_modes'):
        bm.run_benchmark(['expert'], suite, filter_modes=('maybe',))
