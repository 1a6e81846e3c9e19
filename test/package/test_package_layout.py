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


def test_every_imported_ros_package_is_a_declared_dependency():
    declared = {e.text for tag in ('exec_depend', 'depend') for e in manifest().iter(tag)}
    ros_modules = {'rclpy', 'std_msgs', 'std_srvs', 'sensor_msgs', 'geometry_msgs', 'nav_msgs',
                   'diagnostic_msgs', 'lifecycle_msgs', 'rosgraph_msgs', 'builtin_interfaces',
                   'ament_index_python', 'launch', 'launch_ros'}
    used = set()
    for path in list((ROOT / PACKAGE).rglob('*.py')) + list((ROOT / 'launch').glob('*.py')):
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.Import):
                used |= {a.name.split('.')[0] for a in node.names}
            elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
                used.add(node.module.split('.')[0])
    missing = (used & ros_modules) - declared
    assert not missing, f'imported but not declared in package.xml: {sorted(missing)}'


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
    for folder in ('launch', 'config', 'models'):
        shipped = {p.name for p in (ROOT / folder).glob('*') if p.is_file() and p.name != '.gitkeep'}
        installed = {p.name for p in (share / folder).glob('*')} if (share / folder).exists() else set()
        assert shipped <= installed, (folder, shipped - installed)
