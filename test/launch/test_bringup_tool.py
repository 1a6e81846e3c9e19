"""`liquid-controller bringup`: the installed executables as subprocesses, activated over the lifecycle
services (real DDS, isolated domain from test/conftest.py), stopped cleanly; start-up failures reported
at once in one line (issue 16 items 2 and 5)."""
import os
import signal
import subprocess
import sys
import time

import pytest
import yaml

from liquid_controller import cli
from liquid_controller.paths import config_file
from liquid_controller.ros.processes import find_executable, ros_args
from liquid_controller.runtime.model_file import create_random_model

pytestmark = pytest.mark.ros


@pytest.fixture(scope='module')
def model(tmp_path_factory):
    path = tmp_path_factory.mktemp('model') / 'rand.json'
    create_random_model(path)
    return path


def _cli(*args, timeout=120):
    env = dict(os.environ)
    return subprocess.run([sys.executable, '-m', 'liquid_controller.cli', *args], env=env,
                          capture_output=True, text=True, timeout=timeout)


def _one_error_line(result):
    """The command's own stderr is exactly one `liquid-controller bringup: error: ...` line (the nodes'
    output is echoed to stdout, prefixed with their names)."""
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert len(lines) == 1, result.stderr
    assert lines[0].startswith('liquid-controller bringup: error: '), lines[0]
    assert 'Traceback' not in result.stderr
    return lines[0]


def test_error_lines_picks_the_exception_or_the_logged_error():
    from liquid_controller.ros.processes import error_lines
    traceback = ['[INFO] [1.0] [controller]: starting', 'Traceback (most recent call last):',
                 '  File "x.py", line 1, in <module>', '    main()',
                 'rclpy.exceptions.InvalidParameterValueException: imu_timeout out of range',
                 '[ros2run]: Process exited with failure 1']
    assert error_lines(traceback) == ['rclpy.exceptions.InvalidParameterValueException: imu_timeout out '
                                      'of range']
    logged = ['[ERROR] [1795974132.136972194] [controller]: configure failed: model card not found: m.json',
              '[INFO] [1795974132.2] [controller]: still here']
    assert error_lines(logged) == ['configure failed: model card not found: m.json']
    assert error_lines(['a', 'last words', '']) == ['last words']
    assert error_lines(['a', 'last words'], fallback=False) == []
    assert error_lines([]) == []


def test_ros_args_match_ros2_run_syntax(tmp_path):
    args = ros_args('controller', 'robot1', [tmp_path / 'p.yaml'], {'use_sim_time': True, 'model': 'm'},
                    {'cmd_vel': '/diff/cmd_vel'})
    assert args == ['--ros-args', '-r', '__node:=controller', '-r', '__ns:=/robot1', '--params-file',
                    str(tmp_path / 'p.yaml'), '-p', 'use_sim_time:=true', '-p', 'model:=m',
                    '-r', 'cmd_vel:=/diff/cmd_vel']
    assert os.access(find_executable('controller_node'), os.X_OK)
    assert os.access(find_executable('sim_node'), os.X_OK)


def test_bringup_none_reaches_active_and_stops_cleanly(model):
    result = _cli('bringup', '--sim', 'none', '--model', str(model), '--duration', '1.0',
                  '--namespace', f'bu{os.getpid()}')
    assert result.returncode == 0, result.stdout + result.stderr
    assert 'is active' in result.stdout
    assert "'controller': 0" in result.stdout  # SIGINT -> clean exit code 0


def test_bringup_fails_cleanly_on_bad_model(tmp_path):
    """A refused configure is reported with the controller's own logged reason, in one line."""
    result = _cli('bringup', '--sim', 'none', '--model', str(tmp_path / 'missing.json'),
                  '--namespace', f'bad{os.getpid()}', '--timeout', '30')
    assert result.returncode == 1
    error = _one_error_line(result)
    assert "transition 'configure' failed" in error
    assert 'missing.json' in error  # the cause the controller logged, not 'see the node log'


def test_bringup_reports_a_controller_that_died_at_start_up(tmp_path, model):
    """Issue 16 item 2: a params file with `imu_timeout: -1.0` (out of the parameter's declared range)
    ends the controller process at start-up. bringup must stop waiting at once (it used to wait its
    whole --timeout, then blame the lifecycle services) and name the process, its exit code and the
    cause. The bound is generous (a loaded 2-core machine); before the fix it took the full 60 s."""
    params = yaml.safe_load(config_file('controller.yaml').read_text())
    params['/**/controller']['ros__parameters']['imu_timeout'] = -1.0
    bad = tmp_path / 'bad.yaml'
    bad.write_text(yaml.safe_dump(params))
    start = time.monotonic()
    result = _cli('bringup', '--sim', 'none', '--params-file', str(bad), '--model', str(model),
                  '--namespace', f'died{os.getpid()}', '--timeout', '60')
    elapsed = time.monotonic() - start
    assert result.returncode == 1, result.stdout + result.stderr
    assert elapsed < 30, f'{elapsed:.1f} s: waited for the timeout instead of noticing the exit'
    error = _one_error_line(result)
    assert 'controller exited with code 1' in error
    assert 'imu_timeout' in error
    assert 'lifecycle services not available' not in result.stderr


def test_bringup_missing_params_file_is_one_line_error(tmp_path, capsys):
    """Issue 16 item 5: `bringup --params-file nope.yaml` printed a traceback. Through cli.main: one
    line on stderr naming the file, exit code 1, nothing started."""
    code = cli.main(['bringup', '--params-file', str(tmp_path / 'nope.yaml')])
    out, err = capsys.readouterr()
    assert code == 1
    assert err.strip().count('\n') == 0
    assert err.startswith('liquid-controller bringup: error: params file not found: ')
    assert 'nope.yaml' in err
    assert 'started' not in out


def test_bringup_reports_a_sim_node_that_exits_at_start_up(model):
    """A sim_node that exits (here: a misspelled scene) ends bringup at once with its exit code and the
    reason it printed (it used to say only 'sim_node exited with code 2', the reason was lost)."""
    result = _cli('bringup', '--sim', 'mujoco', '--scene', 'sumer', '--model', str(model),
                  '--namespace', f'scene{os.getpid()}', '--timeout', '60')
    assert result.returncode == 1, result.stdout + result.stderr
    error = _one_error_line(result)
    assert 'sim_node exited with code' in error
    assert "'sumer'" in error


def _pids_with_args(executable, argument):
    """Linux: pids whose command line runs ``executable`` with ``argument`` (no procps needed)."""
    pids = []
    for entry in os.listdir('/proc'):
        try:
            args = open(f'/proc/{entry}/cmdline', 'rb').read().decode(errors='replace').split('\0')
        except (OSError, ValueError):
            continue
        if any(os.path.basename(a) == executable for a in args[:2]) and argument in args:
            pids.append(int(entry))
    return pids


def test_bringup_reports_a_sim_node_killed_while_running(model):
    """sim_node dying while bringup runs (after the controller is active) ends bringup within a few
    check periods, naming the process and how it ended."""
    namespace = f'kill{os.getpid()}'
    proc = subprocess.Popen([sys.executable, '-m', 'liquid_controller.cli', 'bringup', '--sim', 'mujoco',
                             '--model', str(model), '--namespace', namespace, '--timeout', '90'],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        for line in proc.stdout:
            if 'is active' in line:
                break
        else:
            pytest.fail('bringup ended before the controller was active: ' + proc.stderr.read())
        found = _pids_with_args('sim_node', f'__ns:=/{namespace}')
        assert len(found) == 1, found
        os.kill(found[0], signal.SIGKILL)
        killed = time.monotonic()
        out, err = proc.communicate(timeout=60)
        assert time.monotonic() - killed < 30
    finally:
        if proc.poll() is None:
            proc.send_signal(signal.SIGINT)
            proc.communicate(timeout=60)
    assert proc.returncode == 1
    lines = [line for line in err.splitlines() if line.strip()]
    assert lines == [line for line in lines if line.startswith('liquid-controller bringup: error: ')]
    assert 'sim_node was killed by SIGKILL' in lines[-1]
