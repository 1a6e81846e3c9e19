"""The MuJoCo world: sensors read physical values, the camera sees the road where the track is,
and a run is reproducible for a seed. Uses the real MuJoCo physics and renderer (EGL or OSMesa)."""
import math

import numpy as np
import pytest

from liquid_controller.errors import InputError
from liquid_controller.sim import (DrivingWorld, ExpertDriver, PerturbationConfig, Scene, WorldConfig,
                                   load_scene)


def test_imu_at_rest_reads_gravity(physics_world):
    physics_world.reset('summer', seed=0)
    for _ in range(15):
        result = physics_world.step((0.0, 0.0))
    imu = result.observation.imu
    # 200 Hz IMU in a 1/30 s frame: 6 or 7 samples, stamped inside the frame window.
    assert len(imu.stamps) in (6, 7)
    assert np.all(np.diff(imu.stamps) > 0)
    assert imu.stamps[0] > 14 / 30 - 1e-9 and imu.stamps[-1] <= 15 / 30 + 1e-9
    accel = imu.linear_acceleration.mean(axis=0)
    assert accel[2] == pytest.approx(9.81, abs=0.05)
    assert abs(accel[0]) < 0.05 and abs(accel[1]) < 0.05
    assert np.abs(imu.angular_velocity.mean(axis=0)).max() < 0.01
    # Level at yaw 0 (start heading east): orientation x, y, z, w = identity.
    assert imu.orientation[-1] == pytest.approx([0, 0, 0, 1], abs=1e-3)


@pytest.mark.parametrize('v, w', [(0.5, 0.8), (0.8, -0.5), (0.0, 1.5)])
def test_gyro_matches_commanded_turn_rate(physics_world, v, w):
    physics_world.reset('summer', seed=0)
    for _ in range(60):  # 2 s: the wheel servos settle within a few tenths of a second
        result = physics_world.step((v, w))
    gyro_z = result.observation.imu.angular_velocity[:, 2].mean()
    assert gyro_z == pytest.approx(w, rel=0.05)
    assert result.truth.yaw_rate == pytest.approx(w, rel=0.05)
    assert result.truth.speed == pytest.approx(v, abs=0.03)
    # Centripetal acceleration v * w shows on the accelerometer's y axis (to the left for w > 0).
    accel_y = result.observation.imu.linear_acceleration[:, 1].mean()
    assert accel_y == pytest.approx(v * w, abs=0.05 + 0.05 * abs(v * w))


def test_wheel_odometry_follows_the_true_motion(physics_world):
    physics_world.reset('summer', seed=0)
    for _ in range(90):
        result = physics_world.step((0.6, 0.3))
    odom, truth = result.observation.odometry, result.truth
    # The odom frame starts at the start pose (0, -5, heading 0 for summer).
    assert odom.x == pytest.approx(truth.x - 0.0, abs=0.05)
    assert odom.y == pytest.approx(truth.y + 5.0, abs=0.05)
    assert odom.yaw == pytest.approx(truth.yaw, abs=0.05)
    assert odom.v == pytest.approx(0.6, abs=0.03)
    assert odom.stamp == result.observation.stamp == pytest.approx(3.0, abs=1e-6)


def test_commands_scale_into_the_wheel_limit():
    world = DrivingWorld(WorldConfig(render=False, max_wheel_speed=20.0))
    world.reset('summer')
    left, right = world.wheel_speeds(2.0, 2.0)  # would need 33 rad/s on the right wheel
    assert max(abs(left), abs(right)) == pytest.approx(20.0)
    # The ratio (path curvature) is kept.
    r, b = world.wheel_radius, world.wheel_separation
    assert (right - left) * r / b / ((right + left) * r / 2) == pytest.approx(1.0)


def test_bad_inputs_raise_input_error(physics_world):
    physics_world.reset('summer')
    with pytest.raises(InputError, match='command'):
        physics_world.step((float('nan'), 0.0))
    with pytest.raises(InputError, match='command'):
        physics_world.step('fast')
    with pytest.raises(InputError, match='start'):
        physics_world.reset('summer', start=1.5)
    with pytest.raises(InputError, match='seed'):
        physics_world.reset('summer', seed=-1)
    with pytest.raises(InputError, match='camera_width'):
        WorldConfig(camera_width=1000)
    with pytest.raises(InputError, match='imu_rate_hz'):
        WorldConfig(imu_rate_hz=1000.0)


def test_world_config_round_trip():
    config = WorldConfig(camera_height=144, camera_width=256, range_sensor=True)
    assert WorldConfig.from_dict(config.to_dict()) == config
    with pytest.raises(InputError, match='bogus'):
        WorldConfig.from_dict({'bogus': 1})


def _is_grey(pixel):
    r, g, b = (int(c) for c in pixel)
    return max(r, g, b) - min(r, g, b) < 25


def _is_grass(pixel):
    r, g, b = (int(c) for c in pixel)
    return g > r + 15 and g > b + 15


def test_rendered_frame_shows_the_road_where_the_track_is(render_world):
    obs = render_world.reset('summer', seed=0, start=0.0)
    image = obs.image
    assert image.shape == (64, 128, 3) and image.dtype == np.uint8
    track = render_world.track
    # Points on the ground 3 m ahead: in the lane (between centre dashes and edge line) and on grass
    # (1.8 m left: beyond the 0.5 m half lane and the 0.25 m shoulder).
    x, y, heading = track.pose_at(3.0)
    left = np.array([-math.sin(heading), math.cos(heading), 0.0])
    on_road = np.array([x, y, 0.0]) + 0.25 * left
    off_road = np.array([x, y, 0.0]) + 1.8 * left
    (ur, vr), (ug, vg) = render_world.project_to_image(np.stack([on_road, off_road]))
    assert 0 <= ur < 128 and 0 <= vr < 64 and 0 <= ug < 128 and 0 <= vg < 64
    assert _is_grey(image[int(vr), int(ur)]), image[int(vr), int(ur)]
    assert _is_grass(image[int(vg), int(ug)]), image[int(vg), int(ug)]
    # The sky fills the top row in the sky colour.
    sky = np.asarray(render_world.scene.appearance.sky_color) * 255
    assert np.abs(image[0].mean(axis=0) - sky).max() < 12
    # The geometric road mask agrees: road pixel in, grass pixel out, sky out.
    mask = render_world.road_mask()
    assert mask.shape == (64, 128)
    assert mask[int(vr), int(ur)] and not mask[int(vg), int(ug)]
    assert not mask[0].any()
    # Almost all masked pixels look like road (grey asphalt or white/yellow markings), and the road
    # (lane straight ahead) fills the bottom-centre of the image.
    masked = image[mask].astype(int)
    greenish = (masked[:, 1] > masked[:, 0] + 15) & (masked[:, 1] > masked[:, 2] + 15)
    assert greenish.mean() < 0.05
    assert mask[-1, 54:74].all()


def test_variants_render_visibly_different_images(render_world):
    means = {}
    for name in ('summer', 'fall', 'winter', 'night'):
        obs = render_world.reset(name, seed=0, start=0.0)
        means[name] = obs.image.reshape(-1, 3).mean(axis=0)
    assert means['night'].mean() < 0.5 * means['summer'].mean()
    assert means['winter'].mean() > means['summer'].mean() + 30
    assert np.abs(means['fall'] - means['summer']).max() > 20


def test_camera_size_is_configurable():
    world = DrivingWorld(WorldConfig(camera_height=144, camera_width=256))
    obs = world.reset('summer')
    assert obs.image.shape == (144, 256, 3)
    assert world.road_mask().shape == (144, 256)
    world.close()


def _run(world, seed, frames=45):
    world.reset('summer', seed=seed, start=0.3)
    expert = ExpertDriver(world.track, perturbation=PerturbationConfig(rate_hz=2.0, warmup=0.0),
                          seed=seed)
    truth = world.last_truth
    out = []
    for _ in range(frames):
        result = world.step(expert.command(truth))
        truth = result.truth
        out.append(result)
    return out


def test_deterministic_for_a_seed(render_world):
    a = _run(render_world, seed=3)
    b = _run(render_world, seed=3)
    for ra, rb in zip(a, b):
        assert np.array_equal(ra.observation.image, rb.observation.image)
        assert np.array_equal(ra.observation.imu.linear_acceleration, rb.observation.imu.linear_acceleration)
        assert np.array_equal(ra.observation.imu.stamps, rb.observation.imu.stamps)
        assert ra.observation.odometry == rb.observation.odometry
        assert ra.truth == rb.truth
    c = _run(render_world, seed=4)
    # summer has sensor noise, so another seed gives other readings.
    assert not np.array_equal(a[-1].observation.imu.angular_velocity, c[-1].observation.imu.angular_velocity)


def test_range_sensor_and_collision_with_an_obstacle():
    data = load_scene('summer').to_dict()
    # A box on the centre line 2 m ahead of the start (the lap is ~46.8 m long).
    data['obstacles'] = [{'at': 2.0 / 46.85, 'offset': 0.0, 'size': [0.1, 0.3, 0.15]}]
    data['noise']['range_std'] = 0.0
    scene = Scene.from_dict(data, source='test')
    world = DrivingWorld(WorldConfig(render=False, range_sensor=True))
    obs = world.reset(scene)
    # 2 m to the box centre, minus its half depth 0.1 and the sensor's offset from base_link (0.17).
    assert obs.range == pytest.approx(2.0 - 0.1 - 0.17, abs=0.03)
    collided = False
    for _ in range(90):
        result = world.step((0.8, 0.0))
        collided |= result.truth.collision
    assert collided
    assert result.observation.range < 0.03  # the bumper touches the box
    clear = DrivingWorld(WorldConfig(render=False, range_sensor=True)).reset('summer')
    assert clear.range == math.inf


@pytest.mark.parametrize('start', [0.0, 0.35, 0.52, 0.86])
def test_road_mask_matches_the_image_on_an_asymmetric_track(render_world, start):
    # summer_chicane is not mirror-symmetric, so a flipped ground texture would show grass where the
    # track geometry says road (0.52 is inside the S-bend).
    obs = render_world.reset('summer_chicane', seed=0, start=start)
    image = obs.image.astype(int)
    mask = render_world.road_mask()
    green = (image[..., 1] > image[..., 0] + 15) & (image[..., 1] > image[..., 2] + 15)
    assert mask.mean() > 0.2
    assert green[mask].mean() < 0.03
    lower = slice(32, 64)
    assert green[lower][~mask[lower]].mean() > 0.15


def test_mount_poses_match_the_simulated_camera(render_world):
    render_world.reset('summer', start=0.0)
    xyz, quat = render_world.mount_poses()['camera_link']
    d, cid = render_world.data, render_world._compiled.camera_id
    base = np.array([render_world.last_truth.x, render_world.last_truth.y, 0.05])
    # Start pose has yaw 0, so base_link offsets are world offsets (the rover rests at axle height).
    assert d.cam_xpos[cid] == pytest.approx(base + xyz, abs=3e-3)
    # camera_link x axis (forward, pitched down) = the MuJoCo camera's viewing direction (-z column).
    x, y, z, w = quat
    forward = np.array([1 - 2 * (y * y + z * z), 2 * (x * y + w * z), 2 * (x * z - w * y)])
    view = -d.cam_xmat[cid].reshape(3, 3)[:, 2]
    assert forward == pytest.approx(view, abs=2e-3)
    assert forward[2] < 0  # looking down
