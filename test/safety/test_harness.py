"""Closed-loop harness: 0 violations with the filter; the clip-after-QP baseline shows violations.

Normal suite: 1000 rollouts per nominal family at 0.1 s. ``-m slow``: 10^4 per family at 0.1 s and
0.05 s, and 1000 per family at 0.05 s for the baseline.
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


def test_harness_config_validation():
    with pytest.raises(InputError, match='family'):
        HarnessConfig(family='zigzag')
    with pytest.raises(InputError, match='substeps'):
        HarnessConfig(substeps=10)
    with pytest.raises(InputError, match='distance_noise'):
        HarnessConfig(distance_noise=2.0)


@pytest.mark.slow
@pytest.mark.parametrize('period', [0.1, 0.05])
@pytest.mark.parametrize('family', FAMILIES)
def test_filter_never_violates_10000_rollouts(family, period):
    r = run_harness(HarnessConfig(family=family, rollouts=10_000, control_period=period, seed=5))
    assert r['violations'] == 0, r


@pytest.mark.slow
@pytest.mark.parametrize('family', FAMILIES)
def test_clip_after_qp_baseline_violates_at_005(family):
    r = run_harness(HarnessConfig(family=family, variant='clip_after_qp', rollouts=1000,
                                  control_period=0.05, seed=5))
    assert r['violations'] > 0, r
