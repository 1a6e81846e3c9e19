"""The out-of-distribution monitor's maths (runtime/ood.py): the fit, the calibration quantile, the
streaming score and the card round trip."""
import json

import numpy as np
import pytest

from liquid_controller.errors import InputError
from liquid_controller.runtime.ood import OodMonitor, OodStatistics, fit_gaussian_monitor, smoothed_scores


def _episodes(rng, n=6, t=400, d=5):
    a = rng.normal(size=(d, d))
    return [rng.normal(size=(t, d)) @ a + np.arange(d) for _ in range(n)], a


def test_fit_recovers_the_gaussian_and_calibrates_the_quantile():
    rng = np.random.default_rng(0)
    eps, a = _episodes(rng)
    stats = fit_gaussian_monitor(eps, 'neurons', window=1, quantile=0.99, shrinkage=0.0)
    x = np.concatenate(eps)
    np.testing.assert_allclose(stats.mean, x.mean(axis=0), atol=1e-12)
    # without shrinkage the covariance is the sample covariance (plus a floor of 1e-6 of its scale)
    np.testing.assert_allclose(np.linalg.inv(stats.precision), np.cov(x, rowvar=False), atol=1e-4)
    # by construction 1% of the training frames score above the threshold
    d2 = np.concatenate([stats.d2(e) for e in eps])
    assert np.mean(d2 > stats.threshold) == pytest.approx(0.01, abs=0.002)
    # fresh samples of the same distribution: about the same rate; a shifted one: far above
    fresh = rng.normal(size=(20000, 5)) @ a + np.arange(5)
    assert np.mean(stats.d2(fresh) > stats.threshold) == pytest.approx(0.01, abs=0.005)
    shifted = fresh + 3.0 * np.sqrt(np.diag(a.T @ a))
    assert np.mean(stats.d2(shifted) > stats.threshold) > 0.9


def test_smoothing_is_a_trailing_mean_within_episodes():
    np.testing.assert_allclose(smoothed_scores([1, 2, 3, 4, 5], 2), [1, 1.5, 2.5, 3.5, 4.5])
    np.testing.assert_allclose(smoothed_scores([4.0], 10), [4.0])
    rng = np.random.default_rng(1)
    eps, _ = _episodes(rng, n=3, t=200)
    stats = fit_gaussian_monitor(eps, 'features', window=10, quantile=0.95)
    smoothed = np.concatenate([smoothed_scores(stats.d2(e), 10) for e in eps])
    assert np.mean(smoothed > stats.threshold) == pytest.approx(0.05, abs=0.01)


def test_streaming_monitor_matches_the_batch_score_and_times_the_excursion():
    rng = np.random.default_rng(2)
    eps, _ = _episodes(rng, n=2, t=300)
    stats = fit_gaussian_monitor(eps, 'neurons', window=5, quantile=0.99)
    monitor = OodMonitor(stats)
    stream = np.concatenate([eps[0][:50], eps[0][:50] + 50.0])       # 50 frames normal, then a new world
    scores = [monitor.update(x, stamp=0.1 * k) for k, x in enumerate(stream)]
    np.testing.assert_allclose(scores, smoothed_scores(stats.d2(stream), 5) / stats.threshold, rtol=1e-12)
    assert np.mean(np.array(scores[:50]) > 1.0) <= 0.04 and min(scores[50:]) > 1.0
    assert monitor.seconds_over == pytest.approx(0.1 * (99 - 50))  # over since the first new frame
    monitor.reset()
    assert np.isnan(monitor.score) and monitor.seconds_over == 0.0
    # a non-finite feature is as far out as it gets (never silently "in distribution")
    assert monitor.update(np.full(5, np.nan), 0.0) == np.inf
    with pytest.raises(InputError, match='expected 5 values'):
        monitor.update(np.zeros(4), 0.0)


def test_card_round_trip_and_validation_name_the_field():
    rng = np.random.default_rng(3)
    eps, _ = _episodes(rng, n=2, t=100, d=3)
    stats = fit_gaussian_monitor(eps, 'neurons', window=4)
    back = OodStatistics.from_dict(json.loads(json.dumps(stats.to_dict())))
    np.testing.assert_array_equal(back.mean, stats.mean)
    np.testing.assert_array_equal(back.precision, stats.precision)
    assert (back.threshold, back.window, back.quantile, back.frames) == \
        (stats.threshold, stats.window, stats.quantile, stats.frames)
    good = stats.to_dict()
    for key, value, field in (('source', 'pixels', 'ood.source'), ('threshold', 0.0, 'ood.threshold'),
                              ('precision', [[1, 0, 0], [0, -1, 0], [0, 0, 1]], 'ood.precision'),
                              ('mean', [0.0, 1.0], 'ood.precision'), ('window', 0, 'ood.window')):
        with pytest.raises(InputError) as info:
            OodStatistics.from_dict({**good, key: value})
        assert info.value.name == field
    with pytest.raises(InputError, match='unknown keys'):
        OodStatistics.from_dict({**good, 'colour': 1})
    with pytest.raises(InputError, match='missing'):
        OodStatistics.from_dict({k: v for k, v in good.items() if k != 'threshold'})
    with pytest.raises(InputError, match='2\\*D'):
        fit_gaussian_monitor([np.zeros((3, 3))], 'neurons')
