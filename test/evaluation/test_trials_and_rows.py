"""What makes evaluation measure: per-seed start poses and disturbances (seeds are real trials),
confidence intervals, filter interventions by row type, scene lane geometry, corner-direction
breakdowns and the filter-off (shadow) mode. Real simulator, real safety filter, real Controller."""
import math

import numpy as np
import pytest

from liquid_controller.errors import InputError
from liquid_controller.evaluation.evaluate import (ControllerDriver, EvalConfig, ExpertDriverAdapter,
                                                   evaluate_driver)
from liquid_controller.evaluation.interventions import (ROW_TYPES, InterventionCounter, binding_types,
                                                        row_type)
from liquid_controller.evaluation.lane_geometry import scene_safety_config
from liquid_controller.evaluation.statistics import format_ci, mean_ci
from liquid_controller.evaluation.trials import CommandDisturbance, episode_start
from liquid_controller.runtime.model_file import create_random_model
from liquid_controller.safety.config import RobotState, SafetyConfig
from liquid_controller.safety.filter import SafetyFilter
from liquid_controller.sim import DrivingWorld, WorldConfig
from liquid_controller.sim.scene import Scene, load_scene


@pytest.fixture(scope='module')
def physics_world():
    w = DrivingWorld(WorldConfig(render=False))
    yield w
    w.close()


def test_t_interval_matches_the_textbook_formula():
    ci = mean_ci([1.0, 2.0, 3.0, 4.0])
    # mean 2.5, s = sqrt(5/3), t(0.975, 3) = 3.182446
    half = 3.182446305284263 * math.sqrt(5 / 3) / 2
    assert ci['mean'] == 2.5 and ci['n'] == 4
    assert ci['half_width'] == pytest.approx(half, rel=1e-9)
    assert (ci['low'], ci['high']) == pytest.approx((2.5 - half, 2.5 + half))
    assert mean_ci([0.9, 1.1], confidence=0.99)['half_width'] > mean_ci([0.9, 1.1])['half_width']
    one = mean_ci([3.0])
    assert one['mean'] == 3.0 and one['half_width'] is None
    assert format_ci(ci, 1) == f'2.5 ± {half:.1f} (n=4)'
    with pytest.raises(InputError, match='values'):
        mean_ci([1.0, float('nan')])


def test_row_labels_map_to_row_types():
    assert row_type('v_upper:v_max') == 'actuator_v'
    assert row_type('v_lower:decel_max') == 'acceleration'
    assert row_type('w_upper:w_max') == 'actuator_w'
    assert row_type('w_lower:a_lat_max') == 'lateral_acceleration'
    assert row_type('lat_neg') == 'lateral_acceleration'
    assert row_type('obstacle_b') == 'obstacle'
    assert row_type('lane_left') == 'lane'
    with pytest.raises(ValueError):
        row_type('nonsense')


def test_every_real_intervention_is_attributed_and_the_counts_add_up():
    # the real filter on random commands and states: every intervention has a binding row type
    flt = SafetyFilter(SafetyConfig())
    rng = np.random.default_rng(0)
    counter = InterventionCounter()
    for _ in range(400):
        state = RobotState(speed=float(rng.uniform(0, 1.5)), yaw_rate=float(rng.uniform(-1, 1)),
                           lateral_accel=float(rng.uniform(-1, 1)),
                           obstacle_distance=float(rng.choice([math.inf, rng.uniform(0.2, 3)])),
                           lane_offset=float(rng.uniform(-0.6, 0.6)), heading_error=float(rng.uniform(-0.5, 0.5)))
        nominal = (float(rng.uniform(-0.5, 3)), float(rng.uniform(-4, 4)))
        _, cert = flt.filter(nominal, state, np.array([1.0, 1.0]))
        counter.add(cert)
        if cert.intervened:
            assert binding_types(cert) and 'unattributed' not in binding_types(cert)
    d = counter.to_dict()
    assert d['steps'] == 400 and 0 < d['interventions'] < 400
    assert sum(d['by_combination'].values()) == d['interventions']
    for t in ROW_TYPES:
        assert d['by_type'][t] == sum(n for k, n in d['by_combination'].items() if t in k.split('+'))
    assert d['by_type']['actuator_v'] + d['by_type']['acceleration'] > 0
    assert d['by_type']['obstacle'] > 0


def test_seeds_draw_different_starts_reproducibly():
    starts = [episode_start('summer', s, True) for s in range(5)]
    assert len({round(s['start'], 6) for s in starts}) == 5
    assert episode_start('summer', 2, True) == starts[2]
    assert episode_start('fall', 2, True) != starts[2]
    assert all(abs(s['lateral_offset']) <= 0.1 and abs(s['heading_offset']) <= 0.15 for s in starts)
    assert episode_start('summer', 2, False, 0.25) == {'start': 0.25, 'lateral_offset': 0.0,
                                                      'heading_offset': 0.0}


def test_disturbance_pushes_only_when_asked():
    quiet = CommandDisturbance('summer', 0, 0.0)
    assert all(quiet.apply((1.0, 0.2), t) == (1.0, 0.2) for t in np.arange(0, 60, 0.1))
    pushy = CommandDisturbance('summer', 0, 0.5)
    applied = [pushy.apply((1.0, 0.0), t)[1] for t in np.arange(0, 60, 1 / 30)]
    assert pushy.pushes > 5
    assert all(w == 0.0 for w in applied[:60])                  # the 2 s warm-up is left alone
    assert 0.1 < np.mean(np.abs(applied) > 0) < 0.6


def test_seeds_are_real_trials_with_random_starts_and_disturbances(physics_world):
    def run(**kw):
        config = EvalConfig(scenes=('summer',), laps=0.25, seeds=(0, 1, 2), plots=False, **kw)
        report = evaluate_driver(ExpertDriverAdapter(), config, progress=False, world=physics_world)
        ci = report['scenes']['summer']['lap_completion_ci']
        assert ci['n'] == 3 and ci['mean'] == pytest.approx(report['scenes']['summer']['lap_completion_pct'])
        return report['episodes']
    fixed = run()
    # without them, seeds only change sensor noise: nearly the same episode
    assert max(e['mean_abs_lateral_offset_m'] for e in fixed) - \
        min(e['mean_abs_lateral_offset_m'] for e in fixed) < 0.003
    trials = run(random_start=True, disturbance_rate_hz=0.5)
    assert len({round(e['start']['start'], 4) for e in trials}) == 3
    assert all(e['disturbance_pushes'] > 0 for e in trials)
    # different trajectories: the largest excursions differ by centimetres, not by sensor noise
    spread = lambda eps, key: max(e[key] for e in eps) - min(e[key] for e in eps)  # noqa: E731
    assert spread(fixed, 'max_abs_lateral_offset_m') < 0.01
    assert spread(trials, 'max_abs_lateral_offset_m') > 0.03
    assert spread(trials, 'mean_abs_heading_error_rad') > 5 * spread(fixed, 'mean_abs_heading_error_rad')
    assert all(e['completed'] for e in trials)                   # the expert recovers from the pushes


def test_corner_breakdown_adds_up_and_sees_the_turn_direction(physics_world, tmp_path):
    d = load_scene('summer').to_dict()
    d['track']['direction'] = 'cw'
    d['name'] = 'summer_cw'
    path = tmp_path / 'summer_cw.yaml'
    import yaml
    path.write_text(yaml.safe_dump(d))
    config = EvalConfig(scenes=(str(path), 'summer'), laps=0.6, seeds=(0,), plots=False, random_start=True)
    report = evaluate_driver(ExpertDriverAdapter(), config, progress=False, world=physics_world)
    cw, ccw = report['episodes']
    assert cw['by_corner']['right']['frames'] > 50 and cw['by_corner']['left']['frames'] == 0
    assert ccw['by_corner']['left']['frames'] > 50 and ccw['by_corner']['right']['frames'] == 0
    for e in (cw, ccw):
        assert sum(e['by_corner'][c]['frames'] for c in ('left', 'right', 'straight')) == e['frames']
        assert e['by_corner']['tight']['frames'] == 0             # summer's corners have a 3 m radius


def test_expert_slows_in_tight_corners(physics_world):
    config = EvalConfig(scenes=('summer_chicane',), laps=1.0, seeds=(0,), plots=False)
    e = evaluate_driver(ExpertDriverAdapter(), config, progress=False, world=physics_world)['episodes'][0]
    tight, straight = e['by_corner']['tight'], e['by_corner']['straight']
    assert tight['frames'] > 30                                   # the chicane's 1.6 m corners
    # curvature-limited: sqrt(a_lat_max * radius) = sqrt(0.8 * 1.6) = 1.13 m/s, below its 1.2 m/s cruise
    assert tight['mean_speed_mps'] < straight['mean_speed_mps']
    assert tight['mean_speed_mps'] < 1.05 * (0.8 * 1.6) ** 0.5


def test_lane_barrier_width_comes_from_the_scene_and_the_robot(physics_world):
    physics_world.reset('summer')
    safety = scene_safety_config(SafetyConfig(), physics_world)
    assert safety.lane_half_width == pytest.approx(0.5 - 0.19)
    d = load_scene('summer').to_dict()
    d['track']['lane_width'] = 0.55
    physics_world.reset(Scene.from_dict(d))
    with pytest.raises(InputError, match='track.lane_width'):
        scene_safety_config(SafetyConfig(), physics_world)


@pytest.fixture(scope='module')
def model_path(tmp_path_factory):
    path = tmp_path_factory.mktemp('models') / 'rand_cfc.json'
    create_random_model(path, name='rand_cfc')
    return path


def test_filter_off_drives_the_nominal_and_counts_in_shadow(model_path):
    config = EvalConfig(scenes=('summer',), laps=1, seeds=(0,), max_seconds=1.5, plots=False)
    world = DrivingWorld(WorldConfig())
    outputs, applied = [], []

    class Spy(ControllerDriver):
        """Records each Controller output and the command the driver hands to the world."""

        def reset(self, world, seed):
            super().reset(world, seed)
            step = self.controller.step

            def recording_step(*args, **kwargs):
                out = step(*args, **kwargs)
                outputs.append(out)
                return out
            self.controller.step = recording_step

        def act(self, observation, truth):
            command = super().act(observation, truth)
            applied.append(np.asarray(command, dtype=float).copy())
            return command
    try:
        rec_on = evaluate_driver(ControllerDriver(model_path), config, progress=False, world=world)['episodes'][0]
        rec_off = evaluate_driver(Spy(model_path, use_filter=False), config, progress=False,
                                  world=world)['episodes'][0]
    finally:
        world.close()
    assert rec_on['filter_applied'] and not rec_off['filter_applied']
    assert rec_on['lane_half_width'] == pytest.approx(0.31)
    for rec in (rec_on, rec_off):
        rows = rec['filter_rows']
        assert rows['steps'] == rec['filter_steps'] and rows['interventions'] == rec['filter_interventions']
        assert sum(rows['by_combination'].values()) == rows['interventions']
    # filter off: the world gets the network's nominal command, not the filtered one, and the filter
    # still ran in shadow (a random network makes it intervene)
    assert len(outputs) == len(applied) > 10
    assert rec_off['filter_interventions'] > 0
    changed = 0
    for out, cmd in zip(outputs, applied):
        if out.safe:
            np.testing.assert_array_equal(cmd, out.command)
        else:
            np.testing.assert_array_equal(cmd, out.nominal)
            changed += bool(np.abs(out.command - out.nominal).max() > 1e-6)
    assert changed > 0
