"""`--params-file` on replay, evaluate, compare and explain: the offline Controller runs with the node's
parameter file, and a bad file is one clear error (issue 12: one settings object for every caller)."""
import json
from pathlib import Path

import numpy as np
import pytest

from liquid_controller.cli import main

SCENARIO = Path(__file__).resolve().parents[1] / 'bags' / 'summer_lane'


def _replay(tmp_path, name, *extra):
    npz = tmp_path / f'{name}.npz'
    code = main(['replay', str(SCENARIO / 'bag'), '--model', str(SCENARIO / 'model.json'), '--quiet',
                 '--max-frames', '20', '--golden-out', str(npz), *extra])
    return code, npz


def test_replay_runs_with_the_params_file(tmp_path, edited_params_file):
    code, default = _replay(tmp_path, 'default')
    assert code == 0
    slow = edited_params_file('v_max: 2.0', 'v_max: 0.3')
    code, limited = _replay(tmp_path, 'limited', '--params-file', str(slow))
    assert code == 0
    a, b = np.load(default)['command'][:, 0], np.load(limited)['command'][:, 0]
    assert a.max() > 0.5 and b.max() <= 0.3 + 1e-9     # the file's actuator limit was applied


@pytest.mark.parametrize('command', [
    ['replay', str(SCENARIO / 'bag'), '--model', str(SCENARIO / 'model.json'), '--quiet'],
    ['evaluate', '--model', str(SCENARIO / 'model.json'), '--scenes', 'summer', '--max-seconds', '0.3',
     '--no-plots', '--quiet'],
    ['explain', '--model', str(SCENARIO / 'model.json'), '--sim-seconds', '0.3', '--quiet'],
])
def test_a_misspelled_key_is_one_line_naming_it(tmp_path, capsys, command, edited_params_file):
    typo = edited_params_file('imu_timeout:', 'imu_timout:')
    out = ['--out', str(tmp_path / 'out')] if command[0] != 'replay' else []
    code = main(command + out + ['--params-file', str(typo)])
    err = capsys.readouterr().err.strip()
    assert code != 0 and len(err.splitlines()) == 1, err
    assert "'imu_timout'" in err and "'imu_timeout'" in err and 'Traceback' not in err


def _mean_speed(tmp_path, name, *extra):
    out = tmp_path / name
    assert main(['evaluate', '--model', str(SCENARIO / 'model.json'), '--scenes', 'summer',
                 '--max-seconds', '1.0', '--no-plots', '--quiet', '--out', str(out), *extra]) == 0
    return json.loads((out / 'evaluation.json').read_text())['episodes'][0]['mean_speed_mps']


def test_evaluate_runs_with_the_params_file(tmp_path, edited_params_file):
    strict = edited_params_file('v_max: 2.0', 'v_max: 0.1')
    default = _mean_speed(tmp_path, 'default')
    limited = _mean_speed(tmp_path, 'limited', '--params-file', str(strict))
    assert default > 0.2 and limited <= 0.1 + 1e-6
