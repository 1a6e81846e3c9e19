"""Bring up the liquid controller on the embedded MuJoCo simulator, on Gazebo Harmonic, or on a robot.

    ros2 launch liquid_controller bringup.launch.py sim:=mujoco
    ros2 launch liquid_controller bringup.launch.py sim:=gazebo
    ros2 launch liquid_controller bringup.launch.py sim:=none cmd_vel_topic:=/diff_drive/cmd_vel \
        image_topic:=/camera/color/image_raw imu_topic:=/imu/data_raw model:=/path/model.json

Arguments: sim (mujoco | gazebo | none), use_sim_time (default: true for a simulator, false for none),
params_file (controller parameters, default config/controller.yaml), model (overrides the params
file's `model` when not empty), namespace, scene (mujoco), world (gazebo), and topic remaps
image_topic, imu_topic, odom_topic, cmd_vel_topic.

The controller is a lifecycle node: this file configures it at start and activates it as soon as it
reaches `inactive` (a failed configure leaves it unconfigured and logs why). Without the launch packages
(PyPI installs), `liquid-controller bringup --sim mujoco|none` starts the same executables with the
same parameter files.

Executables used: liquid_controller controller_node and sim_node; ros_gz_sim gz_sim.launch.py and
create; ros_gz_bridge parameter_bridge (config/gz_bridge.yaml).
"""
import os

from ament_index_python.packages import get_package_share_directory
from launch import LaunchDescription
from launch.actions import (DeclareLaunchArgument, EmitEvent, IncludeLaunchDescription, LogInfo,
                            OpaqueFunction, RegisterEventHandler)
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


def _setup(context):
    share = get_package_share_directory(PACKAGE)
    sim = LaunchConfiguration('sim').perform(context)
    if sim not in SIMS:
        raise RuntimeError(f'sim:={sim!r}: expected one of {SIMS}')
    use_sim_time_arg = LaunchConfiguration('use_sim_time').perform(context)
    use_sim_time = (sim != 'none') if use_sim_time_arg == 'auto' else _bool(use_sim_time_arg)
    params_file = LaunchConfiguration('params_file').perform(context) or \
        os.path.join(share, 'config', 'controller.yaml')
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
    actions = [
        LogInfo(msg=f'liquid_controller bringup: sim={sim} use_sim_time={use_sim_time} '
                    f'params_file={params_file} model={model or "(params file / best available)"}'),
        # activate as soon as configure succeeded
        RegisterEventHandler(OnStateTransition(
            target_lifecycle_node=controller, goal_state='inactive',
            entities=[EmitEvent(event=ChangeState(
                lifecycle_node_matcher=lambda action: action is controller,
                transition_id=Transition.TRANSITION_ACTIVATE))])),
        controller,
        EmitEvent(event=ChangeState(lifecycle_node_matcher=lambda action: action is controller,
                                    transition_id=Transition.TRANSITION_CONFIGURE)),
    ]
    if sim == 'mujoco':
        actions.append(Node(package=PACKAGE, executable='sim_node', name='sim_node', namespace=namespace,
                            output='screen',
                            parameters=[{'scene': LaunchConfiguration('scene').perform(context),
                                         'real_time_factor': 1.0}],
                            remappings=remaps))
    elif sim == 'gazebo':
        world = LaunchConfiguration('world').perform(context) or \
            os.path.join(share, 'config', 'gazebo', 'track_world.sdf')
        rover = os.path.join(share, 'config', 'gazebo', 'rover.sdf')
        gz_launch = os.path.join(get_package_share_directory('ros_gz_sim'), 'launch', 'gz_sim.launch.py')
        actions += [
            IncludeLaunchDescription(PythonLaunchDescriptionSource(gz_launch),
                                     launch_arguments={'gz_args': f'-r {world}'}.items()),
            Node(package='ros_gz_sim', executable='create', output='screen',
                 arguments=['-world', 'liquid_track', '-name', 'rover', '-file', rover,
                            '-x', '3.0', '-y', '0.0', '-z', '0.05', '-Y', '1.5708'],
                 parameters=[{'use_sim_time': use_sim_time}]),
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
        DeclareLaunchArgument('scene', default_value='summer', description='MuJoCo scene (sim:=mujoco)'),
        DeclareLaunchArgument('world', default_value='',
                              description='Gazebo world SDF (default: config/gazebo/track_world.sdf)'),
        DeclareLaunchArgument('image_topic', default_value='', description='remap camera/image_raw'),
        DeclareLaunchArgument('imu_topic', default_value='', description='remap imu/data'),
        DeclareLaunchArgument('odom_topic', default_value='', description='remap odom'),
        DeclareLaunchArgument('cmd_vel_topic', default_value='', description='remap cmd_vel'),
        OpaqueFunction(function=_setup),
    ])
