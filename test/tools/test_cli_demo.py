"""`liquid-controller demo` (and bringup) through cli.main: bad arguments, a missing model or an unknown
scene give one line on stderr and a non-zero exit code before anything starts; the summary counts the
safety stops that controller.log records."""
import pytest

from liquid_controller.cli import main


def _one_line_error(capsys, *needles):
    err = capsys.readouterr().err.strip()
    assert 'Traceback' not in err
    assert len(err.splitlines()) == 1, err
    for needle in needles:
        assert needle in err, err
    return err


def test_demo_missing_model_is_one_line(tmp_path, capsys):
    assert main(['demo', '--model', 'models/nope.json', '--out', str(tmp_path / 'o')]) == 1
    _one_line_error(capsys, 'demo: error:', 'models/nope.json')
    assert not (tmp_path / 'o').exists()                       # nothing started, nothing written


def test_demo_unknown_scene_is_one_line(tmp_path, capsys):
    assert main(['demo', '--scene', 'sumer', '--out', str(tmp_path / 'o')]) == 1
    _one_line_error(capsys, 'demo: error:', "'sumer'", 'summer')
    assert not (tmp_path / 'o').exists()


@pytest.mark.parametrize('option, value', [('--laps', '-1'), ('--laps', '0'), ('--laps', 'nan'),
                                           ('--max-seconds', '0'), ('--real-time-factor', '-2'),
                                           ('--gif-frames', '0'), ('--laps', 'two')])
def test_demo_rejects_non_positive_numbers(option, value, tmp_path, capsys):
    with pytest.raises(SystemExit) as exc:
        main(['demo', option, value, '--out', str(tmp_path / 'o')])
    assert exc.value.code == 2
    err = capsys.readouterr().err
    assert 'Traceback' not in err and option in err and repr(value) in err


def test_bringup_missing_params_file_is_one_line(capsys):
    pytest.importorskip('rclpy')
    code = main(['bringup', '--params-file', 'nope.yaml'])
    assert code != 0
    _one_line_error(capsys, 'nope.yaml')


def test_safety_stops_counted_from_the_controller_log(tmp_path):
    from liquid_controller.tools.demo import format_metrics, safety_stops
    log = tmp_path / 'controller.log'
    log.write_text('[INFO] [1.0] [controller]: active (mode drive)\n'
                   '[WARN] [2.0] [controller]: braking to zero: bad_input: image 0x0\n'
                   '[INFO] [2.1] [controller]: recovered: ok\n'
                   '[WARN] [3.0] [controller]: braking to zero: stale: no valid frame for 0.5 s\n'
                   '[WARN] [4.0] [controller]: braking to zero: bad_input: imu timeout\n')
    counts = safety_stops(log)
    assert counts == {'safety_brakes': 3, 'bad_input_stops': 2, 'stale_input_stops': 1, 'disabled_stops': 0}
    assert safety_stops(tmp_path / 'missing.log')['safety_brakes'] == 0
    table = format_metrics({'laps': 1.0, **counts})
    assert 'safety_brakes' in table and 'bad_input_stops' in table


@pytest.mark.ros
def test_demo_summary_prints_the_safety_stops(tmp_path):
    import subprocess
    import sys
    result = subprocess.run([sys.executable, '-m', 'liquid_controller.cli', 'demo', '--out', str(tmp_path),
                             '--max-seconds', '2', '--gif-frames', '2'], capture_output=True, text=True,
                            timeout=300)
    assert result.returncode == 0, result.stdout[-2000:] + result.stderr[-2000:]
    assert 'safety_brakes' in result.stdout and 'bad_input_stops' in result.stdout
    import json
    metrics = json.loads((tmp_path / 'metrics.json').read_text())
    assert isinstance(metrics['safety_brakes'], int) and isinstance(metrics['bad_input_stops'], int)
