"""Bring up the liquid controller on the embedded MuJoCo simulator, on Gazebo Harmonic, or on a robot.

    ros2 launch liquid_controller bringup.launch.py sim:=mujoco
    ros2 launch liquid_controller bringup.launch.py sim:=gazebo
    ros2 launch liquid_controller bringup.launch.py sim:=none cmd_vel_topic:=/diff_drive/cmd_vel \
        image_topic:=/camera/color/image_raw imu_topic:=/imu/data_raw model:=/path/model.json

Arguments: sim (mujoco | gazebo | none), use_sim_time (default: true for a simulator, false for none),
params_file (controller parameters, default config/controller.yaml), model (overrides the params
file's `model` when not empty), namespace, scene (mujoco: the sim_node scene; gazebo: the scene the
world is generated from), world (gazebo: an SDF world file; empty = generate one from `scene`),
headless (gazebo: run the gz sim server only, no GUI), and topic remaps image_topic, imu_topic,
odom_topic, cmd_vel_topic.

sim:=mujoco starts sim_node with config/sim_node.yaml (the `scene` argument overrides its scene).
sim:=gazebo without `world` writes the Gazebo world for `scene` at launch time
(liquid_controller.sim.gazebo_world: the same ground raster, lane, markings, colours, obstacles, camera
and rover as the MuJoCo scene, rover included at the start pose) into a fresh temporary folder and adds
that folder to GZ_SIM_RESOURCE_PATH for the ground texture. With `world`, the world name is read from
the file, and the scene's rover (the SDF of config/gazebo/rover.sdf with that scene's camera mounting)
is spawned at the scene's start pose unless the world already has a model named `rover`.

The controller is a lifecycle node: this file configures it at start and activates it once that
configure succeeded (configuring -> inactive). Only that first configure is followed by an activate: a later
`ros2 lifecycle set /controller deactivate` stays deactivated. The launch ends with an error (exit code 1)
when the start-up fails: a params_file that does not exist, a configure that fails (the controller logs
why, just above the launch's error), or the controller or sim_node exiting while the launch runs.
Without the launch packages (PyPI installs), `liquid-controller bringup --sim mujoco|none` starts the
same executables with the same parameter files.

Executables used: liquid_controller controller_node and sim_node; ros_gz_sim gz_sim.launch.py and
create; ros_gz_bridge parameter_bridge (config/gz_bridge.yaml).
"""
import os
import tempfile
import xml.etree.ElementTree as ET

from ament_index_python.packages import get_package_share_directory
from launch import LaunchDescription
from launch.actions import (AppendEnvironmentVariable, DeclareLaunchArgument, EmitEvent,
                            IncludeLaunchDescription, LogInfo, OpaqueFunction, RegisterEventHandler,
                            UnregisterEventHandler)
from launch.event_handlers import OnProcessExit
from launch.launch_description_sources import PythonLaunchDescriptionSource
from launch.substitutions import LaunchConfiguration
from launch_ros.actions import LifecycleNode, Node
from launch_ros.event_handlers import OnStateTransition
from launch_ros.events.lifecycle import ChangeState
from lifecycle_msgs.msg import Transition

PACKAGE = 'liquid_controller'
SIMS = ('mujoco', 'gazebo', 'none')


def _bool(text):
    return str(text).strip().lower() in ('1', 'true', 'yes', 'on')


def _check_params_file(path):
    """The controller's parameters file must exist: a missing one is an error, not a launch warning."""
    if not os.path.isfile(path):
        raise FileNotFoundError(f'params_file:={path}: no such file (the controller parameters YAML; '
                                f'leave params_file empty for the package config/controller.yaml)')
    return path


def _fail(context, reason):
    """End the launch with ``reason`` as its error and exit code 1 (launch reports an exception raised
    by an action as `Caught exception in launch ...: reason` and shuts everything down). Nothing
    happens once the launch is already shutting down (Ctrl-C stops the processes: not an error)."""
    if context.is_shutdown:
        return None
    raise RuntimeError(reason)


def _fatal_exit(name):
    """OnProcessExit callback: process ``name`` exiting while the launch runs ends the launch."""
    def on_exit(event, context):
        return [OpaqueFunction(function=_fail, args=[
            f'{name} exited with code {event.returncode} while the launch was running '
            '(its output is above); stopping the launch'])]
    return on_exit


def _gazebo_world(world, scene, headless):
    """What the Gazebo branch runs: {'world': SDF path, 'name': world name, 'resource_dir': folder for
    GZ_SIM_RESOURCE_PATH or None, 'spawn': (x, y, z, yaw) to spawn 'rover' (the scene's rover SDF,
    written to a temporary folder) at, or None when the world has the rover, 'gz_args': arguments of
    `gz sim`}. Without ``world`` the world for ``scene`` is generated
    (liquid_controller.sim.gazebo_world) into a new temporary folder; ``headless``: server only (-s)."""
    from liquid_controller.sim.gazebo_world import read_world_name, write_gazebo_world, write_rover_sdf
    resource_dir = rover = None
    if not world:
        resource_dir = tempfile.mkdtemp(prefix='liquid_controller_gz_')
        paths = write_gazebo_world(scene, resource_dir)
        world, name, spawn = paths['world'], paths['name'], None
    else:
        if not os.path.isfile(world):
            raise FileNotFoundError(f'world:={world}: no such file (an SDF world; leave world empty to '
                                    f'generate one from scene:={scene})')
        name = read_world_name(world)
        has_rover = any(m.get('name') == 'rover' for m in ET.parse(world).getroot().iter('model'))
        spawn = None
        if not has_rover:
            from liquid_controller.sim.scene import load_scene
            from liquid_controller.sim.track import Track
            from liquid_controller.sim.mjcf import WHEEL_RADIUS
            spec = load_scene(scene)
            x, y, yaw = Track(spec.track, spec.source).pose_at(0.0)
            spawn = (float(x), float(y), WHEEL_RADIUS, float(yaw))
            # the rover with this scene's camera mounting (config/gazebo/rover.sdf is the summer one)
            rover = write_rover_sdf(spec, tempfile.mkdtemp(prefix='liquid_controller_gz_rover_'))
    gz_args = ('-s ' if headless else '') + f'-r {world}'
    return {'world': world, 'name': name, 'resource_dir': resource_dir, 'spawn': spawn, 'rover': rover,
            'gz_args': gz_args}


def _setup(context):
    share = get_package_share_directory(PACKAGE)
    sim = LaunchConfiguration('sim').perform(context)
    if sim not in SIMS:
        raise RuntimeError(f'sim:={sim!r}: expected one of {SIMS}')
    use_sim_time_arg = LaunchConfiguration('use_sim_time').perform(context)
    use_sim_time = (sim != 'none') if use_sim_time_arg == 'auto' else _bool(use_sim_time_arg)
    params_file = _check_params_file(LaunchConfiguration('params_file').perform(context) or
                                     os.path.join(share, 'config', 'controller.yaml'))
    model = LaunchConfiguration('model').perform(context)
    namespace = LaunchConfiguration('namespace').perform(context)
    remaps = [(topic, LaunchConfiguration(arg).perform(context))
              for topic, arg in (('camera/image_raw', 'image_topic'), ('imu/data', 'imu_topic'),
                                 ('odom', 'odom_topic'), ('cmd_vel', 'cmd_vel_topic'))
              if LaunchConfiguration(arg).perform(context)]

    overrides = {'use_sim_time': use_sim_time}
    if model:
        overrides['model'] = model
    controller = LifecycleNode(package=PACKAGE, executable='controller_node', name='controller',
                               namespace=namespace, output='screen',
                               parameters=[params_file, overrides], remappings=remaps)
    # The configure emitted below is answered by exactly one of these handlers (each handles once):
    # failure (configuring -> unconfigured, or -> errorprocessing when on_configure raised) ends the
    # launch; success (configuring -> inactive) activates once and disarms the failure handlers. Matching
    # the start state matters: `goal_state='inactive'` alone also matches a later deactivate
    # (deactivating -> inactive) and would re-activate the robot at once.
    configure_failed = OnStateTransition(
        target_lifecycle_node=controller, start_state='configuring', goal_state='unconfigured',
        handle_once=True,
        entities=[OpaqueFunction(function=_fail, args=[
            'controller: configure failed (configuring -> unconfigured); the controller logged why just '
            'above'])])
    configure_error = OnStateTransition(
        target_lifecycle_node=controller, start_state='configuring', goal_state='errorprocessing',
        handle_once=True,
        entities=[OpaqueFunction(function=_fail, args=[
            'controller: configure raised an error (configuring -> errorprocessing); see the '
            'controller log above'])])
    configured = OnStateTransition(
        target_lifecycle_node=controller, start_state='configuring', goal_state='inactive',
        handle_once=True,
        entities=[UnregisterEventHandler(configure_failed), UnregisterEventHandler(configure_error),
                  EmitEvent(event=ChangeState(
                      lifecycle_node_matcher=lambda action: action is controller,
                      transition_id=Transition.TRANSITION_ACTIVATE))])
    actions = [
        LogInfo(msg=f'liquid_controller bringup: sim={sim} use_sim_time={use_sim_time} '
                    f'params_file={params_file} model={model or "(params file / best available)"}'),
        RegisterEventHandler(configure_failed),
        RegisterEventHandler(configure_error),
        RegisterEventHandler(configured),
        RegisterEventHandler(OnProcessExit(target_action=controller, on_exit=_fatal_exit('controller'))),
        controller,
        EmitEvent(event=ChangeState(lifecycle_node_matcher=lambda action: action is controller,
                                    transition_id=Transition.TRANSITION_CONFIGURE)),
    ]
    scene = LaunchConfiguration('scene').perform(context)
    if sim == 'mujoco':
        # The shipped parameter file first (every sim_node parameter, documented), then the launch
        # argument: scene:= picks the scene without a parameter file of one's own.
        sim_node = Node(package=PACKAGE, executable='sim_node', name='sim_node', namespace=namespace,
                        output='screen',
                        parameters=[os.path.join(share, 'config', 'sim_node.yaml'), {'scene': scene}],
                        remappings=remaps)
        actions += [
            RegisterEventHandler(OnProcessExit(target_action=sim_node, on_exit=_fatal_exit('sim_node'))),
            sim_node,
        ]
    elif sim == 'gazebo':
        gz = _gazebo_world(LaunchConfiguration('world').perform(context), scene,
                           _bool(LaunchConfiguration('headless').perform(context)))
        gz_launch = os.path.join(get_package_share_directory('ros_gz_sim'), 'launch', 'gz_sim.launch.py')
        actions.append(LogInfo(msg=f"gazebo world {gz['name']!r}: {gz['world']}"))
        if gz['resource_dir']:
            actions.append(AppendEnvironmentVariable('GZ_SIM_RESOURCE_PATH', gz['resource_dir']))
        actions.append(IncludeLaunchDescription(PythonLaunchDescriptionSource(gz_launch),
                                                launch_arguments={'gz_args': gz['gz_args']}.items()))
        if gz['spawn'] is not None:
            x, y, z, yaw = gz['spawn']
            actions.append(Node(package='ros_gz_sim', executable='create', output='screen',
                                arguments=['-world', gz['name'], '-name', 'rover', '-file', gz['rover'],
                                           '-x', f'{x:.4f}', '-y', f'{y:.4f}', '-z', f'{z:.4f}',
                                           '-Y', f'{yaw:.4f}'],
                                parameters=[{'use_sim_time': use_sim_time}]))
        actions += [
            Node(package='ros_gz_bridge', executable='parameter_bridge', name='gz_bridge',
                 namespace=namespace, output='screen',
                 parameters=[{'config_file': os.path.join(share, 'config', 'gz_bridge.yaml'),
                              'use_sim_time': use_sim_time}],
                 remappings=remaps),
        ]
    return actions


def generate_launch_description():
    return LaunchDescription([
        DeclareLaunchArgument('sim', default_value='mujoco', choices=list(SIMS),
                              description='mujoco: embedded simulator; gazebo: Gazebo Harmonic; '
                                          'none: a real robot (remap the topics to its drivers)'),
        DeclareLaunchArgument('use_sim_time', default_value='auto',
                              description='true | false | auto (true with a simulator)'),
        DeclareLaunchArgument('params_file', default_value='',
                              description='controller parameters (default: config/controller.yaml)'),
        DeclareLaunchArgument('model', default_value='',
                              description='model name in models/ or path to NAME.json (overrides the '
                                          'params file when set)'),
        DeclareLaunchArgument('namespace', default_value='', description='namespace of all nodes'),
        DeclareLaunchArgument('scene', default_value='summer',
                              description='scene name or YAML path: the MuJoCo scene (sim:=mujoco), the '
                                          'scene the Gazebo world is generated from (sim:=gazebo)'),
        DeclareLaunchArgument('world', default_value='',
                              description='Gazebo world SDF (default: generated from `scene` at launch)'),
        DeclareLaunchArgument('headless', default_value='false',
                              description='sim:=gazebo: run the gz sim server only (no GUI)'),
        DeclareLaunchArgument('image_topic', default_value='', description='remap camera/image_raw'),
        DeclareLaunchArgument('imu_topic', default_value='', description='remap imu/data'),
        DeclareLaunchArgument('odom_topic', default_value='', description='remap odom'),
        DeclareLaunchArgument('cmd_vel_topic', default_value='', description='remap cmd_vel'),
        OpaqueFunction(function=_setup),
    ])
