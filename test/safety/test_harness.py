"""Closed-loop harness: 0 violations with the filter; the clip-after-QP baseline shows violations.

Normal suite: 1000 rollouts per nominal family at 0.1 s; 250 rollouts with broken speed readings on
30% of ticks at 10 Hz through the runtime filter (issue 11) and per family through the batch path.
``-m slow``: 10^4 per family at 0.1 s and 0.05 s (also with broken readings), 1000 per family at
0.05 s for the baseline, and 400 per family at 0.05 s for the runtime filter with broken readings
(it filters one rollout at a time).
"""
import pytest

from liquid_controller.errors import InputError
from liquid_controller.safety.harness import FAMILIES, HarnessConfig, run_harness


@pytest.mark.parametrize('family', FAMILIES)
def test_filter_never_violates_1000_rollouts(family):
    r = run_harness(HarnessConfig(family=family, rollouts=1000, control_period=0.1, seed=11))
    assert r['violations'] == 0, r
    assert r['worst_clearance_m'] >= 0.0
    assert r['substeps'] >= 20
    assert r['mean_progress_m'] > 0.5                 # it does drive, it is not just parked
    if family != 'nan_inf':
        assert r['fallback_rate'] == 0.0               # valid inputs: the QP always answers
    else:
        assert 0.3 < r['fallback_rate'] < 0.7          # about half the ticks carry NaN/Inf


@pytest.mark.parametrize('family', ['ram', 'nan_inf', 'frozen'])
def test_clip_after_qp_baseline_shows_violations(family):
    r = run_harness(HarnessConfig(family=family, variant='clip_after_qp', rollouts=1000,
                                  control_period=0.1, seed=11))
    assert r['violations'] > 100, r
    assert r['violations_by_check']['collision'] > 10
    assert r['worst_clearance_m'] < 0.0


def test_broken_speed_readings_runtime_filter_250_rollouts():
    """Issue 11: readings of 1e9 / NaN / -1e9 on 30% of ticks at 10 Hz made the runtime fallback
    brake "from" 1e9 m/s, i.e. command full speed: robots rammed the obstacle (65 of these 250
    rollouts collided, all 250 got commands the drive could not follow). Now 0."""
    r = run_harness(HarnessConfig(family='ram', variant='runtime', rollouts=250,
                                  control_period=0.1, seed=11, bad_reading_rate=0.3))
    assert r['violations'] == 0, r
    assert r['worst_clearance_m'] >= 0.0
    assert 0.25 < r['bad_reading_rate'] < 0.35             # the readings were broken
    assert r['fallback_rate'] >= r['bad_reading_rate']      # and every one was rejected
    assert r['mean_progress_m'] > 0.5                       # it still drives between them


@pytest.mark.parametrize('family', FAMILIES)
def test_broken_speed_readings_batch_filter_250_rollouts(family):
    r = run_harness(HarnessConfig(family=family, variant='filter', rollouts=250,
                                  control_period=0.1, seed=11, bad_reading_rate=0.3))
    assert r['violations'] == 0, r
    assert r['fallback_rate'] >= r['bad_reading_rate'] > 0.25


def test_runtime_and_batch_variants_agree():
    # same seed, same physics: the per-rollout runtime filter and filter_batch give the same run
    runs = [run_harness(HarnessConfig(family='nan_inf', variant=v, rollouts=50, seed=3,
                                      bad_reading_rate=0.3)) for v in ('runtime', 'filter')]
    for key in ('violations', 'worst_clearance_m', 'fallback_rate', 'mean_progress_m'):
        assert runs[0][key] == pytest.approx(runs[1][key], rel=1e-9, abs=1e-12), key


def test_harness_config_validation():
    with pytest.raises(InputError, match='family'):
        HarnessConfig(family='zigzag')
    with pytest.raises(InputError, match='substeps'):
        HarnessConfig(substeps=10)
    with pytest.raises(InputError, match='distance_noise'):
        HarnessConfig(distance_noise=2.0)
    with pytest.raises(InputError, match='bad_reading_rate'):
        HarnessConfig(bad_reading_rate=1.5)


@pytest.mark.slow
@pytest.mark.parametrize('period', [0.1, 0.05])
@pytest.mark.parametrize('family', FAMILIES)
def test_filter_never_violates_10000_rollouts(family, period):
    r = run_harness(HarnessConfig(family=family, rollouts=10_000, control_period=period, seed=5))
    assert r['violations'] == 0, r


@pytest.mark.slow
@pytest.mark.parametrize('period', [0.1, 0.05])
@pytest.mark.parametrize('family', FAMILIES)
def test_filter_never_violates_10000_rollouts_broken_readings(family, period):
    r = run_harness(HarnessConfig(family=family, rollouts=10_000, control_period=period, seed=5,
                                  bad_reading_rate=0.3))
    assert r['violations'] == 0, r


@pytest.mark.slow
@pytest.mark.parametrize('family', FAMILIES)
def test_runtime_filter_never_violates_400_rollouts_broken_readings(family):
    r = run_harness(HarnessConfig(family=family, variant='runtime', rollouts=400,
                                  control_period=0.05, seed=5, bad_reading_rate=0.3))
    assert r['violations'] == 0, r


@pytest.mark.slow
@pytest.mark.parametrize('family', FAMILIES)
def test_clip_after_qp_baseline_violates_at_005(family):
    r = run_harness(HarnessConfig(family=family, variant='clip_after_qp', rollouts=1000,
                                  control_period=0.05, seed=5))
    assert r['violations'] > 0, r
