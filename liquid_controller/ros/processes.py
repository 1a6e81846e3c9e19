"""Start the package's nodes as subprocesses, the way `ros2 run` / the launch file does.

``liquid-controller bringup`` and ``liquid-controller demo`` use this when the launch packages are not
installed (PyPI installs). The executables are the installed console scripts (``controller_node``,
``sim_node``), found in ``<prefix>/lib/liquid_controller`` (colcon / ament), next to the running Python
(a venv's bin/), or on PATH. Parameters go in with ``--ros-args --params-file`` and ``-p`` exactly as
the launch file passes them.

Each node's output (stdout and stderr) is captured: into ``<log_dir>/<name>.log`` when a log folder is
given, otherwise through a pipe that echoes it to this process's stdout prefixed ``[name]`` (like
``ros2 launch`` with ``output='screen'``) and keeps its last lines. A node that exits is reported in one
line with its exit code and the error it printed last (:meth:`Bringup.check_alive`), so a controller that
dies at start-up (e.g. a parameter out of its range) is named at once, with its cause.
"""
from __future__ import annotations

import collections
import os
import re
import shutil
import signal
import subprocess
import sys
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

PACKAGE = 'liquid_controller'
SIMS = ('mujoco', 'none')  # gazebo needs ros2 launch (bringup.launch.py sim:=gazebo)


def find_executable(name):
    """Path of an installed executable of this package; FileNotFoundError naming where it looked."""
    places = []
    for prefix in filter(None, os.environ.get('AMENT_PREFIX_PATH', '').split(os.pathsep)):
        places.append(Path(prefix) / 'lib' / PACKAGE / name)
    places.append(Path(sys.executable).parent / name)
    for p in places:
        if p.is_file() and os.access(p, os.X_OK):
            return str(p)
    found = shutil.which(name)
    if found:
        return found
    raise FileNotFoundError(f'executable {name!r} not found in {[str(p.parent) for p in places]} or '
                            'PATH: install the package (make setup, or colcon build)')


def ros_args(node_name=None, namespace='', params_files=(), params=None, remaps=None):
    """The ``--ros-args`` part of a ros2 run command line."""
    args = ['--ros-args']
    if node_name:
        args += ['-r', f'__node:={node_name}']
    if namespace:
        args += ['-r', f'__ns:=/{namespace.strip("/")}']
    for f in params_files:
        args += ['--params-file', str(f)]
    for k, v in (params or {}).items():
        if isinstance(v, bool):
            v = 'true' if v else 'false'
        args += ['-p', f'{k}:={v}']
    for src, dst in (remaps or {}).items():
        args += ['-r', f'{src}:={dst}']
    return args


# rcutils console format: [ERROR] [1700000000.123456789] [controller]: message
_ROS_LOG = re.compile(r'^\[(ERROR|FATAL)\] \[[0-9.]+\] \[([^\]]*)\]: (.*)$')


def error_lines(lines, n=2, fallback=True):
    """The last error(s) in a node's output, most informative first choice:

    - the exception line ending the last Python traceback (``SomeError: message``);
    - else the last ``n`` ``[ERROR]`` / ``[FATAL]`` log lines (as ``message``, without level and stamp);
    - else (``fallback``) the last non-empty line. ``[]`` when none of these is there.
    """
    lines = [line.rstrip() for line in lines]
    starts = [i for i, line in enumerate(lines) if line.startswith('Traceback (most recent call last)')]
    if starts:
        # the traceback ends at its first unindented line after the frames: the exception
        for line in lines[starts[-1] + 1:]:
            if line and not line[0].isspace():
                return [line]
    logged = [m.group(3) for m in map(_ROS_LOG.match, lines) if m]
    if logged:
        return logged[-n:]
    rest = [line for line in lines if line.strip()] if fallback else []
    return rest[-1:]


def _exit_text(code):
    if code is not None and code < 0:
        try:
            return f'was killed by {signal.Signals(-code).name}'
        except ValueError:
            pass
    return f'exited with code {code}'


class NodeExited(RuntimeError):
    """A node process ended while the bringup needed it (the message names it, its code and cause)."""


@dataclass
class NodeProcess:
    """One running node executable."""
    name: str
    command: list
    process: subprocess.Popen = None
    log_path: Path | None = None
    keep_lines: int = 400
    echo: bool = True  # False: stop echoing the piped output (still kept for tail / errors)
    _lines: collections.deque = field(default=None, repr=False)
    _reader: threading.Thread = field(default=None, repr=False)

    def start(self, env=None, log_dir=None, echo=None):
        """Start the executable in its own process group (Ctrl-C in the terminal reaches us; we forward
        it in order). Output goes to ``<log_dir>/<name>.log``, or without ``log_dir`` through a pipe that
        is echoed to ``echo`` (default sys.stdout; False: not echoed) and kept for :meth:`tail`."""
        env = dict(os.environ if env is None else env)
        env.setdefault('PYTHONUNBUFFERED', '1')  # a node's print() arrives in order with its log lines
        if log_dir is not None:
            self.log_path = Path(log_dir) / f'{self.name}.log'
            with open(self.log_path, 'w') as out:
                self.process = subprocess.Popen(self.command, env=env, stdout=out, stderr=subprocess.STDOUT,
                                                stdin=subprocess.DEVNULL, start_new_session=True)
            return self
        self._lines = collections.deque(maxlen=self.keep_lines)
        self.process = subprocess.Popen(self.command, env=env, stdout=subprocess.PIPE,
                                        stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                                        start_new_session=True)
        stream = sys.stdout if echo is None else echo
        self._reader = threading.Thread(target=self._read, args=(stream,), daemon=True,
                                        name=f'{self.name}-output')
        self._reader.start()
        return self

    def _read(self, stream):
        for raw in self.process.stdout:
            line = raw.decode(errors='replace').rstrip('\n')
            self._lines.append(line)
            if stream and self.echo:
                try:
                    stream.write(f'[{self.name}] {line}\n')
                    stream.flush()
                except (ValueError, OSError):  # our stdout closed: keep collecting
                    stream = None
        self.process.stdout.close()

    def alive(self):
        return self.process is not None and self.process.poll() is None

    def stop(self, timeout=10.0):
        """SIGINT (rclpy shuts down cleanly), then SIGTERM, then SIGKILL. Returns the exit code."""
        if self.process is None:
            return None
        for sig, wait in ((signal.SIGINT, timeout), (signal.SIGTERM, 3.0), (signal.SIGKILL, 3.0)):
            if self.process.poll() is not None:
                break
            try:
                self.process.send_signal(sig)
            except ProcessLookupError:
                break
            try:
                self.process.wait(wait)
            except subprocess.TimeoutExpired:
                continue
        if self._reader is not None:
            self._reader.join(2.0)
        return self.process.poll()

    def lines(self):
        """The node's output so far (the last ``keep_lines`` lines when piped)."""
        if self.log_path is not None:
            if self.log_path.is_file():
                return self.log_path.read_text(errors='replace').splitlines()
            return []
        return list(self._lines or ())

    def tail(self, n=20):
        return '\n'.join(self.lines()[-n:])

    def errors(self, wait=0.0):
        """:func:`error_lines` of the output; waits up to ``wait`` s for one to arrive (a node logs the
        cause of a refused transition just before it answers, the pipe may bring it a moment later)."""
        deadline = time.monotonic() + wait
        while True:
            found = error_lines(self.lines())
            if found or time.monotonic() >= deadline:
                return found
            time.sleep(0.05)

    def exit_message(self):
        """One line: '<name> exited with code N: <last error>' (after the output has been read)."""
        if self._reader is not None:
            self._reader.join(2.0)  # the process ended: its pipe reaches EOF
        lines = self.lines()
        cause = error_lines(lines, fallback=False)
        text = f'{self.name} {_exit_text(self.process.returncode)}'
        if cause:
            text += ': ' + ' | '.join(cause)
        elif error_lines(lines):
            text += '; its last output: ' + error_lines(lines)[0]
        else:
            text += ' (it printed nothing)'
        if self.log_path is not None:
            text += f' (full output: {self.log_path})'
        return text


@dataclass
class Bringup:
    """The node processes of one bringup; stop them with :meth:`stop` (reverse start order)."""
    nodes: list = field(default_factory=list)
    controller_name: str = '/controller'

    def stop(self, timeout=10.0, quiet=False):
        """Stop every node (reverse start order); ``quiet``: no longer echo their output (after an
        error, so that their shutdown noise does not bury it). Returns {name: exit code}."""
        codes = {}
        if quiet:
            for node in self.nodes:
                node.echo = False
        for node in reversed(self.nodes):
            codes[node.name] = node.stop(timeout)
        return codes

    def check_alive(self):
        """Raise :class:`NodeExited` (a RuntimeError) naming the first node that exited, in one line: its
        exit code and the error it printed last (e.g. the exception that ended it)."""
        for node in self.nodes:
            if not node.alive():
                raise NodeExited(node.exit_message())

    def node(self, name):
        return next(n for n in self.nodes if n.name == name)

    def controller_errors(self, wait=2.0):
        """The controller's last logged error(s) in one line ('' if none): the cause of a refused
        transition (e.g. 'configure failed: model card not found: ...')."""
        return ' | '.join(self.node('controller').errors(wait))


def start_bringup(sim='mujoco', params_file=None, model='', namespace='', use_sim_time=None,
                  scene='summer', sim_params=None, controller_params=None, remaps=None, env=None,
                  log_dir=None, echo=None):
    """Start sim_node (sim='mujoco') and controller_node with the same parameter files the launch file
    uses. The controller starts unconfigured; bring it up with
    :func:`liquid_controller.ros.lifecycle_client.bring_up` (``bringup.controller_name``), passing
    ``check=bringup.check_alive`` so that a node dying meanwhile is reported at once.
    Output: see :meth:`NodeProcess.start` (``log_dir``, ``echo``). FileNotFoundError for a missing
    params file, before anything starts."""
    from liquid_controller.paths import config_file
    if sim not in SIMS:
        raise ValueError(f'sim={sim!r}: expected one of {SIMS} (gazebo: use ros2 launch)')
    use_sim_time = (sim != 'none') if use_sim_time is None else bool(use_sim_time)
    params_file = Path(params_file) if params_file else config_file('controller.yaml')
    if not params_file.is_file():
        where = '' if params_file.is_absolute() else f' (looked at {params_file.absolute()})'
        raise FileNotFoundError(f'params file not found: {params_file}{where}')
    env = dict(os.environ if env is None else env)
    bringup = Bringup(controller_name=('/' + namespace.strip('/') if namespace else '') + '/controller')
    cparams = {'use_sim_time': use_sim_time}
    if model:
        cparams['model'] = str(model)
    cparams.update(controller_params or {})
    try:
        if sim == 'mujoco':
            sparams = {'scene': scene, 'real_time_factor': 1.0}
            sparams.update(sim_params or {})
            bringup.nodes.append(NodeProcess('sim_node', [find_executable('sim_node')] + ros_args(
                'sim_node', namespace, params=sparams, remaps=remaps)).start(env, log_dir, echo))
        bringup.nodes.append(NodeProcess('controller', [find_executable('controller_node')] + ros_args(
            'controller', namespace, [params_file], cparams, remaps)).start(env, log_dir, echo))
    except BaseException:
        bringup.stop()  # e.g. controller_node not found: do not leave sim_node running
        raise
    return bringup
