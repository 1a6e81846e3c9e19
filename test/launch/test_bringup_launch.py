"""launch/bringup.launch.py, config/gz_bridge.yaml and the Gazebo SDF files.

The launch packages are not on PyPI: the launch file is checked as Python AST here (executables,
arguments), and additionally loaded with `launch` when it is importable (a ROS install).
"""
import ast
import importlib.util
import xml.etree.ElementTree as ET

import pytest
import yaml

from liquid_controller.paths import share_dir
from liquid_controller.ros.controller_node import TOPICS

ROOT = share_dir()
LAUNCH = ROOT / 'launch' / 'bringup.launch.py'
EXTERNAL_EXECUTABLES = {('ros_gz_sim', 'create'), ('ros_gz_bridge', 'parameter_bridge')}


def _console_scripts():
    tree = ast.parse((ROOT / 'setup.py').read_text())
    for node in ast.walk(tree):
        if isinstance(node, ast.Dict):
            for k, v in zip(node.keys, node.values):
                if isinstance(k, ast.Constant) and k.value == 'console_scripts':
                    return {ast.literal_eval(e).split('=')[0].strip() for e in v.elts}
    raise AssertionError('setup.py has no console_scripts')


def _calls(name):
    tree = ast.parse(LAUNCH.read_text())
    return [n for n in ast.walk(tree) if isinstance(n, ast.Call)
            and getattr(n.func, 'id', getattr(n.func, 'attr', None)) == name]


def _constants():
    """Module-level NAME = 'literal' assignments of the launch file."""
    tree = ast.parse(LAUNCH.read_text())
    out = {}
    for node in tree.body:
        if isinstance(node, ast.Assign) and isinstance(node.value, ast.Constant):
            for target in node.targets:
                if isinstance(target, ast.Name):
                    out[target.id] = node.value.value
    return out


def _kw(call, key):
    """Literal value of keyword ``key`` (a constant or a module-level constant name)."""
    for kw in call.keywords:
        if kw.arg == key:
            if isinstance(kw.value, ast.Name):
                return _constants()[kw.value.id]
            return ast.literal_eval(kw.value)
    return None


def test_launch_file_names_only_installed_executables():
    scripts = _console_scripts()
    nodes = _calls('Node') + _calls('LifecycleNode')
    assert len(nodes) >= 4
    seen = set()
    for call in nodes:
        package = _kw(call, 'package')
        executable = _kw(call, 'executable')
        seen.add((package, executable))
        if package == 'liquid_controller':
            assert executable in scripts, f'{executable} is not a console script of setup.py'
        else:
            assert (package, executable) in EXTERNAL_EXECUTABLES
    assert ('liquid_controller', 'controller_node') in seen
    assert ('liquid_controller', 'sim_node') in seen
    lifecycle = _calls('LifecycleNode')
    assert len(lifecycle) == 1 and _kw(lifecycle[0], 'executable') == 'controller_node'


def test_launch_arguments_and_lifecycle_activation():
    args = {ast.literal_eval(c.args[0]) for c in _calls('DeclareLaunchArgument')}
    assert {'sim', 'use_sim_time', 'params_file', 'model', 'namespace'} <= args
    assert {'image_topic', 'imu_topic', 'odom_topic', 'cmd_vel_topic'} <= args
    text = LAUNCH.read_text()
    assert 'TRANSITION_CONFIGURE' in text and 'TRANSITION_ACTIVATE' in text
    assert _calls('OnStateTransition') and _calls('ChangeState')
    assert 'gz_sim.launch.py' in text and 'gz_bridge.yaml' in text
    # every file the launch file installs from this package exists
    for rel in ('config/controller.yaml', 'config/gz_bridge.yaml', 'config/gazebo/track_world.sdf',
                'config/gazebo/rover.sdf'):
        assert (ROOT / rel).is_file(), rel


@pytest.mark.skipif(importlib.util.find_spec('launch') is None
                    or importlib.util.find_spec('launch_ros') is None,
                    reason='launch / launch_ros are not installed (not on PyPI); AST checks above')
def test_launch_file_loads_with_launch():
    from launch import LaunchDescription
    from launch.actions import DeclareLaunchArgument
    spec = importlib.util.spec_from_file_location('bringup_launch', LAUNCH)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    ld = module.generate_launch_description()
    assert isinstance(ld, LaunchDescription)
    names = {e.name for e in ld.entities if isinstance(e, DeclareLaunchArgument)}
    assert {'sim', 'use_sim_time', 'params_file', 'model', 'namespace'} <= names


def test_gz_bridge_matches_controller_topics_and_rover_sdf():
    bridge = yaml.safe_load((ROOT / 'config' / 'gz_bridge.yaml').read_text())
    by_ros = {e['ros_topic_name']: e for e in bridge}
    for key in ('image', 'imu', 'odom', 'cmd_vel'):
        assert TOPICS[key] in by_ros, key
    assert '/clock' in by_ros and 'camera/camera_info' in by_ros
    assert by_ros[TOPICS['cmd_vel']]['direction'] == 'ROS_TO_GZ'
    assert by_ros[TOPICS['cmd_vel']]['ros_type_name'] == 'geometry_msgs/msg/TwistStamped'
    for key in ('image', 'imu', 'odom'):
        assert by_ros[TOPICS[key]]['direction'] == 'GZ_TO_ROS'
    types = {e['ros_topic_name']: e['ros_type_name'] for e in bridge}
    assert types[TOPICS['image']] == 'sensor_msgs/msg/Image'
    assert types[TOPICS['imu']] == 'sensor_msgs/msg/Imu'
    assert types[TOPICS['odom']] == 'nav_msgs/msg/Odometry'
    # the Gazebo side names topics that the rover actually publishes / subscribes
    rover = ET.parse(ROOT / 'config' / 'gazebo' / 'rover.sdf').getroot()
    gz_topics = {t.text for tag in ('topic', 'odom_topic', 'camera_info_topic') for t in rover.iter(tag)}
    for e in bridge:
        if e['gz_topic_name'] != '/clock':
            assert e['gz_topic_name'] in gz_topics, e['gz_topic_name']


def test_gazebo_world_loads_sensors_and_imu_and_rover_matches_controller():
    world = ET.parse(ROOT / 'config' / 'gazebo' / 'track_world.sdf').getroot()
    plugins = {p.get('filename') for p in world.iter('plugin')}
    assert {'gz-sim-sensors-system', 'gz-sim-imu-system', 'gz-sim-physics-system'} <= plugins
    assert world.find('world').get('name') == 'liquid_track'
    assert 'liquid_track' in LAUNCH.read_text()  # ros_gz_sim create targets this world
    rover = ET.parse(ROOT / 'config' / 'gazebo' / 'rover.sdf').getroot()
    sensors = {s.get('type'): s for s in rover.iter('sensor')}
    assert {'camera', 'imu'} <= set(sensors)
    params = yaml.safe_load((ROOT / 'config' / 'controller.yaml').read_text())
    p = params['/**/controller']['ros__parameters']
    image = sensors['camera'].find('camera/image')
    assert int(image.find('width').text) == p['image_width']
    assert int(image.find('height').text) == p['image_height']
    assert image.find('format').text == 'R8G8B8'  # rgb8
    assert {f.text for f in rover.iter('gz_frame_id')} == {'camera_link', 'imu_link'}
    drive = [pl for pl in rover.iter('plugin') if pl.get('filename') == 'gz-sim-diff-drive-system'][0]
    assert drive.find('frame_id').text == 'odom' and drive.find('child_frame_id').text == 'base_link'
    assert float(drive.find('max_linear_velocity').text) <= p['safety']['v_max']
