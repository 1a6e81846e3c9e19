"""Start the package's nodes as subprocesses, the way `ros2 run` / the launch file does.

``liquid-controller bringup`` and ``liquid-controller demo`` use this when the launch packages are not
installed (PyPI installs). The executables are the installed console scripts (``controller_node``,
``sim_node``), found in ``<prefix>/lib/liquid_controller`` (colcon / ament), next to the running Python
(a venv's bin/), or on PATH. Parameters go in with ``--ros-args --params-file`` and ``-p`` exactly as
the launch file passes them.
"""
from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
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


@dataclass
class NodeProcess:
    """One running node executable."""
    name: str
    command: list
    process: subprocess.Popen = None
    log_path: Path | None = None

    def start(self, env=None, log_dir=None):
        out = None
        if log_dir is not None:
            self.log_path = Path(log_dir) / f'{self.name}.log'
            out = open(self.log_path, 'w')
        # own process group: Ctrl-C in the terminal reaches us, we forward it in order
        self.process = subprocess.Popen(self.command, env=env, stdout=out, stderr=subprocess.STDOUT
                                        if out else None, start_new_session=True)
        return self

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
        return self.process.poll()

    def tail(self, n=20):
        if self.log_path and self.log_path.is_file():
            return '\n'.join(self.log_path.read_text(errors='replace').splitlines()[-n:])
        return ''


@dataclass
class Bringup:
    """The node processes of one bringup; stop them with :meth:`stop` (reverse start order)."""
    nodes: list = field(default_factory=list)
    controller_name: str = '/controller'

    def stop(self, timeout=10.0):
        codes = {}
        for node in reversed(self.nodes):
            codes[node.name] = node.stop(timeout)
        return codes

    def check_alive(self):
        """Raise RuntimeError naming the first node that exited (with its log tail)."""
        for node in self.nodes:
            if not node.alive():
                raise RuntimeError(f'{node.name} exited with code {node.process.returncode}\n'
                                   f'{node.tail()}')


def start_bringup(sim='mujoco', params_file=None, model='', namespace='', use_sim_time=None,
                  scene='summer', sim_params=None, controller_params=None, remaps=None, env=None,
                  log_dir=None):
    """Start sim_node (sim='mujoco') and controller_node with the same parameter files the launch file
    uses. The controller starts unconfigured; bring it up with
    :func:`liquid_controller.ros.lifecycle_client.bring_up` (``bringup.controller_name``)."""
    from liquid_controller.paths import config_file
    if sim not in SIMS:
        raise ValueError(f'sim={sim!r}: expected one of {SIMS} (gazebo: use ros2 launch)')
    use_sim_time = (sim != 'none') if use_sim_time is None else bool(use_sim_time)
    params_file = Path(params_file) if params_file else config_file('controller.yaml')
    if not params_file.is_file():
        raise FileNotFoundError(f'params file not found: {params_file}')
    env = dict(os.environ if env is None else env)
    bringup = Bringup(controller_name=('/' + namespace.strip('/') if namespace else '') + '/controller')
    cparams = {'use_sim_time': use_sim_time}
    if model:
        cparams['model'] = str(model)
    cparams.update(controller_params or {})
    if sim == 'mujoco':
        sparams = {'scene': scene, 'real_time_factor': 1.0}
        sparams.update(sim_params or {})
        bringup.nodes.append(NodeProcess('sim_node', [find_executable('sim_node')] + ros_args(
            'sim_node', namespace, params=sparams, remaps=remaps)).start(env, log_dir))
    bringup.nodes.append(NodeProcess('controller', [find_executable('controller_node')] + ros_args(
        'controller', namespace, [params_file], cparams, remaps)).start(env, log_dir))
    return bringup
