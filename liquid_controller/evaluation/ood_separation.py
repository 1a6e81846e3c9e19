"""How well the OOD monitor tells failing episodes from clean ones (issue 13's measures).

An episode *fails* when it leaves the lane at least once or ends off the road (or in a collision); it is
*clean* otherwise. Per episode the monitor gives its largest smoothed score (``ood.max`` of the episode
record, evaluation/evaluate.py); the AUROC of that score for failing vs clean is the chance that a random
failing episode scores higher than a random clean one (ties count half). The lead time is how long
before its first lane departure a failing episode's score first crossed 1. The false-alarm rate is the
share of frames above 1 in clean episodes.
"""
from __future__ import annotations

import numpy as np

__all__ = ['auroc', 'failed', 'ood_separation']


def failed(record):
    """True for an episode that left its lane or ended off the road or in a collision."""
    return bool(record.get('lane_departures', 0)) or record.get('end_reason') in ('off_road', 'collision')


def auroc(positive, negative):
    """Area under the ROC curve of scores ``positive`` (should be high) vs ``negative``: the
    Mann-Whitney probability P(p > n) + P(p = n) / 2. NaN when either side is empty."""
    p = np.asarray(positive, dtype=np.float64).reshape(-1)
    n = np.asarray(negative, dtype=np.float64).reshape(-1)
    if not p.size or not n.size:
        return float('nan')
    greater = (p[:, None] > n[None, :]).sum()
    ties = (p[:, None] == n[None, :]).sum()
    return float((greater + 0.5 * ties) / (p.size * n.size))


def ood_separation(episodes):
    """Summary over episode records that carry an ``ood`` block with a score: counts, AUROC of the
    per-episode max and mean score, median lead time, false-alarm frame share on clean episodes.
    ``available`` False when no episode has a score (a model without statistics)."""
    scored = [e for e in episodes if (e.get('ood') or {}).get('available')]
    if not scored:
        return {'available': False}
    bad = [e for e in scored if failed(e)]
    good = [e for e in scored if not failed(e)]
    leads = [e['ood']['lead_s'] for e in bad if e['ood'].get('lead_s') is not None]
    warned_before = len(leads)
    over_good = sum(e['ood']['frames_over'] for e in good)
    frames_good = sum(e['ood']['frames'] for e in good)
    return {
        'available': True, 'episodes': len(scored), 'failing': len(bad), 'clean': len(good),
        'auroc_max': auroc([e['ood']['max'] for e in bad], [e['ood']['max'] for e in good]),
        'auroc_mean': auroc([e['ood']['mean'] for e in bad], [e['ood']['mean'] for e in good]),
        'failing_warned_before_departure': warned_before,
        'median_lead_s': float(np.median(leads)) if leads else float('nan'),
        'clean_frames': int(frames_good), 'clean_frames_over': int(over_good),
        'clean_fraction_over': over_good / frames_good if frames_good else float('nan'),
    }
