"""`liquid-controller export MODEL --format onnx --out DIR` through cli.main, then replay with it."""
import json

import pytest

from liquid_controller.cli import main


def test_export_writes_a_verified_folder_and_replay_runs_it(tmp_path, capsys):
    out = tmp_path / 'lstm_onnx'
    assert main(['export', 'lstm', '--format', 'onnx', '--out', str(out)]) == 0
    printed = capsys.readouterr().out
    assert 'verified bag' in printed and 'verified random' in printed
    assert sorted(p.name for p in out.iterdir()) == ['lstm.json', 'lstm.onnx', 'lstm.onnx.json',
                                                     'lstm.safetensors']
    card = json.loads((out / 'lstm.onnx.json').read_text())
    assert card['verification']['max_abs_diff'] <= 1e-5
    assert card['state']['size'] == 128 and card['state']['names'][0] == 'hidden_0'
    bag_runs = [s for s in card['verification']['sequences'].values() if s['steps'] >= 60]
    assert len(bag_runs) == 2                    # the bag (60 frames + warm-up) and the random one
    assert main(['replay', 'test/bags/summer_lane/bag', '--model', str(out), '--backend', 'onnx',
                 '--quiet']) == 0
    assert 'frames 60' in capsys.readouterr().out


@pytest.mark.parametrize('argv, message', [
    (['export', 'cfc', '--out', 'X', '--tolerance', '0'], '--tolerance'),
    (['export', 'no_such_model', '--out', 'X', '--no-bag'], 'not found'),
])
def test_export_errors_are_one_line(argv, message, tmp_path, capsys):
    argv = [str(tmp_path / a) if a == 'X' else a for a in argv]
    assert main(argv) == 1
    err = capsys.readouterr().err
    assert err.startswith('liquid-controller export: error:') and message in err


def test_unknown_format_is_a_usage_error(tmp_path):
    with pytest.raises(SystemExit) as exc:
        main(['export', 'cfc', '--format', 'tflite', '--out', str(tmp_path)])
    assert exc.value.code == 2


@pytest.mark.parametrize('command', [
    ['evaluate', '--model', 'cfc', '--scenes', 'summer', '--no-plots', '--quiet'],
    ['replay', 'test/bags/summer_lane/bag', '--quiet'],
    ['demo', '--model', 'cfc'],
])
def test_backend_flag_reaches_the_loader(command, tmp_path, capsys):
    """--backend onnx with a model that has no export: each command stops before running anything,
    naming the export command (the flag got through to the model loader)."""
    extra = ['--model', 'cfc'] if command[0] == 'replay' else []
    code = main(command + extra + ['--backend', 'onnx', '--out', str(tmp_path / 'out')])
    assert code == 1
    assert 'liquid-controller export' in capsys.readouterr().err
