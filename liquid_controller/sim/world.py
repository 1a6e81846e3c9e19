"""The ROS-free driving world: a differential-drive rover on a scene's track, stepped per camera frame.

    world = DrivingWorld(WorldConfig())
    obs = world.reset(scene='summer', seed=0, start=0.0)
    result = world.step((0.8, 0.1))          # advances exactly one camera period (1/30 s)
    result.observation.image                  # (64, 128, 3) uint8 RGB
    result.truth.lateral_offset               # privileged ground truth

Physics runs at ``physics_rate_hz`` (500 Hz); the IMU is sampled at ``imu_rate_hz`` at the physics step
nearest each IMU tick (stamps are the true sample times); wheel odometry is integrated from the wheel
joint velocities at every physics step. Everything is deterministic for a given scene, seed and
command sequence: the seed drives the sensor noise, nothing else is random.
"""
import copy
import math
from dataclasses import asdict, dataclass

import numpy as np

from liquid_controller.config_base import config_from_dict, config_to_dict
from liquid_controller.errors import InputError
from liquid_controller.sim import mjcf
from liquid_controller.sim.scene import load_scene
from liquid_controller.sim.texture import paint_track_map
from liquid_controller.sim.track import Track, _wrap

GRAVITY = 9.81


@dataclass
class WorldConfig:
    """Simulator settings (validated on construction; ``to_dict``/``from_dict`` round-trip).

    camera_height/width: image size (up to 144 x 256); camera_rate_hz: frames per second and step()
    period; imu_rate_hz: IMU samples per second (<= physics rate); physics_rate_hz: MuJoCo steps per
    second; range_sensor: add a forward rangefinder (range_max metres); render: produce camera images
    (False gives ``image=None``, for fast expert-only runs); max_wheel_speed (rad/s), wheel_torque
    (N m) and servo_gain (N m s/rad): wheel velocity servo limits; settle_time: seconds simulated with
    zero command after reset so the rover rests on its wheels before t = 0.
    """
    camera_height: int = 64
    camera_width: int = 128
    camera_rate_hz: float = 30.0
    imu_rate_hz: float = 200.0
    physics_rate_hz: float = 500.0
    range_sensor: bool = False
    range_max: float = 8.0
    render: bool = True
    max_wheel_speed: float = 50.0
    wheel_torque: float = 0.5
    servo_gain: float = 0.5
    settle_time: float = 0.2

    def __post_init__(self):
        for name, low, high in (('camera_height', 8, 144), ('camera_width', 8, 256)):
            value = getattr(self, name)
            if not isinstance(value, int) or isinstance(value, bool) or not low <= value <= high:
                raise InputError(name, value, f'must be an integer in [{low}, {high}]')
        for name in ('camera_rate_hz', 'imu_rate_hz', 'physics_rate_hz', 'range_max',
                     'max_wheel_speed', 'wheel_torque', 'servo_gain'):
            value = getattr(self, name)
            if not isinstance(value, (int, float)) or isinstance(value, bool) or not (
                    math.isfinite(value) and value > 0):
                raise InputError(name, value, 'must be a positive finite number')
        if not (isinstance(self.settle_time, (int, float)) and 0 <= self.settle_time <= 5):
            raise InputError('settle_time', self.settle_time, 'must be in [0, 5] seconds')
        if self.physics_rate_hz < 100 or self.physics_rate_hz > 5000:
            raise InputError('physics_rate_hz', self.physics_rate_hz, 'must be in [100, 5000]')
        if self.camera_rate_hz > self.physics_rate_hz / 2:
            raise InputError('camera_rate_hz', self.camera_rate_hz,
                             'must be at most half of physics_rate_hz')
        if self.imu_rate_hz > self.physics_rate_hz:
            raise InputError('imu_rate_hz', self.imu_rate_hz, 'must not exceed physics_rate_hz')
        if self.imu_rate_hz < self.camera_rate_hz:
            raise InputError('imu_rate_hz', self.imu_rate_hz,
                             'must be at least camera_rate_hz (every frame carries IMU samples)')
        for name in ('range_sensor', 'render'):
            if not isinstance(getattr(self, name), bool):
                raise InputError(name, getattr(self, name), 'must be true or false')

    def to_dict(self):
        """Plain dict of the fields."""
        return config_to_dict(self)

    @classmethod
    def from_dict(cls, data):
        """Inverse of :meth:`to_dict`; unknown keys raise InputError."""
        return config_from_dict(cls, data, 'WorldConfig')


@dataclass
class ImuSamples:
    """IMU samples taken during one camera period (N samples, imu_link frame = base_link axes).

    stamps (N,) s; angular_velocity (N, 3) rad/s; linear_acceleration (N, 3) m/s^2 (proper
    acceleration: reads +9.81 on z at rest); orientation (N, 4) quaternion x, y, z, w in the world frame.
    """
    stamps: np.ndarray
    angular_velocity: np.ndarray
    linear_acceleration: np.ndarray
    orientation: np.ndarray


@dataclass
class OdometryState:
    """Wheel odometry in the ``odom`` frame (starts at 0, 0, 0 on reset): pose integrated from the
    wheel speeds, v (m/s forward) and w (rad/s yaw rate) from the current wheel speeds."""
    stamp: float
    x: float
    y: float
    yaw: float
    v: float
    w: float


@dataclass
class Observation:
    """What the robot senses at one camera frame. image is None when WorldConfig.render is False;
    range is None without the range sensor and +inf when nothing is within range_max."""
    stamp: float
    image: np.ndarray
    imu: ImuSamples
    odometry: OdometryState
    range: float = None


@dataclass
class GroundTruth:
    """Privileged state at the frame time (world frame of the scene).

    lateral_offset: m from the centre line, positive left; heading_error: rover yaw minus track
    heading (rad, wrapped); progress_laps: laps driven since reset (negative when driving backward);
    speed: forward speed (m/s); yaw_rate (rad/s); in_lane: both wheels inside the lane lines;
    collision: a rover geom touched an obstacle during the last period; x, y, yaw: pose; track_s:
    arc length of the closest centre-line point (m); stamp: sim time (s).
    """
    lateral_offset: float
    heading_error: float
    progress_laps: float
    speed: float
    in_lane: bool
    collision: bool
    x: float
    y: float
    yaw: float
    yaw_rate: float = 0.0
    track_s: float = 0.0
    stamp: float = 0.0

    def to_dict(self):
        """JSON-able dict."""
        return {k: (bool(v) if isinstance(v, (bool, np.bool_)) else float(v))
                for k, v in asdict(self).items()}


@dataclass
class StepResult:
    """The outcome of one step: what the robot senses and the privileged truth."""
    observation: Observation
    truth: GroundTruth


def _yaw_quat(yaw):
    """MuJoCo quaternion (w, x, y, z) for a rotation about z."""
    return np.array([math.cos(yaw / 2), 0.0, 0.0, math.sin(yaw / 2)])


class _CompiledScene:
    """A scene compiled into a MuJoCo model (cached per scene appearance/geometry and config)."""

    def __init__(self, scene, config):
        import mujoco
        self.scene = scene
        self.track = Track(scene.track, scene.source)
        self.track_map = paint_track_map(self.track, scene.appearance)
        self.limits = mjcf.RoverLimits(config.max_wheel_speed, config.wheel_torque, config.servo_gain)
        xml, assets = mjcf.build_mjcf(scene, self.track, self.track_map, config, self.limits)
        self.model = mujoco.MjModel.from_xml_string(xml, assets)
        m = self.model
        name = lambda kind, n: mujoco.mj_name2id(m, kind, n)  # noqa: E731
        self.left_dof = m.jnt_dofadr[name(mujoco.mjtObj.mjOBJ_JOINT, 'left_wheel')]
        self.right_dof = m.jnt_dofadr[name(mujoco.mjtObj.mjOBJ_JOINT, 'right_wheel')]

        def sensor_slice(n):
            i = name(mujoco.mjtObj.mjOBJ_SENSOR, n)
            return slice(m.sensor_adr[i], m.sensor_adr[i] + m.sensor_dim[i])
        self.accel = sensor_slice('accel')
        self.gyro = sensor_slice('gyro')
        self.quat = sensor_slice('orientation')
        self.range = sensor_slice('range') if config.range_sensor else None
        self.camera_id = name(mujoco.mjtObj.mjOBJ_CAMERA, 'camera_link')
        rover_bodies = {name(mujoco.mjtObj.mjOBJ_BODY, b) for b in ('base_link', 'left_wheel',
                                                                   'right_wheel')}
        self.rover_geoms = np.array([g for g in range(m.ngeom) if m.geom_bodyid[g] in rover_bodies])
        self.obstacle_geoms = np.array([name(mujoco.mjtObj.mjOBJ_GEOM, f'obstacle_{i}')
                                        for i in range(len(scene.obstacles))], dtype=int)
        self.is_rover = np.zeros(m.ngeom, dtype=bool)
        self.is_rover[self.rover_geoms] = True
        self.is_obstacle = np.zeros(m.ngeom, dtype=bool)
        self.is_obstacle[self.obstacle_geoms] = True


_COMPILED = {}  # (scene geometry/looks, model-relevant config) -> _CompiledScene
_COMPILED_MAX = 16


def _compiled_scene(scene, config):
    """The compiled model for ``scene`` under ``config`` (shared: MjModel is read-only here)."""
    key = (scene.cache_key(), config.camera_height, config.camera_width, config.physics_rate_hz,
           config.range_sensor, config.max_wheel_speed, config.wheel_torque, config.servo_gain)
    compiled = _COMPILED.get(key)
    if compiled is None:
        if len(_COMPILED) >= _COMPILED_MAX:
            _COMPILED.pop(next(iter(_COMPILED)))
        compiled = _COMPILED[key] = _CompiledScene(scene, config)
    # Same geometry and looks; the run-time noise settings come from the scene passed in.
    view = copy.copy(compiled)
    view.scene = scene
    return view


class DrivingWorld:
    """A differential-drive rover with camera, IMU, wheel odometry (and optional range sensor) on a
    scene's closed track. See the module docstring for an example.

    Commands (v m/s, w rad/s) map to wheel speeds through the wheel radius and separation; when a wheel
    would exceed ``max_wheel_speed`` both are scaled down together (the path's curvature is kept).
    The wheel servos' torque limit bounds the acceleration physically.

    After ``reset`` and every ``step``, ``last_truth`` holds the GroundTruth of the latest frame (the
    reset observation carries one IMU sample, taken at t = 0). Compiled scenes are cached per process,
    so switching scenes or creating several worlds costs the ~0.5 s track painting only once per scene.
    Not thread-safe: use one world per thread (each owns a GL context).
    """

    def __init__(self, config=None):
        self.config = config if config is not None else WorldConfig()
        if not isinstance(self.config, WorldConfig):
            raise InputError('config', config, 'must be a WorldConfig')
        self._compiled = None
        self._renderer = None
        self._data = None
        self.wheel_radius = mjcf.WHEEL_RADIUS
        self.wheel_separation = mjcf.WHEEL_SEPARATION
        self.rover_half_width = mjcf.ROVER_HALF_WIDTH

    # ----------------------------------------------------------------------------------- properties
    @property
    def scene(self):
        """The current Scene (after reset)."""
        return self._require().scene

    @property
    def track(self):
        """The current Track (centre line) (after reset)."""
        return self._require().track

    @property
    def track_map(self):
        """The painted top-down TrackMap of the current scene (after reset)."""
        return self._require().track_map

    @property
    def model(self):
        """The compiled mujoco.MjModel (after reset)."""
        return self._require().model

    @property
    def data(self):
        """The live mujoco.MjData (after reset); read it, do not step it yourself."""
        self._require()
        return self._data

    @property
    def time(self):
        """Simulation time (s) since reset."""
        self._require()
        return float(self._data.time)

    @property
    def frame_period(self):
        """Seconds advanced by one step()."""
        return 1.0 / self.config.camera_rate_hz

    def _require(self):
        if self._compiled is None:
            raise RuntimeError('call DrivingWorld.reset() before using the world')
        return self._compiled

    # ---------------------------------------------------------------------------------------- reset
    def reset(self, scene='summer', seed=0, start=0.0, lateral_offset=0.0, heading_offset=0.0):
        """Place the rover on the track and return the first Observation (stamp 0).

        scene: shipped name, path or Scene; seed: sensor-noise seed (int >= 0); start: fraction of the
        lap in [0, 1) where the rover starts on the centre line; lateral_offset (m, left positive) and
        heading_offset (rad) displace it from the centre line, for recovery data.
        """
        import mujoco
        scene = load_scene(scene)
        if not isinstance(seed, (int, np.integer)) or isinstance(seed, bool) or seed < 0:
            raise InputError('seed', seed, 'must be a non-negative integer')
        for name, value in (('start', start), ('lateral_offset', lateral_offset),
                            ('heading_offset', heading_offset)):
            if not isinstance(value, (int, float)) or isinstance(value, bool) or not math.isfinite(value):
                raise InputError(name, value, 'must be a finite number')
        if not 0.0 <= start < 1.0:
            raise InputError('start', start, 'must be a lap fraction in [0, 1)')
        if abs(lateral_offset) > scene.track.lane_width / 2 + scene.track.shoulder_width + 2.0:
            raise InputError('lateral_offset', lateral_offset, 'too far from the track')
        if abs(heading_offset) > math.pi:
            raise InputError('heading_offset', heading_offset, 'must be in [-pi, pi]')

        compiled = _compiled_scene(scene, self.config)
        same_model = self._compiled is not None and compiled.model is self._compiled.model
        if not same_model and self._renderer is not None:
            self._renderer.close()
            self._renderer = None
        self._compiled = compiled
        m = compiled.model
        self._data = d = mujoco.MjData(m)
        self._rng = np.random.default_rng(int(seed))

        track = compiled.track
        x, y, heading = track.pose_at(start * track.length)
        x -= lateral_offset * math.sin(heading)
        y += lateral_offset * math.cos(heading)
        yaw = heading + heading_offset
        d.qpos[0:3] = (x, y, mjcf.WHEEL_RADIUS)
        d.qpos[3:7] = _yaw_quat(yaw)
        d.ctrl[:] = 0.0
        # Let contacts settle with zero command so t = 0 starts at rest on the wheels.
        settle_steps = max(1, int(round(self.config.settle_time * self.config.physics_rate_hz)))
        mujoco.mj_step(m, d, nstep=settle_steps)
        d.time = 0.0
        d.qvel[:] = 0.0
        mujoco.mj_forward(m, d)

        self._frame = 0
        self._next_imu = 0
        self._odom = [0.0, 0.0, 0.0]
        s0, _, _ = track.project(float(d.qpos[0]), float(d.qpos[1]))
        self._s_prev = s0
        self._progress = 0.0
        self._collision = False
        self._imu_buffer = []
        self._record_imu()
        imu = self._take_imu()
        self._last_command = (0.0, 0.0)
        if self.config.render and self._renderer is None:
            from liquid_controller.sim.rendering import OffscreenRenderer
            self._renderer = OffscreenRenderer(m, 'camera_link', self.config.camera_height,
                                               self.config.camera_width)
        obs = self._observe(imu)
        self.last_truth = self._truth()
        return obs

    # ----------------------------------------------------------------------------------------- step
    def wheel_speeds(self, v, w):
        """Wheel angular speeds (left, right) in rad/s for (v, w), scaled into the servo limit."""
        r, b = mjcf.WHEEL_RADIUS, mjcf.WHEEL_SEPARATION
        left = (v - w * b / 2) / r
        right = (v + w * b / 2) / r
        peak = max(abs(left), abs(right))
        limit = self._require().limits.max_wheel_speed
        if peak > limit:
            left, right = left * limit / peak, right * limit / peak
        return left, right

    def step(self, command):
        """Apply ``command = (v m/s, w rad/s)`` and advance exactly one camera period.

        Returns StepResult(observation, truth). Raises InputError for a malformed command.
        """
        import mujoco
        self._require()
        try:
            v, w = (float(c) for c in command)
        except (TypeError, ValueError):
            raise InputError('command', command, 'must be a pair (v, w) of numbers') from None
        if not (math.isfinite(v) and math.isfinite(w)):
            raise InputError('command', command, 'must be finite')
        m, d = self._compiled.model, self._data
        d.ctrl[:] = self.wheel_speeds(v, w)
        self._last_command = (v, w)
        self._frame += 1
        frame_end = self._frame / self.config.camera_rate_hz
        dt = m.opt.timestep
        r, b = mjcf.WHEEL_RADIUS, mjcf.WHEEL_SEPARATION
        cd = self._compiled
        noise = self._compiled.scene.noise
        self._collision = False
        check_contacts = len(cd.obstacle_geoms) > 0
        odom = self._odom
        while d.time < frame_end - 0.5 * dt:
            mujoco.mj_step(m, d)
            wl, wr = d.qvel[cd.left_dof], d.qvel[cd.right_dof]
            ov, ow = r * (wl + wr) / 2, r * (wr - wl) / b
            if noise.odom_v_std or noise.odom_w_std:
                ov += self._rng.normal(0, noise.odom_v_std) if noise.odom_v_std else 0.0
                ow += self._rng.normal(0, noise.odom_w_std) if noise.odom_w_std else 0.0
            mid = odom[2] + ow * dt / 2  # midpoint rule: exact for constant (v, w) arcs to O(dt^3)
            odom[0] += ov * dt * math.cos(mid)
            odom[1] += ov * dt * math.sin(mid)
            odom[2] = float(_wrap(odom[2] + ow * dt))
            if d.time >= self._next_imu / self.config.imu_rate_hz - 0.5 * dt:
                self._record_imu()
            if check_contacts and d.ncon:
                self._collision |= self._touching_obstacle()
        obs = self._observe(self._take_imu())
        self.last_truth = self._truth()
        return StepResult(obs, self.last_truth)

    # ------------------------------------------------------------------------------------ internals
    def _touching_obstacle(self):
        pairs = self._data.contact.geom[:self._data.ncon]  # (ncon, 2) geom ids
        cd = self._compiled
        rover, obstacle = cd.is_rover[pairs], cd.is_obstacle[pairs]  # (ncon, 2) bool lookups
        return bool(((rover[:, 0] & obstacle[:, 1]) | (rover[:, 1] & obstacle[:, 0])).any())

    def _record_imu(self):
        d, cd = self._data, self._compiled
        q = d.sensordata[cd.quat]
        self._imu_buffer.append((float(d.time), d.sensordata[cd.gyro].copy(),
                                 d.sensordata[cd.accel].copy(), np.array([q[1], q[2], q[3], q[0]])))
        self._next_imu += 1

    def _take_imu(self):
        buf, self._imu_buffer = self._imu_buffer, []
        n = len(buf)
        stamps = np.array([b[0] for b in buf], dtype=np.float64)  # (N,)
        gyro = np.array([b[1] for b in buf], dtype=np.float64).reshape(n, 3)
        accel = np.array([b[2] for b in buf], dtype=np.float64).reshape(n, 3)
        quat = np.array([b[3] for b in buf], dtype=np.float64).reshape(n, 4)
        noise = self._compiled.scene.noise
        if noise.gyro_std:
            gyro += self._rng.normal(0, noise.gyro_std, size=gyro.shape)
        if noise.accel_std:
            accel += self._rng.normal(0, noise.accel_std, size=accel.shape)
        return ImuSamples(stamps, gyro, accel, quat)

    def _observe(self, imu):
        d, cd = self._data, self._compiled
        stamp = float(d.time)
        image = None
        if self.config.render:
            image = self._renderer.render(d)
            if cd.scene.noise.image_std:
                noisy = image + self._rng.normal(0, cd.scene.noise.image_std, size=image.shape)
                image = np.clip(noisy + 0.5, 0, 255).astype(np.uint8)
        r, b = mjcf.WHEEL_RADIUS, mjcf.WHEEL_SEPARATION
        wl, wr = d.qvel[cd.left_dof], d.qvel[cd.right_dof]
        v, w = r * (wl + wr) / 2, r * (wr - wl) / b
        noise = cd.scene.noise
        if noise.odom_v_std:
            v += self._rng.normal(0, noise.odom_v_std)
        if noise.odom_w_std:
            w += self._rng.normal(0, noise.odom_w_std)
        odom = OdometryState(stamp, float(self._odom[0]), float(self._odom[1]), float(self._odom[2]),
                             float(v), float(w))
        rng_value = None
        if cd.range is not None:
            raw = float(d.sensordata[cd.range][0])
            if raw < 0 or raw > self.config.range_max:
                rng_value = math.inf  # nothing within range_max (REP-117 convention)
            else:
                rng_value = raw + (self._rng.normal(0, noise.range_std) if noise.range_std else 0.0)
        return Observation(stamp=stamp, image=image, imu=imu, odometry=odom, range=rng_value)

    def _truth(self):
        d, cd = self._data, self._compiled
        x, y = float(d.qpos[0]), float(d.qpos[1])
        qw, qz = d.qpos[3], d.qpos[6]
        qx, qy = d.qpos[4], d.qpos[5]
        yaw = math.atan2(2 * (qw * qz + qx * qy), 1 - 2 * (qy * qy + qz * qz))
        s, offset, heading = cd.track.project(x, y)
        ds = (s - self._s_prev + cd.track.length / 2) % cd.track.length - cd.track.length / 2
        self._progress += ds
        self._s_prev = s
        speed = float(d.qvel[0] * math.cos(yaw) + d.qvel[1] * math.sin(yaw))
        half_lane = cd.track.lane_width / 2
        return GroundTruth(
            lateral_offset=offset,
            heading_error=float(_wrap(yaw - heading)),
            progress_laps=self._progress / cd.track.length,
            speed=speed,
            in_lane=abs(offset) + mjcf.ROVER_HALF_WIDTH <= half_lane,
            collision=self._collision,
            x=x, y=y, yaw=yaw,
            yaw_rate=float(d.qvel[5]),
            track_s=s,
            stamp=float(d.time),
        )

    # ------------------------------------------------------------------------------- road mask
    def camera_intrinsics(self):
        """(fx, fy, cx, cy) in pixels of the forward camera (pinhole, square pixels)."""
        h, w = self.config.camera_height, self.config.camera_width
        fovy = math.radians(self.scene.camera.fovy_deg)
        f = (h / 2) / math.tan(fovy / 2)
        return f, f, w / 2, h / 2

    def road_mask(self):
        """Ground-truth lane mask for the current camera view: (H, W) bool, True where the pixel's ray
        meets the ground inside the lane (|lateral offset| <= lane_width / 2).

        Geometric: each pixel's ray is intersected with the ground plane z = 0 and looked up in the
        track raster. Obstacles do not occlude the mask; pixels above the horizon are False.
        """
        cd, d = self._require(), self._data
        h, w = self.config.camera_height, self.config.camera_width
        fx, fy, cx, cy = self.camera_intrinsics()
        u = np.arange(w) + 0.5
        v = np.arange(h) + 0.5
        uu, vv = np.meshgrid(u, v)  # (H, W)
        # Camera frame (MuJoCo/OpenGL): x right, y up, looking along -z.
        rays = np.stack([(uu - cx) / fx, -(vv - cy) / fy, -np.ones_like(uu)], axis=-1)  # (H, W, 3)
        rot = d.cam_xmat[cd.camera_id].reshape(3, 3)
        world = rays @ rot.T  # (H, W, 3) ray directions in the world frame
        origin = d.cam_xpos[cd.camera_id]
        down = world[..., 2] < -1e-6
        t = np.where(down, -origin[2] / np.where(down, world[..., 2], -1.0), np.nan)
        gx = origin[0] + t * world[..., 0]
        gy = origin[1] + t * world[..., 1]
        offset = cd.track_map.lookup(np.where(down, gx, 1e9), np.where(down, gy, 1e9))
        return down & (np.abs(np.nan_to_num(offset, nan=np.inf)) <= cd.track.lane_width / 2)

    def project_to_image(self, points):
        """Pixel coordinates (u, v) of world points (N, 3); NaN for points behind the camera."""
        cd, d = self._require(), self._data
        fx, fy, cx, cy = self.camera_intrinsics()
        rot = d.cam_xmat[cd.camera_id].reshape(3, 3)
        rel = (np.asarray(points, dtype=float) - d.cam_xpos[cd.camera_id]) @ rot  # (N, 3) camera frame
        z = -rel[:, 2]
        ok = z > 1e-6
        u = np.where(ok, cx + fx * rel[:, 0] / np.where(ok, z, 1), np.nan)
        v = np.where(ok, cy - fy * rel[:, 1] / np.where(ok, z, 1), np.nan)
        return np.stack([u, v], axis=1)

    def mount_poses(self):
        """Static sensor frames in base_link (REP-103 axes, x forward): name -> (xyz (3,) m,
        quaternion (4,) x, y, z, w). camera_link is x-forward and pitched down by the scene's
        camera pitch (the optical frame, z forward, is for the ROS bridge to derive). base_link's
        origin is at wheel-axle height, ``wheel_radius`` above the ground."""
        cam = self.scene.camera
        half = math.radians(cam.pitch_deg) / 2
        identity = np.array([0.0, 0.0, 0.0, 1.0])
        poses = {
            'camera_link': (np.array([cam.x, 0.0, cam.height - mjcf.WHEEL_RADIUS]),
                            np.array([0.0, math.sin(half), 0.0, math.cos(half)])),
            'imu_link': (np.array([0.0, 0.0, 0.02]), identity),
        }
        if self.config.range_sensor:
            poses['range_link'] = (np.array([mjcf.RANGE_SENSOR_X, 0.0, 0.03]), identity.copy())
        return poses

    def close(self):
        """Release the renderer's GL context."""
        if self._renderer is not None:
            self._renderer.close()
            self._renderer = None
