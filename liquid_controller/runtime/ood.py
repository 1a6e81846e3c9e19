"""Out-of-distribution monitor: how far the network's internal state is from what it saw in training.

A liquid core's state is small (19 neurons for the flagship), so its training distribution can be
modelled exactly: a Gaussian (mean, covariance) fitted to the states of every training frame. The
score of a frame is the squared Mahalanobis distance of its feature vector,

    d2 = (x - mean)^T  P  (x - mean),        P = covariance^-1 (shrunk towards the diagonal, so that
                                                  directions the training data never moved in do not
                                                  make the score explode),

smoothed over the last ``window`` frames (one odd frame is not a new world) and divided by the
threshold, so ``score > 1`` means "beyond the stated quantile of training frames". The statistics
and the threshold are plain numbers stored in the model card (section ``ood``, covered by the card's
sha256), computed at the end of training by :func:`fit_gaussian_monitor`.

Only numpy: the monitor runs on the torch-free edge backend too.
"""
from __future__ import annotations

from collections import deque
from dataclasses import dataclass

import numpy as np

from liquid_controller.config_base import check_known_keys
from liquid_controller.errors import InputError
from liquid_controller.validation import check_choice, check_int, check_number

__all__ = ['FEATURE_SOURCES', 'OodStatistics', 'OodMonitor', 'fit_gaussian_monitor', 'ood_summary',
           'resolve_source', 'smoothed_scores']

# Which vector of a step the monitor models: 'neurons' = the recurrent state after the step
# (liquid / LSTM cores); 'features' = the perception head's output (every core, the CNN's only choice).
FEATURE_SOURCES = ('neurons', 'features')


def resolve_source(source, state_size, model='the model'):
    """The monitor's source for a policy with ``state_size`` state values: ``source`` itself, or for
    None 'neurons' (a recurrent core) / 'features' (the cnn: no state). InputError naming ``source``
    for an unknown one or for 'neurons' without a state (``model`` names the model in the message)."""
    if source is None:
        return 'neurons' if state_size > 0 else 'features'
    if source not in FEATURE_SOURCES:
        raise InputError('source', source, f'must be one of {FEATURE_SOURCES}')
    if source == 'neurons' and state_size == 0:
        raise InputError('source', source, f'{model} has no recurrent state to model: use source '
                                           "'features'")
    return source


@dataclass
class OodStatistics:
    """The fitted training distribution and its calibration (what the model card stores).

    method: 'mahalanobis' (the only method stored; see the README's OOD section for the comparison).
    source: one of FEATURE_SOURCES.
    mean: (D,) feature mean. precision: (D, D) inverse of the shrunk covariance.
    window: frames averaged by the smoothing. quantile: fraction of training frames whose smoothed
    d2 lies at or under ``threshold``. frames: how many training frames were fitted.
    """

    source: str
    mean: np.ndarray
    precision: np.ndarray
    threshold: float
    window: int
    quantile: float
    frames: int
    shrinkage: float = 0.0
    method: str = 'mahalanobis'

    def __post_init__(self):
        check_choice('ood.method', self.method, ('mahalanobis',))
        check_choice('ood.source', self.source, FEATURE_SOURCES)
        self.mean = np.asarray(self.mean, dtype=np.float64)
        self.precision = np.asarray(self.precision, dtype=np.float64)
        if self.mean.ndim != 1 or self.mean.size < 1 or not np.isfinite(self.mean).all():
            raise InputError('ood.mean', self.mean.shape, 'must be a non-empty vector of finite numbers')
        d = self.mean.size
        if self.precision.shape != (d, d) or not np.isfinite(self.precision).all():
            raise InputError('ood.precision', self.precision.shape, f'must be a finite ({d}, {d}) matrix')
        if not np.allclose(self.precision, self.precision.T, rtol=1e-6, atol=1e-9):
            raise InputError('ood.precision', 'asymmetric', 'must be symmetric')
        if np.linalg.eigvalsh(self.precision).min() <= 0:
            raise InputError('ood.precision', 'not positive definite', 'must be positive definite')
        self.threshold = check_number('ood.threshold', self.threshold, 0.0, low_open=True)
        self.window = check_int('ood.window', self.window, 1, 10_000)
        self.quantile = check_number('ood.quantile', self.quantile, 0.5, 1.0)
        self.frames = check_int('ood.frames', self.frames, 1)
        self.shrinkage = check_number('ood.shrinkage', self.shrinkage, 0.0, 1.0)

    @property
    def dim(self) -> int:
        return int(self.mean.size)

    def d2(self, x):
        """Squared Mahalanobis distance of (D,) or (N, D) features -> float or (N,)."""
        diff = np.asarray(x, dtype=np.float64) - self.mean          # (..., D)
        return np.einsum('...i,ij,...j->...', diff, self.precision, diff)

    def to_dict(self) -> dict:
        """Plain JSON data (the card's ``ood`` section)."""
        return {'method': self.method, 'source': self.source, 'mean': self.mean.tolist(),
                'precision': self.precision.tolist(), 'threshold': self.threshold, 'window': self.window,
                'quantile': self.quantile, 'frames': self.frames, 'shrinkage': self.shrinkage}

    @classmethod
    def from_dict(cls, d) -> 'OodStatistics':
        """Inverse of :meth:`to_dict`; unknown or missing keys are an InputError naming them."""
        keys = {'method', 'source', 'mean', 'precision', 'threshold', 'window', 'quantile', 'frames',
                'shrinkage'}
        check_known_keys(d, keys, 'ood')
        missing = sorted(keys - set(d) - {'shrinkage', 'method'})
        if missing:
            raise InputError('ood', missing, 'missing keys')
        return cls(**d)


def smoothed_scores(d2, window):
    """Trailing moving mean of per-frame d2 over ``window`` frames (fewer at the start): (N,) -> (N,)."""
    d2 = np.asarray(d2, dtype=np.float64)
    c = np.concatenate([[0.0], np.cumsum(d2)])
    n = np.arange(1, d2.size + 1)
    lo = np.maximum(0, n - window)
    return (c[n] - c[lo]) / (n - lo)


def fit_gaussian_monitor(episodes, source, window=10, quantile=0.995, shrinkage=0.1):
    """Fit the monitor on training features.

    episodes: list of (T_i, D) feature arrays, one per training episode in time order (the smoothing
        window must not run across episode boundaries).
    shrinkage: covariance shrunk as (1 - s) C + s diag(C) before inversion (plus a small floor so a
        feature that never moved does not make P singular).
    The threshold is the ``quantile`` of the smoothed d2 over all training frames, so by construction a
    fraction ``1 - quantile`` of training frames scores above 1.
    """
    if not episodes:
        raise InputError('episodes', 0, 'no training features to fit')
    mats = [np.asarray(e, dtype=np.float64) for e in episodes]
    dims = {m.shape[1] if m.ndim == 2 else -1 for m in mats}
    if len(dims) != 1 or -1 in dims:
        raise InputError('episodes', sorted(dims), 'expected (T, D) arrays with one D')
    x = np.concatenate(mats, axis=0)                                   # (N, D)
    if x.shape[0] < 2 * x.shape[1] or not np.isfinite(x).all():
        raise InputError('episodes', x.shape, 'need at least 2*D finite frames to fit a covariance')
    window = check_int('window', window, 1, 10_000)
    shrinkage = check_number('shrinkage', shrinkage, 0.0, 1.0)
    mean = x.mean(axis=0)
    cov = np.cov(x, rowvar=False).reshape(x.shape[1], x.shape[1])
    diag = np.diag(np.diag(cov))
    cov = (1.0 - shrinkage) * cov + shrinkage * diag
    cov += np.eye(cov.shape[0]) * max(1e-9, 1e-6 * float(np.trace(cov)) / cov.shape[0])
    precision = np.linalg.inv(cov)
    precision = 0.5 * (precision + precision.T)
    stats = OodStatistics(source=source, mean=mean, precision=precision, threshold=1.0, window=window,
                          quantile=quantile, frames=int(x.shape[0]), shrinkage=shrinkage)
    smoothed = np.concatenate([smoothed_scores(stats.d2(m), window) for m in mats])
    stats.threshold = float(max(np.quantile(smoothed, quantile), 1e-12))
    return stats


class OodMonitor:
    """Streaming score: ``update(features)`` each frame -> smoothed d2 / threshold (1 = threshold).

    ``reset()`` at an episode start (the Controller's reset). ``seconds_over`` is how long the score
    has been above 1 without a break, timed by the frame stamps given to ``update``.
    """

    def __init__(self, stats: OodStatistics):
        self.stats = stats
        self._recent = deque(maxlen=stats.window)
        self._over_since = None
        self.score = float('nan')
        self.seconds_over = 0.0

    def reset(self):
        self._recent.clear()
        self._over_since = None
        self.score = float('nan')
        self.seconds_over = 0.0

    def update(self, features, stamp) -> float:
        """Add one frame's (D,) features at time ``stamp`` (s); returns the new smoothed score."""
        x = np.asarray(features, dtype=np.float64).reshape(-1)
        if x.size != self.stats.dim:
            raise InputError('ood features', x.size, f'expected {self.stats.dim} values '
                                                     f'({self.stats.source})')
        d2 = float(self.stats.d2(x)) if np.isfinite(x).all() else float('inf')
        self._recent.append(d2)
        self.score = float(np.mean(self._recent)) / self.stats.threshold
        if self.score > 1.0:
            if self._over_since is None:
                self._over_since = stamp
            self.seconds_over = max(0.0, stamp - self._over_since)
        else:
            self._over_since = None
            self.seconds_over = 0.0
        return self.score


def ood_summary(scores):
    """Per-run summary of OOD scores (N,; nan = unavailable): available, mean, max, frames (scored),
    frames_over and fraction_over 1."""
    s = np.asarray(scores, dtype=np.float64).reshape(-1)
    s = s[~np.isnan(s)]
    if not s.size:
        # None, not NaN: the summary goes into JSON reports and is compared between runs
        return {'available': False, 'mean': None, 'max': None, 'frames': 0, 'frames_over': 0,
                'fraction_over': None}
    over = int((s > 1.0).sum())
    return {'available': True, 'mean': float(np.mean(s)), 'max': float(np.max(s)), 'frames': int(s.size),
            'frames_over': over, 'fraction_over': over / s.size}
