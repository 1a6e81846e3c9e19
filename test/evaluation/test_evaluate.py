"""Closed-loop evaluation (evaluation/evaluate.py), comparison (evaluation/compare.py), README results section
(evaluation/results.py) and their commands. Real simulator (MuJoCo, real renderer), real runtime Controller,
real model files (random weights: the loop is tested, not driving quality; the expert checks the loop
with a driver that does drive)."""
import dataclasses
import json
import math

import numpy as np
import pytest

from liquid_controller.cli import main
from liquid_controller.errors import InputError, ModelFileError
from liquid_controller.runtime.controller import Controller, MeasuredState
from liquid_controller.runtime.model_file import create_random_model, load_model
from liquid_controller.runtime.preprocess import ImuWindow
from liquid_controller.runtime.settings import load_settings
from liquid_controller.sim import DrivingWorld, WorldConfig
from liquid_controller.evaluation import results
from liquid_controller.evaluation.compare import AttentionSettings, compare_models
from liquid_controller.evaluation.evaluate import (ControllerDriver, Driver, EvalConfig, ExpertDriverAdapter,
                                              evaluate_driver, evaluate_model)

# fields that measure the machine, not the episode
WALL_FIELDS = ('wall_s', 'realtime_factor', 'step_time_us', 'policy_time_us')


@pytest.fixture(scope='module')
def model_path(tmp_path_factory):
    path = tmp_path_factory.mktemp('models') / 'rand_cfc.json'
    create_random_model(path, name='rand_cfc')
    return path


@pytest.fixture(scope='module')
def world():
    w = DrivingWorld(WorldConfig())
    yield w
    w.close()


def _episode_without_wall(record):
    return {k: v for k, v in record.items() if k not in WALL_FIELDS}


def test_model_evaluation_goes_through_the_controller_and_matches_a_direct_loop(model_path, world):
    config = EvalConfig(scenes=('summer',), laps=1, seeds=(3,), max_seconds=2.0, plots=False)
    report = evaluate_driver(ControllerDriver(model_path), config, progress=False, world=world)
    rec = report['episodes'][0]

    # the same episode written out by hand: the node's feeding of Controller.step, metrics from truths
    settings = load_settings()
    ctl = Controller(load_model(model_path), settings.controller_config(), settings.safety_config())
    obs = world.reset(scene='summer', seed=3)
    ctl.start(now=0.0)
    truth = world.last_truth
    truths, commands, interventions, statuses = [truth], [], 0, []
    while True:
        window = ImuWindow(obs.imu.stamps, obs.imu.angular_velocity, obs.imu.linear_acceleration)
        out = ctl.step(obs.image, obs.stamp, window, MeasuredState(speed=obs.odometry.v), now=obs.stamp)
        commands.append(out.command)
        statuses.append(out.status)
        interventions += bool(out.certificate.intervened)
        if truth.stamp >= 2.0 - 1e-9:
            break
        result = world.step(tuple(out.command))
        obs, truth = result.observation, result.truth
        truths.append(truth)
    offsets = np.abs([t.lateral_offset for t in truths])
    in_lane = [t.in_lane for t in truths]
    departures = int(not in_lane[0]) + sum(a and not b for a, b in zip(in_lane, in_lane[1:]))

    assert rec['frames'] == len(truths) == 61  # 0 .. 2 s at 30 Hz
    assert rec['end_reason'] == 'time_limit' and not rec['completed']
    assert sum(rec['controller_statuses'].values()) == rec['frames']  # every frame went through step
    assert rec['controller_statuses'] == {s: statuses.count(s) for s in sorted(set(statuses))}
    assert rec['mean_abs_lateral_offset_m'] == pytest.approx(offsets.mean(), abs=1e-12)
    assert rec['max_abs_lateral_offset_m'] == pytest.approx(offsets.max(), abs=1e-12)
    assert rec['lane_departures'] == departures
    assert rec['filter_interventions'] == interventions
    assert rec['mean_speed_mps'] == pytest.approx(np.mean([t.speed for t in truths]), abs=1e-12)
    assert rec['laps'] == pytest.approx(truths[-1].progress_laps, abs=1e-12)
    assert rec['lap_completion_pct'] == pytest.approx(100 * truths[-1].progress_laps, abs=1e-9)
    assert truths[-1].speed > 0.05  # the policy's command moved the rover: the loop is closed
    assert rec['step_time_us']['n'] == rec['frames'] and rec['step_time_us']['p50'] > 0
    assert report['model']['core'] == 'cfc' and report['model']['liquid_neurons'] == 19
    assert report['model']['untrained'] is True
    assert report['speed']['sim_s'] == pytest.approx(2.0)


def test_expert_through_the_same_loop_completes_a_lap_in_summer_without_departures():
    config = EvalConfig(scenes=('summer',), laps=1, seeds=(0,), plots=False)
    report = evaluate_driver(ExpertDriverAdapter(), config, progress=False)
    rec = report['episodes'][0]
    assert rec['end_reason'] == 'laps' and rec['completed']
    assert rec['lap_completion_pct'] == pytest.approx(100.0)
    assert rec['lane_departures'] == 0 and rec['collisions'] == 0
    assert rec['mean_abs_lateral_offset_m'] < 0.05
    assert 20.0 < rec['duration_s'] < config.time_limit
    agg = report['scenes']['summer']
    assert agg['completed_episodes'] == 1 and agg['lane_departures'] == 0


class SpinDriver(Driver):
    """Drives forward while turning hard: leaves the road within a few seconds."""
    needs_image = False
    name = 'spin'

    def reset(self, world, seed):
        pass

    def act(self, observation, truth):
        return (1.0, 1.5)


def test_episode_ends_when_the_rover_leaves_the_road():
    config = EvalConfig(scenes=('summer',), laps=1, seeds=(0,), plots=False)
    rec = evaluate_driver(SpinDriver(), config, progress=False)['episodes'][0]
    assert rec['end_reason'] == 'off_road'
    assert rec['max_abs_lateral_offset_m'] > 0.5 + 0.25  # lane half width + shoulder (summer.yaml)
    assert rec['duration_s'] < 10.0 and rec['lane_departures'] >= 1


def test_evaluation_is_deterministic_for_a_seed_and_noise_changes_it(model_path, world):
    def run(seed, noise):
        cfg = EvalConfig(scenes=('winter',), laps=1, seeds=(seed,), max_seconds=1.0,
                         image_noise_std=noise, plots=False)
        return _episode_without_wall(evaluate_driver(ControllerDriver(model_path), cfg, progress=False,
                                                     world=world)['episodes'][0])
    first = run(1, 8.0)
    assert run(1, 8.0) == first
    other_noise = run(1, 0.0)
    assert other_noise['smoothness_mean_abs_dw_dt'] != first['smoothness_mean_abs_dw_dt']
    assert other_noise['image_noise_std'] == 0.0 and first['image_noise_std'] == 8.0


@pytest.mark.slow  # spawning workers imports torch and MuJoCo again: about 30 s on 2 shared cores
def test_parallel_workers_give_the_serial_records(model_path, world):
    config = EvalConfig(scenes=('summer', 'night'), laps=1, seeds=(0, 5), max_seconds=0.5, plots=False)
    serial = evaluate_driver(ControllerDriver(model_path), config, progress=False, world=world)
    parallel = evaluate_driver(ControllerDriver(model_path), config, progress=False, workers=2)
    assert parallel['speed']['workers'] == 2
    assert [_episode_without_wall(e) for e in parallel['episodes']] == \
        [_episode_without_wall(e) for e in serial['episodes']]
    assert [(e['scene'], e['seed']) for e in parallel['episodes']] == \
        [('summer', 0), ('summer', 5), ('night', 0), ('night', 5)]


def test_eval_config_validates_and_round_trips():
    cfg = EvalConfig(scenes='summer,night', laps=2, seeds=(0, 4), image_noise_std=8)
    assert cfg.scenes == ('summer', 'night') and cfg.time_limit == 180.0
    assert EvalConfig.from_dict(json.loads(json.dumps(cfg.to_dict()))) == cfg
    for kwargs, name in (({'scenes': ('summer', 'mars')}, 'mars'), ({'laps': 0}, 'laps'),
                         ({'seeds': (-1,)}, 'seeds'), ({'image_noise_std': -2.0}, 'image_noise_std'),
                         ({'seeds': (1, 1)}, 'seeds'), ({'start': 1.5}, 'start')):
        with pytest.raises(InputError, match=name):
            EvalConfig(**kwargs)
    with pytest.raises(InputError, match='bogus'):
        EvalConfig.from_dict({'bogus': 1})
    with pytest.raises(ModelFileError, match='no_such_model'):
        evaluate_model('no_such_model', cfg, progress=False)


def test_compare_and_readme_section_replace_only_the_marked_block(model_path, tmp_path):
    config = EvalConfig(scenes=('summer', 'fall'), laps=1, seeds=(0,), max_seconds=1.0, plots=False)
    attention = AttentionSettings(seconds=0.5, max_frames=3)
    assert AttentionSettings.from_dict(attention.to_dict()) == attention
    for bad in ({'seconds': 0}, {'max_frames': 0}, {'method': 'bogus'}, {'noise_std': float('nan')}):
        with pytest.raises(InputError, match=next(iter(bad))):
            AttentionSettings(**bad)
    result = compare_models([model_path], config, noise_levels=(0, 16), include_expert=True,
                            out_dir=tmp_path / 'cmp', progress=False, command='liquid-controller compare X',
                            attention=attention)
    rows = {(r['model'], r['scene'], r['image_noise_std']): r for r in result['rows']}
    # model: both scenes without noise, the noise level on the first scene only; expert: no noise rows
    assert set(rows) == {('rand_cfc', 'summer', 0.0), ('rand_cfc', 'fall', 0.0), ('rand_cfc', 'summer', 16.0),
                         ('expert', 'summer', 0.0), ('expert', 'fall', 0.0)}
    assert rows[('rand_cfc', 'summer', 0.0)]['parameters'] == result['models'][0]['parameters'] > 0
    assert rows[('rand_cfc', 'summer', 0.0)]['step_p50_us'] > 0
    # attention columns: every noise-free model row, values in [0, 1]; none for noise rows and the expert
    for scene in ('summer', 'fall'):
        r = rows[('rand_cfc', scene, 0.0)]
        for key in ('attention_on_road', 'saliency_ssim', 'road_pixel_fraction'):
            assert 0.0 <= r[key] <= 1.0, (scene, key, r[key])
        assert 0.0 < r['road_pixel_fraction'] < 1.0  # the camera sees road and not-road
    assert rows[('rand_cfc', 'summer', 16.0)]['attention_on_road'] is None
    assert rows[('expert', 'summer', 0.0)]['saliency_ssim'] is None
    assert result['attention'] == attention.to_dict()
    saved = json.loads((tmp_path / 'cmp' / 'compare.json').read_text())
    assert saved['rows'] == json.loads(json.dumps(result['rows']))
    md = (tmp_path / 'cmp' / 'compare.md').read_text()
    assert md.count('| rand_cfc (untrained) |') == 3 and md.count('| expert |') == 2
    r = rows[('rand_cfc', 'fall', 0.0)]
    assert 'Attention on road (chance) | Saliency SSIM |' in md and 'chance level' in md
    cells = f"| {r['attention_on_road']:.2f} ({r['road_pixel_fraction']:.2f}) | {r['saliency_ssim']:.3f} |"
    assert cells in md

    before, after = '# Title\n\nintro text\n', '\n## Later section\n\nkept *exactly*\n'
    readme = tmp_path / 'README.md'
    readme.write_text(f'{before}{results.BEGIN}\nold results\n{results.END}{after}')
    section = results.update_readme(readme, tmp_path / 'cmp' / 'compare.json')
    text = readme.read_text()
    assert text.startswith(before + results.BEGIN) and text.endswith(results.END + after)
    assert 'old results' not in text and section in text
    assert 'liquid-controller compare X' in section and '| rand_cfc (untrained) |' in section
    assert 'summer, noise 16' in section and 'fall' in section
    assert 'Where the network looks' in section
    cell = f"{r['attention_on_road']:.2f} ({r['road_pixel_fraction']:.2f}) / {r['saliency_ssim']:.3f}"
    assert cell in section
    no_att = compare_models([model_path], dataclasses.replace(config, scenes=('summer',)), progress=False,
                            attention=None)
    assert no_att['attention'] is None and no_att['rows'][0]['attention_on_road'] is None
    assert 'Where the network looks' not in results.results_section(no_att)
    # regenerating gives the same file (idempotent)
    results.update_readme(readme, saved)
    assert readme.read_text() == text

    assert results.replace_marked_block('a\n', 'S') == f'a\n\n{results.BEGIN}\nS\n{results.END}\n'
    with pytest.raises(InputError, match='marker'):
        results.replace_marked_block(f'{results.BEGIN} only', 'S')
    with pytest.raises(InputError, match='end marker'):
        results.replace_marked_block(f'{results.END} x {results.BEGIN}', 'S')


def test_training_speed_ratio_from_bench_or_cards():
    bench = {'batch': 16, 'seq': 32, 'ltc_vs_cfc_training_time': 3.5,
             'models': {'cfc': {'step_ms': 100.0}, 'ltc': {'step_ms': 350.0}}}
    assert results.training_speed_ratio([], bench)[0] == 3.5
    sizes = {'train_steps': 50, 'train_batch': 16, 'train_seq_len': 32}
    cards = [{'core': 'cfc', 'train_seconds': 100.0, **sizes}, {'core': 'ltc', 'train_seconds': 300.0, **sizes}]
    ratio, sentence = results.training_speed_ratio(cards)
    assert ratio == pytest.approx(3.0) and '3.00x' in sentence
    cards[1]['train_batch'] = 8
    assert results.training_speed_ratio(cards)[0] is None


def test_commands_write_outputs_and_name_bad_arguments(model_path, tmp_path, capsys):
    out = tmp_path / 'eval'
    assert main(['evaluate', '--model', str(model_path), '--scenes', 'night', '--seeds', '2',
                 '--max-seconds', '0.5', '--out', str(out), '--quiet']) == 0
    printed = capsys.readouterr().out
    assert 'night' in printed and 'completion' in printed
    report = json.loads((out / 'evaluation.json').read_text())
    assert report['episodes'][0]['seed'] == 2 and report['episodes'][0]['frames'] == 16
    assert (out / 'plots' / 'rand_cfc_night_seed2.png').stat().st_size > 1000

    # --record-in-card: results land in the card's metrics, the weights still load (sha256 intact)
    card_copy = tmp_path / 'm' / 'rand_cfc.json'
    create_random_model(card_copy, name='rand_cfc')
    assert main(['evaluate', '--model', str(card_copy), '--scenes', 'summer', '--max-seconds', '0.5',
                 '--out', str(tmp_path / 'eval2'), '--quiet', '--no-plots', '--record-in-card']) == 0
    card = load_model(card_copy).card
    assert card.metrics['closed_loop']['scenes']['summer']['episodes'] == 1
    assert card.metrics['closed_loop']['command'].startswith('liquid-controller evaluate --model')
    assert 0 < card.metrics['closed_loop_laps'] < 0.1
    capsys.readouterr()

    readme = tmp_path / 'README.md'
    readme.write_text('# R\n')
    assert main(['compare', '--expert', '--scenes', 'summer', '--max-seconds', '1', '--out',
                 str(tmp_path / 'cmp'), '--readme', str(readme), '--quiet', '--no-plots',
                 '--no-attention']) == 0
    text = readme.read_text()
    assert text.startswith('# R\n') and results.BEGIN in text
    assert 'liquid-controller compare --expert --scenes summer' in text and '--no-attention' in text

    for argv, named in (
            (['evaluate', '--model', 'no_such_model_x', '--scenes', 'summer'], 'no_such_model_x'),
            (['evaluate', '--model', str(model_path), '--scenes', 'summer,mars'], 'mars'),
            (['evaluate', '--model', str(model_path), '--seeds', '0,x'], "'x'"),
            (['compare', '--models', str(model_path), 'missing_model_y', '--scenes', 'summer'],
             'missing_model_y'),
            (['compare', '--models', str(model_path), '--noise', '0,-4'], '-4'),
            (['compare', '--expert', '--readme', str(tmp_path / 'nope.md')], 'nope.md')):
        assert main(argv) == 1, argv
        err = capsys.readouterr().err
        assert 'error' in err and named in err, (argv, err)
    assert math.isfinite(report['speed']['sim_seconds_per_wall_second'])


def test_shipped_model_drives_a_short_segment_without_leaving_the_lane():
    """The best shipped model (models/) drives 10 s of the training scene in closed loop through the
    Controller with no lane departure. Skipped while models/ holds no trained model."""
    from liquid_controller.runtime.model_file import best_available_model
    best = best_available_model()
    if best is None or best[1].untrained:
        pytest.skip('no trained model shipped in models/ yet')
    config = EvalConfig(scenes=('summer',), laps=1, seeds=(0,), max_seconds=10.0, plots=False)
    rec = evaluate_model(best[0], config, progress=False)['episodes'][0]
    assert rec['end_reason'] in ('time_limit', 'laps'), rec['end_reason']
    assert rec['lane_departures'] == 0 and rec['collisions'] == 0
    assert rec['laps'] > 0.1  # it moved along the track (about 10 m)


def test_ray_evaluation_equals_the_local_one_episode_by_episode(model_path, world, tmp_path, monkeypatch):
    """A real local Ray (2 CPUs, started for the call and shut down after): every episode is a Ray task
    and its record equals the local run's."""
    pytest.importorskip('ray')
    monkeypatch.setenv('RAY_ADDRESS', '')                 # no cluster to join: 'auto' starts a local one
    monkeypatch.setenv('RAY_AUTH_MODE', 'disabled')       # a private local instance: no token file in ~
    config = EvalConfig(scenes=('summer', 'night'), laps=1, seeds=(0, 5), max_seconds=0.5, plots=False)
    local = evaluate_driver(ControllerDriver(model_path), config, progress=False, world=world)
    on_ray = evaluate_driver(ControllerDriver(model_path), config, progress=False, workers=2, ray='auto')
    assert on_ray['speed']['ray'] == 'auto'
    assert [_episode_without_wall(e) for e in on_ray['episodes']] == \
        [_episode_without_wall(e) for e in local['episodes']]
    import ray
    assert not ray.is_initialized()                       # the Ray this call started is shut down
    with pytest.raises(InputError, match="expected 'auto' or a Ray cluster address"):
        evaluate_driver(ControllerDriver(model_path), config, progress=False, ray='')


def test_reading_a_report_that_is_not_one_names_the_file_and_the_command(tmp_path):
    from liquid_controller.evaluation.benchmark import load_result
    from liquid_controller.evaluation.compare import load_compare
    broken, other = tmp_path / 'broken.json', tmp_path / 'other.json'
    broken.write_text('{"runs": [')
    other.write_text(json.dumps({'runs': [], 'suite': {}}))
    with pytest.raises(InputError, match=r'broken\.json.*cannot read'):
        load_result(broken)
    with pytest.raises(InputError, match=r'other\.json.*liquid-controller compare'):
        load_compare(other)                               # a benchmark report is not a comparison
    assert load_result(other) == {'runs': [], 'suite': {}}
