"""OOD statistics from the model's own closed-loop driving (evaluation/closed_loop_calibration.py):
real simulator, real Controller, the vectors the monitor then sees (hidden states or perception
features)."""
import numpy as np
import pytest

from liquid_controller.cli import main
from liquid_controller.errors import InputError
from liquid_controller.evaluation.closed_loop_calibration import calibrate_closed_loop
from liquid_controller.runtime.controller import Controller
from liquid_controller.runtime.model_file import create_random_model, load_model, read_card


def test_states_of_the_models_own_driving_are_fitted_and_stored(tmp_path):
    path = tmp_path / 'rand.json'
    create_random_model(path, name='rand')
    stats, report = calibrate_closed_loop(path, ['summer'], [3, 4], max_seconds=1.5, progress=False)
    steps = sum(e['controller_statuses'].get('ok', 0) + e['controller_statuses'].get('reset', 0)
                for e in report['episodes'])
    assert stats.frames == steps > 2 * stats.dim                 # every policy step of both episodes
    assert all('states' not in e and 'ood_vectors' not in e for e in report['episodes'])  # not reported
    card = read_card(path)
    assert card.ood['frames'] == stats.frames and card.ood['source'] == 'neurons'
    assert Controller(load_model(path)).ood is not None          # the runtime picks it up
    # the same episodes give the same statistics (the seeds fix starts, pushes and noise)
    again, _ = calibrate_closed_loop(path, ['summer'], [3, 4], max_seconds=1.5, progress=False)
    np.testing.assert_array_equal(again.mean, stats.mean)


def test_command_line_and_bad_seeds(tmp_path, capsys):
    path = tmp_path / 'rand.json'
    create_random_model(path, name='rand')
    assert main(['calibrate-ood', str(path), '--closed-loop', 'summer', '--seeds', 'x-y', '--quiet']) == 1
    assert "--seeds='x-y'" in capsys.readouterr().err
    with pytest.raises(SystemExit):   # one source of driving is required
        main(['calibrate-ood', str(path)])
    with pytest.raises(InputError, match='no recurrent state'):
        cnn = tmp_path / 'cnn.json'
        from liquid_controller.policy.policy_config import PolicyConfig
        create_random_model(cnn, PolicyConfig(core='cnn'), name='cnn')
        calibrate_closed_loop(cnn, ['summer'], [0], max_seconds=0.5, progress=False, source='neurons')
    with pytest.raises(InputError, match='source'):
        calibrate_closed_loop(path, ['summer'], [0], max_seconds=0.5, progress=False, source='pixels')


def test_features_source_from_the_command_line(tmp_path, capsys):
    path = tmp_path / 'rand.json'
    create_random_model(path, name='rand')
    assert main(['calibrate-ood', str(path), '--closed-loop', 'summer', '--seeds', '3-4', '--laps', '0.017',
                 '--source', 'features', '--quiet']) == 0
    printed = capsys.readouterr().out
    assert 'OOD monitor on 32 perception-feature values (source features)' in printed
    card = read_card(path)
    assert card.ood['source'] == 'features' and len(card.ood['mean']) == 32
    ctl = Controller(load_model(path))
    assert ctl.ood is not None and ctl.ood.stats.source == 'features'
    # the same drive through the function: the same statistics, fitted on every policy step's features
    stats, report = calibrate_closed_loop(path, ['summer'], [3, 4], laps=0.017, progress=False,
                                          source='features')
    steps = sum(e['controller_statuses'].get('ok', 0) + e['controller_statuses'].get('reset', 0)
                for e in report['episodes'])
    assert stats.frames == steps == card.ood['frames'] > 64
    np.testing.assert_array_equal(stats.mean, card.ood['mean'])
    np.testing.assert_array_equal(stats.precision, card.ood['precision'])


def test_a_cnn_gets_a_features_monitor(tmp_path):
    from liquid_controller.policy.policy_config import PolicyConfig
    cnn = tmp_path / 'cnn.json'
    create_random_model(cnn, PolicyConfig(core='cnn'), name='cnn')
    stats, _ = calibrate_closed_loop(cnn, ['summer'], [0], max_seconds=1.0, progress=False)
    assert stats.source == 'features' and stats.dim == 10            # the default for a core without state
    ctl = Controller(load_model(cnn))
    assert ctl.ood is not None and ctl.ood.stats.dim == 10 and read_card(cnn).ood['source'] == 'features'
