"""The expert completes a lap in every shipped scene inside the lane; perturbations push it off the
centre line and it recovers; episode metrics count what happened."""
import json

import numpy as np
import pytest

from liquid_controller.sim import (EpisodeMetrics, ExpertDriver, GroundTruth, PerturbationConfig,
                                   list_scenes, run_episode)


@pytest.mark.parametrize('name', list_scenes())
def test_expert_completes_a_lap_without_leaving_the_lane(physics_world, name):
    expert = ExpertDriver(name)
    metrics = run_episode(physics_world, lambda obs, truth: expert.command(truth), scene=name,
                          laps=1.0, max_seconds=120.0)
    summary = metrics.summary()
    assert summary['lap_completion_pct'] == pytest.approx(100.0)
    assert summary['laps'] >= 1.0
    assert summary['lane_departures'] == 0
    assert summary['time_outside_lane_s'] == 0.0
    assert summary['collisions'] == 0
    assert summary['max_abs_lateral_offset_m'] < 0.15
    assert summary['mean_speed_mps'] > 0.8


def test_perturbed_expert_drifts_and_recovers(physics_world):
    physics_world.reset('summer', seed=0)
    expert = ExpertDriver(physics_world.track, seed=1,
                          perturbation=PerturbationConfig(rate_hz=0.3, min_yaw_rate=0.8,
                                                          max_yaw_rate=1.0, min_duration=0.6,
                                                          max_duration=0.8, warmup=1.0))
    truth = physics_world.last_truth
    offsets, pushed, clean_differs = [], [], 0
    for _ in range(30 * 30):
        v, w = expert.command(truth)
        clean_differs += expert.perturbing and abs(w - expert.clean_command[1]) > 0.5
        pushed.append(expert.perturbing)
        truth = physics_world.step((v, w)).truth
        offsets.append(abs(truth.lateral_offset))
    pushed, offsets = np.array(pushed), np.array(offsets)
    assert pushed.any() and clean_differs > 0
    assert offsets.max() > 0.1  # the pushes really move the rover off the centre line
    # After every push that is not followed by another within 3 s, the expert is back near the
    # centre line within those 3 s.
    ends = np.flatnonzero(pushed[:-1] & ~pushed[1:])
    recovered = [offsets[e + 1:e + 90].min() < 0.03 for e in ends
                 if e + 90 < len(offsets) and not pushed[e + 1:e + 90].any()]
    assert recovered and all(recovered)


def _truth(t, offset, in_lane=True, collision=False, progress=0.0, speed=1.0):
    return GroundTruth(lateral_offset=offset, heading_error=0.0, progress_laps=progress, speed=speed,
                       in_lane=in_lane, collision=collision, x=t, y=0.0, yaw=0.0, stamp=t)


def test_metrics_count_departures_collisions_and_smoothness(tmp_path):
    metrics = EpisodeMetrics(target_laps=2.0, scene_name='synthetic')
    lane = [True, True, False, False, True, False, True, True, True, True]
    hit = [False, False, False, True, True, False, False, True, False, False]
    for i in range(10):
        metrics.update(_truth(i * 0.1, offset=0.1 * (-1) ** i, in_lane=lane[i], collision=hit[i],
                              progress=i * 0.1, speed=0.5 + 0.1 * i), command=(1.0, 0.2 * i))
    s = metrics.summary()
    json.dumps(s)  # JSON-able
    assert s['frames'] == 10
    assert s['lane_departures'] == 2
    assert s['time_outside_lane_s'] == pytest.approx(0.3)
    assert s['collisions'] == 2
    assert s['mean_abs_lateral_offset_m'] == pytest.approx(0.1)
    assert s['max_abs_lateral_offset_m'] == pytest.approx(0.1)
    assert s['mean_speed_mps'] == pytest.approx(0.95)
    assert s['smoothness_mean_abs_dw_dt'] == pytest.approx(2.0)  # 0.2 rad/s per 0.1 s
    assert s['laps'] == pytest.approx(0.9)
    assert s['lap_completion_pct'] == pytest.approx(45.0)


def test_plot_writes_a_png_of_the_trajectory(physics_world, tmp_path):
    expert = ExpertDriver('summer_chicane')
    metrics = run_episode(physics_world, lambda obs, truth: expert.command(truth),
                          scene='summer_chicane', seconds=3.0)
    assert metrics.summary()['duration_s'] == pytest.approx(3.0, abs=0.04)
    path = metrics.plot(tmp_path / 'trajectory.png')
    data = open(path, 'rb').read()
    assert data[:8] == b'\x89PNG\r\n\x1a\n' and len(data) > 20000


def test_run_episode_needs_a_stop_condition(physics_world):
    from liquid_controller.errors import InputError
    with pytest.raises(InputError, match='laps'):
        run_episode(physics_world, lambda o, t: (0.0, 0.0))


def test_expert_and_perturbation_configs_validate_and_round_trip():
    from liquid_controller.errors import InputError
    config = PerturbationConfig(rate_hz=0.5, max_duration=2.0)
    assert PerturbationConfig.from_dict(config.to_dict()) == config
    with pytest.raises(InputError, match='max_duration'):
        PerturbationConfig(min_duration=1.0, max_duration=0.5)
    with pytest.raises(InputError, match='rate_hz'):
        PerturbationConfig(rate_hz=0.0)
    with pytest.raises(InputError, match='v_min'):
        ExpertDriver('summer', v_min=2.0, v_max=1.0)
    with pytest.raises(InputError, match='perturbation'):
        ExpertDriver('summer', perturbation={'rate_hz': 1.0})


def test_expert_slows_down_for_tight_curves():
    expert = ExpertDriver('summer_chicane', v_max=2.0, a_lat_max=0.8)
    track = expert.track
    straight = expert.target_speed(track.length * 0.05)  # long first straight, corners far ahead
    s_tight = float(track.s[np.argmax(np.abs(track.curvature))])
    tight = expert.target_speed(s_tight)
    assert straight == pytest.approx(2.0)
    assert tight == pytest.approx((0.8 * 1.6) ** 0.5, rel=0.05)  # sqrt(a_lat * radius)
