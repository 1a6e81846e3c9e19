"""Rolling statistics behind /diagnostics."""
import math

import pytest

from liquid_controller.runtime.stats import RateMeter, RollingStats


def test_rate_meter_counts_the_window():
    m = RateMeter(window=2.0)
    for i in range(60):
        m.add(i / 30.0)          # 30 Hz for 2 s
    assert m.rate(59 / 30.0) == pytest.approx(30.0, abs=0.6)
    assert m.rate(10.0) == 0.0   # nothing in the last 2 s
    assert m.count == 60


def test_rolling_stats():
    s = RollingStats(size=100)
    assert math.isnan(s.summary()['p50']) and s.summary()['n'] == 0
    for v in range(200):
        s.add(v)                 # only the last 100 (100..199) are kept
    out = s.summary()
    assert out['n'] == 100 and out['min'] == 100 and out['max'] == 199
    assert out['p50'] == pytest.approx(149.5) and out['mean'] == pytest.approx(149.5)
