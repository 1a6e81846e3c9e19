"""The repository is a well-formed ROS 2 ament_python package that builds with colcon and pip."""
import ast
import os
import re
import shutil
import subprocess
import sys
import xml.etree.ElementTree as ET
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
PACKAGE = 'liquid_controller'
DATA_FOLDERS = ('launch', 'config', 'models')


def manifest():
    return ET.parse(ROOT / 'package.xml').getroot()


def setup_py_entry_points():
    """console_scripts names declared in setup.py (parsed, not executed)."""
    tree = ast.parse((ROOT / 'setup.py').read_text())
    for node in ast.walk(tree):
        if isinstance(node, ast.Dict):
            for key, value in zip(node.keys, node.values):
                if isinstance(key, ast.Constant) and key.value == 'console_scripts':
                    return [ast.literal_eval(v).split('=')[0].strip() for v in value.elts]
    raise AssertionError('setup.py declares no console_scripts')


def test_manifest_is_format_3_ament_python_apache():
    root = manifest()
    assert root.get('format') == '3'
    assert root.findtext('name') == PACKAGE
    assert root.find('export/build_type').text == 'ament_python'
    assert root.findtext('license') == 'Apache-2.0'
    assert 'Apache License' in (ROOT / 'LICENSE').read_text() and 'Version 2.0' in (ROOT / 'LICENSE').read_text()
    assert (ROOT / 'resource' / PACKAGE).is_file()


def test_version_agrees_between_manifest_setup_and_installed_package():
    import liquid_controller
    version = manifest().findtext('version')
    assert re.fullmatch(r'\d+\.\d+\.\d+', version)
    # setup.py reads package.xml; the installed distribution must carry the same string
    assert liquid_controller.__version__ == version


# A ROS interface module named in a string: `_msg('sensor_msgs.msg', 'Image')`, `import_module('std_srvs.srv')`,
# a ('nav_msgs.msg', 'Odometry') table entry. Dynamic imports hide the dependency from an import scan.
INTERFACE_MODULE = re.compile(r'([a-z][a-z0-9_]*)\.(?:msg|srv|action)(?:\.[A-Za-z_]\w*)?')
# Packages named as strings to launch / ament_index: Node(package='ros_gz_bridge'),
# get_package_share_directory('ros_gz_sim').
PACKAGE_LOOKUPS = {'get_package_share_directory', 'get_package_prefix', 'FindPackageShare', 'FindPackagePrefix'}


def _is_ros_module(module):
    parts = module.split('.')
    return ((len(parts) > 1 and parts[1] in ('msg', 'srv', 'action'))
            or parts[0] in ('rclpy', 'ament_index_python') or parts[0].startswith('launch'))


def ros_packages_used(source):
    """ROS packages a Python source needs, derived from the code itself (no list of known packages):
    `import`/`from` of rclpy, ament_index_python, launch*, `<pkg>.msg|srv|action`; string literals naming an
    interface module (dynamic `_msg(...)` / `importlib.import_module(...)` imports); `package='...'` and
    package share/prefix look-ups in launch files."""
    used = set()
    for node in ast.walk(ast.parse(source)):
        modules = []
        if isinstance(node, ast.Import):
            modules = [a.name for a in node.names]
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            modules = [node.module]
        elif isinstance(node, ast.Constant) and isinstance(node.value, str) \
                and INTERFACE_MODULE.fullmatch(node.value):
            modules = [node.value]
        elif isinstance(node, ast.Call):
            func = node.func.attr if isinstance(node.func, ast.Attribute) else getattr(node.func, 'id', '')
            args = [k.value for k in node.keywords if k.arg == 'package']
            if func in PACKAGE_LOOKUPS and node.args:
                args.append(node.args[0])
            used |= {a.value for a in args if isinstance(a, ast.Constant) and isinstance(a.value, str)}
        used |= {m.split('.')[0] for m in modules if _is_ros_module(m)}
    return used - {PACKAGE}


def ros_sources(folders=(PACKAGE, 'launch')):
    for folder in folders:
        yield from sorted((ROOT / folder).rglob('*.py'))


def test_dependency_scan_sees_static_dynamic_and_launch_references():
    source = """
import rclpy.executors
from rcl_interfaces.msg import ParameterDescriptor
from launch_ros.actions import Node
import numpy, torch, os.path
def f():
    from diagnostic_msgs.msg import KeyValue
    a = _msg('sensor_msgs.msg', 'Image')
    b = importlib.import_module('std_srvs.srv')
    c = {'Odometry': ('nav_msgs.msg', 'Odometry')}
    d = 'turtle_msgs.action.Rotate'
    share = get_package_share_directory('ros_gz_sim')
    Node(package='ros_gz_bridge', executable='parameter_bridge')
    Node(package='liquid_controller', executable='controller_node')
    text = 'see sensor_msgs/msg/Image or the msg. field'
"""
    assert ros_packages_used(source) == {
        'rclpy', 'rcl_interfaces', 'launch_ros', 'diagnostic_msgs', 'sensor_msgs', 'std_srvs', 'nav_msgs',
        'turtle_msgs', 'ros_gz_sim', 'ros_gz_bridge'}


def test_every_imported_ros_package_is_a_declared_dependency():
    declared = {e.text for tag in ('exec_depend', 'depend') for e in manifest().iter(tag)}
    used = {}
    for path in ros_sources():
        for pkg in ros_packages_used(path.read_text()):
            used.setdefault(pkg, []).append(str(path.relative_to(ROOT)))
    # sanity: the scan does see the node's dynamic `_msg(...)` imports and the launch file's packages
    assert {'rclpy', 'rcl_interfaces', 'sensor_msgs', 'launch', 'launch_ros', 'ros_gz_sim'} <= set(used)
    missing = {pkg: files for pkg, files in used.items() if pkg not in declared}
    assert not missing, f'imported but not declared in package.xml: {missing}'


# ROS packages with no PyPI wheel (checked: no ros-tf2-msgs on PyPI), used only when a system ROS 2
# provides them; the code imports them optionally (see the test below).
SYSTEM_ROS_ONLY = {'tf2_msgs'}


def test_ros_packages_the_python_code_imports_come_from_requirements_txt():
    """Every ROS package liquid_controller/ imports (launch files aside: launch is not on PyPI) is pinned
    as its ros-* wheel, not left to arrive as some other wheel's dependency."""
    pinned = {line.split('==')[0].strip().lower() for line in (ROOT / 'requirements.txt').read_text().splitlines()
              if line.strip() and not line.startswith('#')}
    used = set().union(*(ros_packages_used(p.read_text()) for p in ros_sources((PACKAGE,))))
    missing = sorted(pkg for pkg in used - SYSTEM_ROS_ONLY if 'ros-' + pkg.replace('_', '-') not in pinned)
    assert not missing, f'not pinned in requirements.txt as ros-* wheels: {missing}'


def test_system_ros_only_packages_are_imported_optionally():
    """A package without a PyPI wheel (SYSTEM_ROS_ONLY) may only be imported inside a
    `try: ... except ImportError` so a pip-only install runs without it, and must be declared."""
    declared = {e.text for tag in ('exec_depend', 'depend') for e in manifest().iter(tag)}
    assert SYSTEM_ROS_ONLY <= declared
    for path in ros_sources((PACKAGE,)):
        tree = ast.parse(path.read_text())
        guarded = set()
        for node in ast.walk(tree):
            if isinstance(node, ast.Try) and any(
                    isinstance(h.type, ast.Name) and h.type.id in ('ImportError', 'ModuleNotFoundError')
                    for h in node.handlers):
                guarded |= {id(n) for stmt in node.body for n in ast.walk(stmt)}
        for node in ast.walk(tree):
            if isinstance(node, (ast.Import, ast.ImportFrom)):
                names = [node.module or ''] if isinstance(node, ast.ImportFrom) else [a.name for a in node.names]
                for name in names:
                    if name.split('.')[0] in SYSTEM_ROS_ONLY:
                        assert id(node) in guarded, f'{path}:{node.lineno} imports {name} unguarded'


def setup_kwargs():
    """The keyword arguments setup.py passes to setup(), by running it with setup() replaced."""
    import runpy
    import setuptools
    captured = {}
    original, cwd = setuptools.setup, os.getcwd()
    setuptools.setup = lambda **kw: captured.update(kw)
    try:
        os.chdir(ROOT)
        runpy.run_path(str(ROOT / 'setup.py'), run_name='__main__')
    finally:
        setuptools.setup = original
        os.chdir(cwd)
    return captured


def shipped_data_files(folders=DATA_FOLDERS):
    """Repository-relative paths of the data files the package ships (recursively): the files git tracks
    there (so local outputs such as `make model`'s models/<name>/ are not counted), or every file when
    the tree is not a git checkout."""
    proc = subprocess.run(['git', 'ls-files', '--', *folders], cwd=ROOT, capture_output=True, text=True) \
        if (ROOT / '.git').exists() and shutil.which('git') else None
    if proc is not None and proc.returncode == 0 and proc.stdout.strip():
        files = set(proc.stdout.split())
    else:
        files = {str(p.relative_to(ROOT)) for d in folders for p in (ROOT / d).rglob('*')
                 if p.is_file() and '__pycache__' not in p.parts}
    return {f for f in files if not f.endswith('.gitkeep') and (ROOT / f).is_file()}


def test_every_setup_py_data_glob_matches_files_and_every_shipped_data_file_is_installed():
    from glob import glob
    kwargs = setup_kwargs()
    for pkg, patterns in kwargs['package_data'].items():
        for pattern in patterns:
            assert [f for f in glob(str(ROOT / pkg.replace('.', '/') / pattern)) if os.path.isfile(f)], \
                f'package_data {pkg}: {pattern!r} matches no file'
    installed = {}
    for dest, files in kwargs['data_files']:
        assert files, f'data_files entry {dest!r} installs nothing (its glob matches no file)'
        for f in files:
            assert (ROOT / f).is_file(), f'data_files entry {dest!r}: {f} does not exist'
            installed[f] = dest
    # every file in the shipped data folders (sub-folders such as models/baselines included) is installed
    # into share/<pkg>/<same relative folder>
    shipped = shipped_data_files()
    assert any(f.startswith('models/baselines/') for f in shipped)
    wrong = {f: installed.get(f) for f in shipped if installed.get(f) != f'share/{PACKAGE}/{os.path.dirname(f)}'}
    assert not wrong, f'shipped data files not installed (or installed elsewhere): {wrong}'


needs_make = pytest.mark.skipif(shutil.which('make') is None, reason='GNU make is not installed')


@needs_make
def test_makefile_rejects_an_unsupported_python_before_creating_the_venv(tmp_path):
    fake = tmp_path / 'python3.13'
    fake.write_text('#!/bin/sh\necho 3.13\n')
    fake.chmod(0o755)
    venv = tmp_path / 'venv'
    proc = subprocess.run(['make', '-C', str(ROOT), 'setup', f'PYTHON={fake}', f'VENV={venv}'],
                          capture_output=True, text=True, timeout=60)
    assert proc.returncode != 0
    errors = [line for line in proc.stderr.splitlines() if line.startswith('make setup:')]
    assert len(errors) == 1 and 'Python 3.13' in errors[0] and '3.10 3.11 3.12' in errors[0], proc.stderr
    assert not venv.exists()
    missing = subprocess.run(['make', '-C', str(ROOT), 'setup', f'PYTHON={tmp_path}/nothing', f'VENV={venv}'],
                             capture_output=True, text=True, timeout=60)
    assert missing.returncode != 0 and 'does not run' in missing.stderr and not venv.exists()


def _pip_install_lines(*make_args, venv):
    proc = subprocess.run(['make', '-C', str(ROOT), '-n', 'setup', f'VENV={venv}', *make_args],
                          capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0, proc.stderr
    joined = proc.stdout.replace('\\\n', ' ')
    return [line for line in joined.splitlines() if '-m pip install' in line and '-r requirements.txt' in line]


@needs_make
def test_makefile_torch_index_url_is_passed_to_pip_only_when_set(tmp_path):
    venv = tmp_path / 'venv'
    [plain] = _pip_install_lines(venv=venv)
    assert '--extra-index-url' not in plain and '--index-url' not in plain
    [cpu] = _pip_install_lines('TORCH_INDEX_URL=https://download.pytorch.org/whl/cpu', venv=venv)
    assert '--extra-index-url https://download.pytorch.org/whl/cpu ' in cpu
    assert cpu.split() == plain.split()[:-6] + ['--extra-index-url', 'https://download.pytorch.org/whl/cpu'] \
        + plain.split()[-6:]


def test_requirements_and_constraints_pin_torch_exactly_with_no_local_versions():
    """A local version (torch==2.13.0+cpu) resolves only where a local wheel folder serves it; a plain
    `pip install` elsewhere fails. torch is pinned as exactly 2.13.0 (TORCH_INDEX_URL picks the CPU build)."""
    for name in ('constraints.txt', 'requirements.txt', 'requirements-dev.txt', 'requirements-bench.txt'):
        pins = [line.split('#')[0].strip() for line in (ROOT / name).read_text().splitlines()]
        pins = [p for p in pins if p]
        assert not [p for p in pins if '+' in p], (name, [p for p in pins if '+' in p])
        torch_pins = [p for p in pins if re.match(r'torch\b', p, re.I)]
        assert torch_pins in ([], ['torch==2.13.0']), (name, torch_pins)
    assert 'torch==2.13.0' in (ROOT / 'constraints.txt').read_text().split()
    assert 'torch==2.13.0' in (ROOT / 'requirements.txt').read_text().split()


def test_console_scripts_are_importable_mains():
    import importlib
    tree = ast.parse((ROOT / 'setup.py').read_text())
    targets = {}
    for node in ast.walk(tree):
        if isinstance(node, ast.Constant) and isinstance(node.value, str) and ' = ' in node.value:
            name, target = (s.strip() for s in node.value.split('='))
            targets[name] = target
    assert set(setup_py_entry_points()) <= set(targets)
    for name, target in targets.items():
        module, func = target.split(':')
        assert callable(getattr(importlib.import_module(module), func)), name


@pytest.mark.skipif(shutil.which('colcon', path=os.path.dirname(sys.executable)) is None,
                    reason='colcon is installed by requirements-dev.txt; missing here')
def test_colcon_build_installs_executables_and_share_files(tmp_path):
    src = tmp_path / 'src'
    src.mkdir()
    # Copy only what a colcon build reads, not the whole tree with .venv
    pkg = src / PACKAGE
    shutil.copytree(ROOT, pkg, ignore=shutil.ignore_patterns(
        '.venv', 'build', 'install', 'log', '.git', '__pycache__', '*.egg-info', 'bench', 'out'))
    env = dict(os.environ, PATH=f'{os.path.dirname(sys.executable)}:{os.environ["PATH"]}')
    proc = subprocess.run(['colcon', 'build', '--base-paths', 'src'], cwd=tmp_path, env=env,
                          capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    prefix = tmp_path / 'install' / PACKAGE
    for exe in setup_py_entry_points():
        assert os.access(prefix / 'lib' / PACKAGE / exe, os.X_OK), exe
    share = prefix / 'share' / PACKAGE
    assert (share / 'package.xml').is_file()
    assert (prefix / 'share' / 'ament_index' / 'resource_index' / 'packages' / PACKAGE).is_file()
    installed = {str(p.relative_to(share)) for p in share.rglob('*') if p.is_file()}
    shipped = shipped_data_files()
    assert shipped <= installed, sorted(shipped - installed)
    assert (share / 'models' / 'baselines' / 'lstm.json').is_file()
