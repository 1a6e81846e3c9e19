"""MJCF generation: the rover, its sensors and the scene (track texture, sky, light, obstacles).

Settings follow the measured notes for a software renderer (no multisampling, no skybox, no shadows)
and for a wheeled rover (implicitfast integrator, frictionless casters with condim=1 priority=1).
The statistic extent is fixed to 1 so that znear/zfar and fog distances in ``<map>`` are in metres.
A plane's third size is its rendering grid spacing: coarse grids (5 m, 50 m) drew the same image as
0.1 m / 1 m grids at a tenth of the cost (3.8 -> 0.35 ms per 64x128 frame on llvmpipe).
"""
import math
import io
from dataclasses import dataclass

import numpy as np

# Rover geometry (metres, kilograms): a 0.38 m wide differential-drive rover.
WHEEL_RADIUS = 0.05
WHEEL_SEPARATION = 0.34  # distance between the two wheels' contact points
WHEEL_HALF_WIDTH = 0.02
CHASSIS_HALF = (0.18, 0.14, 0.04)
CHASSIS_MASS = 3.0
WHEEL_MASS = 0.2
CASTER_RADIUS = 0.025
CASTER_X = 0.14
ROVER_HALF_WIDTH = WHEEL_SEPARATION / 2 + WHEEL_HALF_WIDTH  # 0.19 m
ROVER_HALF_LENGTH = CHASSIS_HALF[0]
RANGE_SENSOR_X = CHASSIS_HALF[0] - 0.01  # forward range sensor origin in base_link (m)

# The renderer clears to black and a skybox costs ~2.5 ms a frame, so the sky is four tall walls this
# far from the track, always beyond the fog's end: they render exactly in the fog (= sky) colour.
SKY_DISTANCE = 145.0
MAX_FOG_END = 130.0


@dataclass(frozen=True)
class RoverLimits:
    """Actuator limits of the wheel velocity servos."""
    max_wheel_speed: float  # rad/s
    wheel_torque: float  # N m
    servo_gain: float  # N m s/rad


def _rgb(c, alpha=1.0):
    return f'{c[0]:.4f} {c[1]:.4f} {c[2]:.4f} {alpha:.4f}'


def _exposed(color, exposure):
    """A surface colour under the scene's exposure gain, clipped at white (unchanged at 1)."""
    if exposure == 1.0:
        return tuple(color)
    return tuple(min(1.0, float(c) * exposure) for c in color)


def _tinted(intensity, color):
    """An MJCF light colour attribute: a scalar intensity times the RGB tint."""
    return ' '.join(f'{intensity * c!r}' for c in color)


def _png_bytes(image):
    """PNG-encode the raster in memory (fast compression: it is decoded once, at compile time).

    MuJoCo maps texture row 0 to the plane's +y edge, so the south-up raster is flipped here.
    """
    from PIL import Image
    buffer = io.BytesIO()
    Image.fromarray(np.ascontiguousarray(np.flipud(image))).save(buffer, format='PNG', compress_level=1)
    return buffer.getvalue()


def build_mjcf(scene, track, track_map, config, limits):
    """Return (xml, assets) for ``mujoco.MjModel.from_xml_string``."""
    app = scene.appearance
    light = app.light
    cam = scene.camera
    width_m, height_m = track_map.size
    cx, cy = track_map.center
    d = np.asarray(light.direction, dtype=float)
    d = d / np.linalg.norm(d)
    ground_mean = track_map.image.reshape(-1, 3).mean(axis=0) / 255.0
    # Mean colour of the painted grass (texels far from the road) for the surrounding plane.
    far = np.abs(track_map.offset) > track.lane_width / 2 + track.spec.shoulder_width + 0.5
    if far.any():
        ground_mean = track_map.image[far].reshape(-1, 3).mean(axis=0) / 255.0
    chassis_z = WHEEL_RADIUS
    cam_z = cam.height - chassis_z
    pitch = math.radians(cam.pitch_deg)
    # Camera looks along -z_cam; x_cam = -y_body (image right), y_cam tilted up: view pitched down.
    cam_xyaxes = f'0 -1 0 {math.sin(pitch):.6f} 0 {math.cos(pitch):.6f}'
    ih, iw = config.camera_height, config.camera_width

    obstacles = []
    for i, o in enumerate(scene.obstacles):
        x, y, heading = track.pose_at(o.at * track.length)
        x -= o.offset * math.sin(heading)
        y += o.offset * math.cos(heading)
        if o.shape == 'box':
            geom = (f'type="box" size="{o.size[0]} {o.size[1]} {o.size[2]}" '
                    f'pos="{x:.4f} {y:.4f} {o.size[2]:.4f}" euler="0 0 {heading:.5f}"')
        else:
            geom = f'type="cylinder" size="{o.size[0]} {o.size[2]}" pos="{x:.4f} {y:.4f} {o.size[2]:.4f}"'
        # A distractor (collide: false) is drawn but never touched: no contact pairs at all.
        contact = 'contype="1" conaffinity="1"' if o.collide else 'contype="0" conaffinity="0"'
        obstacles.append(f'<geom name="obstacle_{i}" {geom} rgba="{_rgb(_exposed(o.color, app.exposure))}" '
                         f'{contact}/>')

    range_xml = ''
    if config.range_sensor:
        # No cutoff here: the ray also meets the distant sky walls; the world maps readings beyond
        # range_max to +inf itself.
        range_xml = '<rangefinder name="range" site="range_site"/>'

    sky_color = _exposed(app.sky_color, app.exposure)
    # Lighting is evaluated at the plane's grid vertices: a 5 m grid draws diffuse light exactly (and
    # fast), but a specular highlight needs vertices near it, so a specular road gets a 0.2 m grid.
    track_grid = 0.2 if app.road_specular > 0 else 5
    sky = ''.join(
        f'<geom name="sky_{i}" type="box" size="1 {SKY_DISTANCE} {SKY_DISTANCE}" '
        f'pos="{cx + SKY_DISTANCE * math.cos(a):.2f} {cy + SKY_DISTANCE * math.sin(a):.2f} 0" '
        f'euler="0 0 {a:.5f}" rgba="{_rgb(sky_color)}" contype="0" conaffinity="0"/>'
        for i, a in enumerate((0.0, math.pi / 2, math.pi, 3 * math.pi / 2)))
    hx, hy, hz = CHASSIS_HALF
    wy = WHEEL_SEPARATION / 2
    xml = f"""
<mujoco model="liquid_controller_{scene.name}">
  <compiler angle="radian" autolimits="true"/>
  <option timestep="{1.0 / config.physics_rate_hz:.8f}" integrator="implicitfast"/>
  <statistic extent="1" center="0 0 0"/>
  <visual>
    <global offwidth="{max(iw, 16)}" offheight="{max(ih, 16)}"/>
    <quality offsamples="0" shadowsize="0"/>
    <map znear="0.02" zfar="400" fogstart="{app.haze.start}" fogend="{app.haze.end}"/>
    <headlight ambient="{_tinted(light.ambient, light.color)}"
               diffuse="{_tinted(light.headlight, light.color)}" specular="0 0 0"/>
    <rgba fog="{_rgb(sky_color)}" haze="{_rgb(sky_color)}"/>
  </visual>
  <asset>
    <texture name="track" type="2d" file="track.png"/>
    <material name="track" texture="track" texrepeat="1 1" texuniform="false"
              specular="{app.road_specular!r}" shininess="{0.1 if app.road_specular > 0 else 0}"
              reflectance="0"/>
  </asset>
  <default>
    <geom friction="1.0 0.005 0.0001" solref="0.004 1"/>
  </default>
  <worldbody>
    <light name="sun" directional="true" castshadow="false" pos="0 0 10"
           dir="{d[0]:.4f} {d[1]:.4f} {d[2]:.4f}"
           diffuse="{_tinted(light.diffuse, light.color)}"
           specular="{_tinted(light.specular, light.color)}" ambient="0 0 0"/>
    <geom name="track" type="plane" size="{width_m / 2:.4f} {height_m / 2:.4f} {track_grid}"
          pos="{cx:.4f} {cy:.4f} 0" material="track"/>
    <geom name="far_ground" type="plane" size="{SKY_DISTANCE} {SKY_DISTANCE} 50" pos="{cx:.2f} {cy:.2f} -0.01"
          rgba="{_rgb(ground_mean)}" contype="0" conaffinity="0"/>
    {sky}
    {''.join(obstacles)}
    <body name="base_link" pos="0 0 {chassis_z}">
      <freejoint name="base"/>
      <geom name="chassis" type="box" size="{hx} {hy} {hz}" pos="0 0 0"
            mass="{CHASSIS_MASS}" rgba="0.15 0.15 0.18 1"/>
      <geom name="caster_front" type="sphere" size="{CASTER_RADIUS}"
            pos="{CASTER_X} 0 {CASTER_RADIUS - chassis_z}" mass="0.05" condim="1" priority="1"
            friction="0 0 0" rgba="0.3 0.3 0.3 1"/>
      <geom name="caster_rear" type="sphere" size="{CASTER_RADIUS}"
            pos="{-CASTER_X} 0 {CASTER_RADIUS - chassis_z}" mass="0.05" condim="1" priority="1"
            friction="0 0 0" rgba="0.3 0.3 0.3 1"/>
      <site name="imu_link" pos="0 0 0.02" size="0.01"/>
      <!-- Inside the chassis front (the rangefinder ignores its own body): a sensor poking out of
           the bumper would start its ray inside an obstacle it touches and see the far face. -->
      <site name="range_site" pos="{RANGE_SENSOR_X} 0 0.03" zaxis="1 0 0" size="0.01"/>
      <camera name="camera_link" pos="{cam.x} 0 {cam_z:.4f}" xyaxes="{cam_xyaxes}"
              fovy="{cam.fovy_deg}"/>
      <!-- Wheels collide as spheres: one contact point straight below the axle, so turning does
           not scrub (a cylinder's line contact resists yaw and the rover under-steers). -->
      <body name="left_wheel" pos="0 {wy} 0">
        <joint name="left_wheel" type="hinge" axis="0 1 0" damping="0.001"/>
        <geom name="left_wheel" type="sphere" size="{WHEEL_RADIUS}" mass="{WHEEL_MASS}"
              rgba="0.05 0.05 0.05 0" group="3"/>
        <geom name="left_wheel_visual" type="cylinder" size="{WHEEL_RADIUS} {WHEEL_HALF_WIDTH}"
              zaxis="0 1 0" mass="0" contype="0" conaffinity="0" rgba="0.05 0.05 0.05 1"/>
      </body>
      <body name="right_wheel" pos="0 {-wy} 0">
        <joint name="right_wheel" type="hinge" axis="0 1 0" damping="0.001"/>
        <geom name="right_wheel" type="sphere" size="{WHEEL_RADIUS}" mass="{WHEEL_MASS}"
              rgba="0.05 0.05 0.05 0" group="3"/>
        <geom name="right_wheel_visual" type="cylinder" size="{WHEEL_RADIUS} {WHEEL_HALF_WIDTH}"
              zaxis="0 1 0" mass="0" contype="0" conaffinity="0" rgba="0.05 0.05 0.05 1"/>
      </body>
    </body>
  </worldbody>
  <contact>
    <exclude body1="base_link" body2="left_wheel"/>
    <exclude body1="base_link" body2="right_wheel"/>
  </contact>
  <actuator>
    <velocity name="left_wheel" joint="left_wheel" kv="{limits.servo_gain}"
              ctrlrange="{-limits.max_wheel_speed} {limits.max_wheel_speed}"
              forcerange="{-limits.wheel_torque} {limits.wheel_torque}"/>
    <velocity name="right_wheel" joint="right_wheel" kv="{limits.servo_gain}"
              ctrlrange="{-limits.max_wheel_speed} {limits.max_wheel_speed}"
              forcerange="{-limits.wheel_torque} {limits.wheel_torque}"/>
  </actuator>
  <sensor>
    <accelerometer name="accel" site="imu_link"/>
    <gyro name="gyro" site="imu_link"/>
    <framequat name="orientation" objtype="site" objname="imu_link"/>
    {range_xml}
  </sensor>
</mujoco>
"""
    return xml, {'track.png': _png_bytes(track_map.image)}
