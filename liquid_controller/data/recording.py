"""Record expert demonstrations: drive the privileged expert in the ROS-free simulator, write a rosbag2.

The bag holds what the robot would have recorded plus the simulator's ground truth, all stamped with
simulation time (bag time = header stamp):

=========================  ==============================  ===========================================
topic                      type                            rate
=========================  ==============================  ===========================================
``/camera/image_raw``      sensor_msgs/msg/Image (rgb8)    camera rate (30 Hz), ``camera_optical_frame``
``/camera/camera_info``    sensor_msgs/msg/CameraInfo      camera rate
``/imu/data``              sensor_msgs/msg/Imu             IMU rate (every sample), frame ``imu_link``
``/odom``                  nav_msgs/msg/Odometry           camera rate, ``odom`` -> ``base_link``
``/cmd_vel``               geometry_msgs/msg/TwistStamped  camera rate: the expert's command issued at
                                                           that frame (applied until the next frame)
``/sim/executed_cmd_vel``  geometry_msgs/msg/TwistStamped  camera rate: the command actually applied
``/range``                 sensor_msgs/msg/Range           camera rate, only with ``range_sensor``
``/sim/ground_truth``      std_msgs/msg/Float64MultiArray  camera rate, labelled as in sim_node
                                                           (GROUND_TRUTH_FIELDS, no header: bag time)
=========================  ==============================  ===========================================

The command on ``/cmd_vel`` at stamp t is what the expert decided from the frame at stamp t: the
(image, IMU window, command) triples a policy is trained on. With perturbations, the *executed*
command differs from the expert's intention for a while (drift the expert then recovers from); the bag
records the expert's intended (clean) command as the label, and the executed one on
``/sim/executed_cmd_vel`` so nothing is hidden. metadata.yaml ``custom_data`` holds the scene, seed,
WorldConfig and perturbation settings as JSON under ``liquid_controller.recording``.
"""
import json
import math
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

from liquid_controller.data.bag import BagWriter
from liquid_controller.errors import InputError
from liquid_controller.sim.bridge import (CAMERA_OPTICAL_FRAME, GROUND_TRUTH_FIELDS, camera_intrinsics,
                                          ground_truth_vector)
from liquid_controller.sim.scene_generator import check_training_scene
from liquid_controller.validation import check_int


TOPICS = {
    '/camera/image_raw': 'sensor_msgs/msg/Image',
    '/camera/camera_info': 'sensor_msgs/msg/CameraInfo',
    '/imu/data': 'sensor_msgs/msg/Imu',
    '/odom': 'nav_msgs/msg/Odometry',
    '/cmd_vel': 'geometry_msgs/msg/TwistStamped',
    '/sim/executed_cmd_vel': 'geometry_msgs/msg/TwistStamped',
    '/sim/ground_truth': 'std_msgs/msg/Float64MultiArray',
}
RANGE_TOPIC = ('/range', 'sensor_msgs/msg/Range')


@dataclass
class RecordingSummary:
    """What a recording produced."""

    path: str
    scene: str
    seed: int
    frames: int
    sim_seconds: float
    wall_seconds: float
    counts: dict = field(default_factory=dict)
    metrics: dict = field(default_factory=dict)

    def to_dict(self):
        return asdict(self)


def _ns(t):
    return int(round(t * 1e9))


_DEFAULT = object()


def record_expert(scene='summer', minutes=1.0, out='expert_bag', seed=0, perturbation=_DEFAULT,
                  storage='mcap', world_config=None, expert_options=None, progress=True):
    """Drive the expert for ``minutes`` of simulation time in ``scene`` and write a rosbag2 to ``out``.

    Args:
        scene: shipped scene name, scene file path, or a Scene.
        minutes: simulated duration (> 0); ``round(minutes * 60 * camera_rate_hz)`` frames are written.
        out: bag directory to create (must not exist).
        seed: episode seed (sensor noise and perturbation events).
        perturbation: a :class:`liquid_controller.sim.PerturbationConfig`, a dict of its fields, or
            None for no perturbations; by default ``PerturbationConfig()`` (recovery data included).
        storage: 'mcap' (default) or 'sqlite3'.
        world_config: a :class:`liquid_controller.sim.WorldConfig` (camera size/rate, IMU rate,
            range sensor); None = defaults.
        expert_options: extra keyword arguments for :class:`liquid_controller.sim.ExpertDriver`
            (v_max, a_lat_max, ...).
        progress: show a tqdm progress bar.

    Returns:
        RecordingSummary (message counts per topic, sim and wall seconds, episode metrics).
    """
    from tqdm import tqdm

    from liquid_controller.messages import convert
    from liquid_controller.sim import (DrivingWorld, EpisodeMetrics, ExpertDriver, PerturbationConfig,
                                       WorldConfig, load_scene)

    try:
        minutes = float(minutes)
    except (TypeError, ValueError):
        raise InputError('minutes', minutes, 'expected a number') from None
    if not (math.isfinite(minutes) and 0 < minutes <= 24 * 60):
        raise InputError('minutes', minutes, 'must be in (0, 1440]')
    seed = check_int('seed', seed, 0)
    if perturbation is _DEFAULT:
        perturbation = PerturbationConfig()
    elif isinstance(perturbation, dict):
        perturbation = PerturbationConfig.from_dict(perturbation)
    elif perturbation is not None and not isinstance(perturbation, PerturbationConfig):
        raise InputError('perturbation', perturbation, 'expected a PerturbationConfig, a dict or None')
    config = world_config if world_config is not None else WorldConfig()
    if not isinstance(config, WorldConfig):
        raise InputError('world_config', config, 'expected a WorldConfig')
    if not config.render:
        raise InputError('world_config.render', False, 'recording needs camera images')
    out = Path(out)
    if out.exists():
        raise InputError('out', str(out), 'already exists; choose a new bag directory')

    scene = load_scene(scene)
    check_training_scene(scene)     # the held-out benchmark's scenes are never training data
    n_frames = max(1, int(round(minutes * 60.0 * config.camera_rate_hz)))
    world = DrivingWorld(config)
    wall_start = time.perf_counter()
    try:
        observation = world.reset(scene=scene, seed=seed)
        truth = world.last_truth
        expert = ExpertDriver(scene, dt=1.0 / config.camera_rate_hz, perturbation=perturbation, seed=seed,
                              **(expert_options or {}))
        metrics = EpisodeMetrics(track=world.track, track_map=world.track_map, scene_name=scene.name)
        intrinsics = camera_intrinsics(config.camera_width, config.camera_height, scene.camera.fovy_deg)
        with BagWriter(out, storage=storage) as bag:
            for topic, msgtype in TOPICS.items():
                bag.add_topic(topic, msgtype)
            if config.range_sensor:
                bag.add_topic(*RANGE_TOPIC)
            bag.set_custom_data('liquid_controller.recording', json.dumps({
                'scene': scene.name, 'scene_source': str(scene.source), 'seed': seed,
                'world_config': config.to_dict(),
                'perturbation': None if perturbation is None else perturbation.to_dict(),
                'ground_truth_fields': list(GROUND_TRUTH_FIELDS)}))
            with tqdm(total=n_frames, unit='frame', desc=f'record {scene.name}', disable=not progress) as bar:
                for k in range(n_frames):
                    executed = expert.command(truth)   # what the rover does (perturbed)
                    intended = expert.clean_command    # the expert's own decision: the label
                    metrics.update(truth, command=executed)
                    _write_frame(bag, convert, observation, truth, config, intrinsics, intended, executed)
                    bar.update(1)
                    if k + 1 < n_frames:
                        result = world.step(executed)
                        observation, truth = result.observation, result.truth
            counts = bag.counts
    finally:
        world.close()

    return RecordingSummary(path=str(out), scene=scene.name, seed=seed, frames=n_frames,
                            sim_seconds=n_frames / config.camera_rate_hz,
                            wall_seconds=time.perf_counter() - wall_start, counts=counts,
                            metrics=metrics.summary())


def _write_frame(bag, convert, obs, truth, config, intrinsics, intended, executed):
    """Write one frame: its IMU samples (taken since the previous frame), then everything stamped at
    the frame time, so bag time never goes backwards."""
    imu = obs.imu
    for i in range(len(imu.stamps)):
        t = float(imu.stamps[i])
        bag.write('/imu/data', _ns(t), convert.encode_imu(
            t, imu.angular_velocity[i], imu.linear_acceleration[i], orientation=imu.orientation[i]))
    t = obs.stamp
    odom = obs.odometry
    bag.write('/odom', _ns(odom.stamp), convert.encode_odometry(odom.stamp, odom.x, odom.y, odom.yaw,
                                                                 odom.v, odom.w))
    if config.range_sensor:
        bag.write('/range', _ns(t), convert.encode_range(t, obs.range, 0.02, float(config.range_max)))
    # stamped in the optical frame (REP-103), as the simulator node does: the TF tree holds it
    bag.write('/camera/camera_info', _ns(t), convert.encode_camera_info(
        t, config.camera_width, config.camera_height, *intrinsics, frame_id=CAMERA_OPTICAL_FRAME))
    bag.write('/camera/image_raw', _ns(t), convert.encode_image(obs.image, t, frame_id=CAMERA_OPTICAL_FRAME))
    bag.write('/sim/ground_truth', _ns(t), convert.encode_float_array(
        ground_truth_vector(truth), GROUND_TRUTH_FIELDS))
    bag.write('/cmd_vel', _ns(t), convert.encode_twist(*intended, stamp=t))
    bag.write('/sim/executed_cmd_vel', _ns(t), convert.encode_twist(*executed, stamp=t))


def scene_list(scenes):
    """Scene names/paths from a mix of shipped scene names, scene YAML files and folders of them
    (a folder contributes its ``*.yaml`` files, sorted). Raises InputError naming an entry that is
    none of these, or an empty result."""
    from liquid_controller.sim import load_scene

    if isinstance(scenes, (str, Path)):
        scenes = [scenes]
    out = []
    for entry in scenes:
        path = Path(entry)
        if path.is_dir():
            files = sorted(path.glob('*.yaml'))
            if not files:
                raise InputError('scenes', str(path), 'folder holds no scene *.yaml files')
            out += [str(f) for f in files]
        else:
            load_scene(str(entry))  # a name or file that does not load fails here, naming itself
            out.append(str(entry))
    if not out:
        raise InputError('scenes', list(scenes), 'no scenes given')
    return out


def record_expert_scenes(scenes, minutes=1.0, out='expert_bags', seed=0, progress=True, **kwargs):
    """Record one bag per scene into the folder ``out`` (``out/NN_<scene name>``), ``minutes`` each.

    ``scenes`` as for :func:`scene_list`. Scene ``i`` is recorded with seed ``seed + i`` so that noise
    and perturbations differ between bags. Other keyword arguments go to :func:`record_expert`.
    The folder is what ``liquid-controller train --bags`` takes. Returns the list of summaries.
    """
    from liquid_controller.sim import load_scene

    files = scene_list(scenes)
    seed = check_int('seed', seed, 0)
    out = Path(out)
    if out.exists() and any(out.iterdir()):
        raise InputError('out', str(out), 'already exists and is not empty; choose a new folder')
    scenes = [load_scene(entry) for entry in files]
    for scene in scenes:            # refuse a held-out scene before anything is recorded
        check_training_scene(scene)
    width = len(str(len(files) - 1))
    summaries = []
    for i, scene in enumerate(scenes):
        summaries.append(record_expert(scene, minutes=minutes, out=out / f'{i:0{width}d}_{scene.name}',
                                       seed=seed + i, progress=progress, **kwargs))
    return summaries
