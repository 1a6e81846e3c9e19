"""Confidence intervals over episodes.

Episodes of one model on one suite are independent trials (different scenes, start positions and
disturbance seeds), so a metric's mean over them gets a two-sided Student-t interval:
``mean +- t(1 - alpha/2, n - 1) * s / sqrt(n)`` with ``s`` the sample standard deviation (ddof 1).
It assumes roughly normal means, which lap completion (bounded, often at 100%) only approximates
for small n; the interval is reported with n so a reader can judge. With n < 2 there is no interval.
"""
import math

import numpy as np

from liquid_controller.errors import InputError


def mean_ci(values, confidence=0.95):
    """Mean of ``values`` with a Student-t confidence interval.

    Returns {'mean', 'low', 'high', 'half_width', 'n', 'confidence', 'method': 't'}; low/high/half_width
    are None when fewer than 2 finite values are given (mean is None for none). Non-finite values are
    an InputError: a NaN metric means a broken episode record, not a value to skip silently.
    """
    if not isinstance(confidence, float) or not 0.0 < confidence < 1.0:
        raise InputError('confidence', confidence, 'must be a float in (0, 1)')
    x = np.asarray(list(values), dtype=float)
    if x.size and not np.isfinite(x).all():
        raise InputError('values', x.tolist(), 'must be finite numbers')
    n = int(x.size)
    result = {'mean': float(x.mean()) if n else None, 'low': None, 'high': None, 'half_width': None,
              'n': n, 'confidence': confidence, 'method': 't'}
    if n >= 2:
        from scipy import stats
        half = float(stats.t.ppf(0.5 + confidence / 2, n - 1) * x.std(ddof=1) / math.sqrt(n))
        result.update(low=result['mean'] - half, high=result['mean'] + half, half_width=half)
    return result


def format_ci(ci, digits=1, scale=1.0, unit=''):
    """'mean +- half (n)' text of a :func:`mean_ci` result (values times ``scale``)."""
    if ci['mean'] is None:
        return '-'
    mean = ci['mean'] * scale
    if ci['half_width'] is None:
        return f'{mean:.{digits}f}{unit} (n={ci["n"]})'
    return f'{mean:.{digits}f}{unit} ± {ci["half_width"] * scale:.{digits}f} (n={ci["n"]})'
