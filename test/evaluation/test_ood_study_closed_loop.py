"""The OOD study's closed-loop mode (evaluation/ood_study.py): both sources fitted from one
closed-loop calibration drive and scored side by side as shadow monitors, at a tiny size (a random
model, short episodes, a one-scene suite)."""
import json
import pickle

import numpy as np
import pytest

from liquid_controller.errors import InputError
from liquid_controller.evaluation.benchmark import SUITE_DIR, load_suite, suite_eval_config
from liquid_controller.evaluation.evaluate import ControllerDriver, evaluate_driver
from liquid_controller.evaluation.ood_study import (ShadowMonitorDriver, main, run_closed_loop_study,
                                                    source_summary)
from liquid_controller.runtime.model_file import create_random_model, read_card, set_ood_statistics
from liquid_controller.runtime.ood import fit_gaussian_monitor

LAPS = 0.014        # 1.26 s calibration / fresh episodes (seconds_per_lap 90)
SUITE_LAPS = 0.008  # 0.72 s held-out episodes


def _tiny_suite(tmp_path):
    scene = SUITE_DIR / 'appearance' / 'appearance_s170001_000.yaml'
    path = tmp_path / 'suite.yaml'
    path.write_text(f'name: tiny\nversion: 1\nepisode: {{laps: {SUITE_LAPS}, disturbance_rate_hz: 0.1}}\n'
                    f'scenes:\n- {{file: {scene}, family: appearance}}\n')
    return path


def test_both_sources_from_one_calibration_drive_scored_side_by_side(tmp_path):
    model = tmp_path / 'rand.json'
    create_random_model(model, name='rand')
    card_before = read_card(model).card_sha256
    out, suite = tmp_path / 'study', _tiny_suite(tmp_path)
    assert main(['--closed-loop', 'summer', '--seeds', '3-4', '--fresh-seeds', '5', '--laps', str(LAPS),
                 '--model', str(model), '--suite', str(suite), '--out', str(out)]) == 0
    assert read_card(model).card_sha256 == card_before                  # the study changes no card
    result = json.loads((out / 'ood_sources.json').read_text())
    calib = result['calibration']
    assert calib['dims'] == {'neurons': 19, 'features': 32} and calib['episodes'] == 2
    assert calib['frames'] > 64            # one drive gave both: as many features as states
    assert {s: v['frames'] for s, v in calib['statistics'].items()} == {'neurons': calib['frames'],
                                                                        'features': calib['frames']}
    assert result['heldout']['episodes'] == 1 and result['fresh']['episodes'] == 1
    held, fresh = result['episodes'][0], result['fresh_episodes'][0]
    assert not held['ood']['available']                # the card has no monitor: only the shadows score
    for e in (held, fresh):
        assert e['ood_sources']['neurons']['frames'] == e['ood_sources']['features']['frames'] > 10
    # a shadow scores as the runtime does: the card given one source's fitted statistics, the
    # Controller's own score on the same held-out episode is the shadow's
    for source in ('neurons', 'features'):
        set_ood_statistics(model, calib['statistics'][source])
        again = evaluate_driver(ControllerDriver(model), suite_eval_config(load_suite(suite), 1),
                                progress=False)['episodes'][0]
        own, shadow = again['ood'], held['ood_sources'][source]
        assert own['available'] and own['frames'] == shadow['frames']
        for key in ('frames_over', 'first_over_s', 'lead_s'):
            assert own[key] == shadow[key], key
        assert own['max'] == pytest.approx(shadow['max'], rel=1e-9)
        assert own['mean'] == pytest.approx(shadow['mean'], rel=1e-9)
    # the summary is the per-source reduction of those records
    summary = result['summary']
    assert summary == json.loads(json.dumps(source_summary(result['episodes'], result['fresh_episodes'])))
    for source in ('neurons', 'features'):
        row, rec = summary[source], fresh['ood_sources'][source]
        assert row['fresh_fraction_over'] == pytest.approx(rec['frames_over'] / rec['frames'])
        assert row['episodes'] == 1 and row['failing'] + row['clean'] == 1
        # one held-out episode: failing or clean, never both, so no AUROC
        assert row['auroc_mean'] is None and row['auroc_max'] is None
    markdown = (out / 'ood_sources.md').read_text()
    assert '| neurons | 19 |' in markdown and '| features | 32 |' in markdown


def _record(failing, scores, lead=None):
    s = np.asarray(scores, dtype=float)
    over = int((s > 1).sum())
    return {'available': True, 'mean': float(s.mean()), 'max': float(s.max()), 'frames': s.size,
            'frames_over': over, 'fraction_over': over / s.size, 'first_over_s': None,
            'first_departure_s': None, 'lead_s': lead}


def test_source_summary_separates_failing_from_clean():
    def episode(failing, neurons, features, lead=None):
        return {'lane_departures': int(failing), 'end_reason': 'time_limit',
                'ood_sources': {'neurons': _record(failing, neurons, lead),
                                'features': _record(failing, features, lead)}}
    heldout = [episode(True, [0.5, 3.0], [2.0, 3.0], lead=1.5), episode(True, [0.2, 0.4], [1.5, 2.5], lead=0.5),
               episode(False, [0.9, 2.0], [0.1, 0.2]), episode(False, [0.1, 0.3], [0.3, 1.2])]
    fresh = [episode(False, [0.1, 0.2, 0.3, 1.5], [0.1, 0.1, 0.1, 0.1])]
    s = source_summary(heldout, fresh)
    assert s['features']['auroc_mean'] == 1.0 and s['features']['auroc_fraction_over'] == 1.0
    assert s['neurons']['auroc_max'] == 0.75 and s['neurons']['auroc_mean'] == 0.75
    assert s['neurons']['auroc_fraction_over'] == 0.5                # ties count half
    assert s['features']['failing_warned_before_departure'] == 2 and s['features']['median_lead_s'] == 1.0
    assert s['neurons']['clean_fraction_over'] == 0.25 and s['features']['clean_fraction_over'] == 0.25
    assert s['neurons']['fresh_fraction_over'] == 0.25 and s['features']['fresh_fraction_over'] == 0.0


def test_bad_study_arguments(tmp_path):
    model = tmp_path / 'rand.json'
    create_random_model(model, name='rand')
    with pytest.raises(InputError, match='fresh_seeds'):
        run_closed_loop_study(model, ['summer'], [3, 4], fresh_seeds=[4, 5], progress=False)
    with pytest.raises(SystemExit):       # --bags or --closed-loop
        main(['--model', str(model)])
    stats = fit_gaussian_monitor([np.random.default_rng(0).normal(size=(50, 19))], 'neurons')
    with pytest.raises(InputError, match='monitors'):
        ShadowMonitorDriver(model, {'pixels': stats})
    # evaluation's worker processes get the driver pickled
    driver = pickle.loads(pickle.dumps(ShadowMonitorDriver(model, {'neurons': stats})))
    assert driver.monitors['neurons'].threshold == stats.threshold
