"""The OOD monitor's evaluation measures (evaluation/ood_separation.py, evaluate.ood_episode_stats):
AUROC against a brute-force count, lead time, false-alarm share."""
import math

import numpy as np
import pytest

from liquid_controller.evaluation.evaluate import ood_episode_stats
from liquid_controller.evaluation.ood_separation import auroc, failed, ood_separation


def test_auroc_is_the_mann_whitney_probability():
    assert auroc([3, 4], [1, 2]) == 1.0 and auroc([1, 2], [3, 4]) == 0.0
    assert auroc([1, 2], [1, 2]) == 0.5            # ties count half
    rng = np.random.default_rng(0)
    p, n = rng.normal(1, 1, 40), rng.normal(0, 1, 60)
    brute = np.mean([1.0 if a > b else 0.5 if a == b else 0.0 for a in p for b in n])
    assert auroc(p, n) == pytest.approx(brute)
    assert math.isnan(auroc([], [1.0]))


def test_episode_stats_time_the_first_crossing_and_departure():
    t = np.arange(0, 5, 0.5)                        # 10 steps, 0.5 s apart, starting at sim time 0
    scores = [0.2, 0.5, 0.9, 1.3, 1.5, 1.2, 0.8, 1.1, 1.4, 1.6]
    in_lane = [True] * 6 + [False] * 4              # leaves the lane at t = 3.0 s
    stats = ood_episode_stats(list(zip(t + 10.0, scores, in_lane)))
    assert stats['first_over_s'] == 1.5 and stats['first_departure_s'] == 3.0
    assert stats['lead_s'] == 1.5 and stats['frames_over'] == 6 and stats['frames'] == 10
    # no monitor (nan scores): unavailable, no lead
    stats = ood_episode_stats([(0.0, float('nan'), True), (0.1, float('nan'), False)])
    assert not stats['available'] and stats['lead_s'] is None and stats['first_departure_s'] == 0.1
    # a departure the score never warned of: no lead time
    assert ood_episode_stats([(0.0, 0.1, True), (1.0, 0.2, False)])['lead_s'] is None


def _episode(max_score, departures=0, end='laps', frames=100, over=0, lead=None):
    return {'lane_departures': departures, 'end_reason': end,
            'ood': {'available': True, 'max': max_score, 'mean': max_score / 2, 'frames': frames,
                    'frames_over': over, 'fraction_over': over / frames, 'lead_s': lead}}


def test_separation_summary():
    episodes = [_episode(3.0, departures=1, lead=2.0), _episode(2.5, end='off_road', lead=0.5),
                _episode(0.8, over=1), _episode(0.9), _episode(1.2, departures=2)]
    assert [failed(e) for e in episodes] == [True, True, False, False, True]
    s = ood_separation(episodes)
    assert (s['failing'], s['clean']) == (3, 2) and s['auroc_max'] == 1.0
    assert s['failing_warned_before_departure'] == 2 and s['median_lead_s'] == 1.25
    assert s['clean_fraction_over'] == pytest.approx(1 / 200)
    assert not ood_separation([{'ood': {'available': False}}, {}])['available']
