"""Rolling statistics for diagnostics: message rates, dt and latency percentiles, event rates.

Plain Python/numpy (no ROS) so the node stays thin and the numbers can be tested directly.
"""
from __future__ import annotations

from collections import deque

import numpy as np


class RateMeter:
    """Arrival rate (Hz) over a sliding time window of ``window`` seconds (steady clock times)."""

    def __init__(self, window=2.0):
        self.window = float(window)
        self._times = deque()
        self.count = 0

    def add(self, t):
        self._times.append(float(t))
        self.count += 1
        self._trim(float(t))

    def _trim(self, now):
        while self._times and now - self._times[0] > self.window:
            self._times.popleft()

    def rate(self, now):
        """Messages per second in the last ``window`` seconds ending at ``now``."""
        self._trim(float(now))
        return len(self._times) / self.window


class RollingStats:
    """Last ``size`` samples of a scalar: mean, min, max and percentiles (NaN when empty)."""

    def __init__(self, size=300):
        self._values = deque(maxlen=int(size))

    def add(self, value):
        self._values.append(float(value))

    def __len__(self):
        return len(self._values)

    def summary(self):
        if not self._values:
            return {'mean': float('nan'), 'min': float('nan'), 'max': float('nan'),
                    'p50': float('nan'), 'p99': float('nan'), 'n': 0}
        a = np.fromiter(self._values, dtype=np.float64)
        return {'mean': float(a.mean()), 'min': float(a.min()), 'max': float(a.max()),
                'p50': float(np.percentile(a, 50)), 'p99': float(np.percentile(a, 99)), 'n': int(a.size)}
