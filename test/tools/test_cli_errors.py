"""One convention for runtime errors of every subcommand: one line `liquid-controller <cmd>: error: ...`
on stderr and exit code 1 (argparse usage errors keep exit code 2)."""
import pytest

from liquid_controller.cli import main


def _one_error_line(capsys, command, *needles):
    err = capsys.readouterr().err.strip()
    assert 'Traceback' not in err
    assert len(err.splitlines()) == 1, err
    assert err.startswith(f'liquid-controller {command}: error: '), err
    for needle in needles:
        assert needle in err, err
    return err


def test_record_existing_output(tmp_path, capsys):
    (tmp_path / 'bag').mkdir()
    assert main(['record', '--out', str(tmp_path / 'bag'), '--quiet']) == 1
    _one_error_line(capsys, 'record', str(tmp_path / 'bag'), 'already exists')


def test_record_unknown_scene(tmp_path, capsys):
    assert main(['record', '--out', str(tmp_path / 'x'), '--scene', 'atlantis', '--quiet']) == 1
    _one_error_line(capsys, 'record', 'atlantis')


def test_replay_missing_bag(tmp_path, capsys):
    assert main(['replay', str(tmp_path / 'nope'), '--model', 'm.json', '--quiet']) == 1
    _one_error_line(capsys, 'replay', str(tmp_path / 'nope'), 'no such bag')


def test_explain_missing_model(tmp_path, capsys):
    assert main(['explain', '--model', str(tmp_path / 'missing.json'), '--no-sim', '--bag',
                 str(tmp_path), '--out', str(tmp_path / 'x')]) == 1
    _one_error_line(capsys, 'explain')


def test_explain_needs_a_source(tmp_path, capsys):
    assert main(['explain', '--model', 'm.json', '--no-sim', '--out', str(tmp_path / 'x')]) == 1
    _one_error_line(capsys, 'explain', '--bag')


def test_play_missing_bag(tmp_path, capsys):
    assert main(['play', str(tmp_path / 'nope')]) == 1
    _one_error_line(capsys, 'play', str(tmp_path / 'nope'), 'no such bag')


def test_play_bad_remap(tmp_path, capsys):
    assert main(['play', str(tmp_path), '--remap', 'nocolon']) == 1
    _one_error_line(capsys, 'play', 'nocolon')


def test_bench_json_is_a_folder(tmp_path, capsys):
    assert main(['bench', 'safety', '--json', str(tmp_path)]) == 1
    _one_error_line(capsys, 'bench', str(tmp_path), 'folder')


def test_demo_missing_model(tmp_path, capsys):
    assert main(['demo', '--model', str(tmp_path / 'nope.json'), '--out', str(tmp_path / 'o')]) == 1
    _one_error_line(capsys, 'demo', 'nope.json')


def test_usage_errors_keep_exit_code_2(capsys):
    with pytest.raises(SystemExit) as exc:
        main(['replay'])
    assert exc.value.code == 2
    assert 'liquid-controller replay: error:' in capsys.readouterr().err
