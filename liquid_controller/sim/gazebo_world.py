"""Gazebo (gz sim, SDF 1.9) world and rover generated from a scene: the world the policy was trained in.

The MuJoCo scene (:mod:`liquid_controller.sim.mjcf`) and this SDF are written from the same inputs:

- the ground is the SAME painted raster (:func:`liquid_controller.sim.texture.paint_track_map`: grass,
  shoulders, road, edge lines, dashed centre line, at the scene's lane width and colours) as a PNG
  texture on a plane of the same size and position, so lane geometry and markings match to the texel;
- the plane around it has the mean grass colour, the background (sky) and the fog the scene's sky
  colour and haze distances, the sun the scene's direction, intensities and tint (exposure applied as
  in MuJoCo);
- obstacles: same shapes, poses, sizes and colours; a distractor (``collide: false``) has no collision;
- the rover: the dimensions of :mod:`liquid_controller.sim.mjcf` (chassis, wheel radius and separation,
  casters, masses), the camera at the scene's mounting (x, height, pitch) with the same vertical field
  of view (Gazebo takes the horizontal one: ``2 atan(tan(fovy / 2) * width / height)``), image size and
  rate, the IMU at the same place and rate; DiffDrive with the same wheel geometry and speed limit;
- the rover is part of the world, at the scene's start pose (lap fraction 0, on the centre line,
  facing along the track), so no spawn step is needed.

Frames: the camera's ``gz_frame_id`` is ``camera_optical_frame`` and the IMU's ``imu_link`` as in
sim_node; Gazebo's DiffDrive publishes odometry ``odom`` -> ``base_link``.

Usage (also what ``launch/bringup.launch.py sim:=gazebo`` does when no ``world`` is given)::

    python -m liquid_controller.sim.gazebo_world summer --out /tmp/gz_summer

writes ``world.sdf``, ``rover.sdf`` and the ground texture ``<world name>_ground.png`` into the folder.
Gazebo finds the texture through ``GZ_SIM_RESOURCE_PATH`` (the launch file adds the folder) or
because it sits next to the world file. Gazebo itself is not run by the tests (it cannot be installed
on the project's machines); ``test/sim/test_gazebo_world.py`` compares the SDF field by field with the
compiled MuJoCo model.
"""
import argparse
import io
import math
import os
import re
import sys
from dataclasses import dataclass

import numpy as np

from liquid_controller.errors import InputError, LiquidControllerError
from liquid_controller.sim import mjcf
from liquid_controller.sim.scene import load_scene

# Spec frames and topics of the rover; config/gz_bridge.yaml bridges these names.
GZ_TOPICS = {
    'image': '/rover/camera/image_raw', 'camera_info': '/rover/camera/camera_info',
    'imu': '/rover/imu', 'odom': '/rover/odom', 'cmd_vel': '/rover/cmd_vel',
}
ROVER_NAME = 'rover'
CAMERA_FRAME_ID = 'camera_optical_frame'   # as sim_node stamps images (REP-103 optical)
IMU_FRAME_ID = 'imu_link'
IMU_XYZ = (0.0, 0.0, 0.02)                 # the MuJoCo imu_link site in base_link
CLIP_NEAR, CLIP_FAR = 0.02, 400.0          # MuJoCo's <map znear zfar> in metres (extent 1)
FAR_GROUND_SIZE = 2 * mjcf.SKY_DISTANCE    # the MuJoCo far_ground plane's full side
CASTER_MASS = 0.05                         # each caster sphere's mass in the MJCF


@dataclass
class GazeboWorld:
    """A generated world: SDF texts, the ground texture (PNG bytes) and what the launch file needs."""
    name: str               # the <world name=...>, used by ros_gz_sim services
    world_sdf: str
    rover_sdf: str
    texture_name: str       # file name the world SDF refers to
    texture_png: bytes
    start_pose: tuple       # (x, y, z, yaw) of base_link at the start


def world_name(scene):
    """SDF world name for a scene: 'liquid_' + the scene name with anything but [A-Za-z0-9_] as '_'."""
    return 'liquid_' + re.sub(r'[^A-Za-z0-9_]', '_', scene.name)


def horizontal_fov(fovy_deg, width, height):
    """Gazebo's horizontal field of view (rad) for MuJoCo's vertical one at an image size (square pixels)."""
    return 2.0 * math.atan(math.tan(math.radians(fovy_deg) / 2.0) * width / height)


def _exposed(color, exposure):
    """Surface colour under the scene's exposure gain, clipped at white (as the MuJoCo scene does)."""
    return tuple(min(1.0, float(c) * exposure) for c in color)


def _comment(text):
    """Text safe inside an XML comment (which may not contain a double hyphen)."""
    text = str(text)
    while '--' in text:
        text = text.replace('--', '- -')
    return text


def _rgba(color, alpha=1.0):
    return f'{color[0]:.6f} {color[1]:.6f} {color[2]:.6f} {alpha:.6f}'


def _material(color):
    return (f'<material><ambient>{_rgba(color)}</ambient><diffuse>{_rgba(color)}</diffuse>'
            f'<specular>0 0 0 1</specular></material>')


def ground_mean_color(track, track_map):
    """Mean colour of the painted grass far from the road (RGB in [0, 1]): the plane around the map.

    The same rule as the MuJoCo scene's far_ground plane.
    """
    image = track_map.image
    far = np.abs(track_map.offset) > track.lane_width / 2 + track.spec.shoulder_width + 0.5
    pixels = image[far] if far.any() else image.reshape(-1, 3)
    return tuple(float(v) for v in pixels.reshape(-1, 3).mean(axis=0) / 255.0)


def _png(image):
    """PNG of the south-up raster, flipped so that the first row is the plane's +y edge (as in MuJoCo)."""
    from PIL import Image
    buffer = io.BytesIO()
    Image.fromarray(np.ascontiguousarray(np.flipud(image))).save(buffer, format='PNG')
    return buffer.getvalue()


def obstacle_poses(scene, track):
    """[(x, y, z, yaw)] of every obstacle's centre, placed as in the MuJoCo scene."""
    poses = []
    for o in scene.obstacles:
        x, y, heading = track.pose_at(o.at * track.length)
        x -= o.offset * math.sin(heading)
        y += o.offset * math.cos(heading)
        poses.append((x, y, float(o.size[2]), heading if o.shape == 'box' else 0.0))
    return poses


def rover_sdf(scene, camera_width=128, camera_height=64, camera_rate_hz=30.0, imu_rate_hz=200.0,
              max_wheel_speed=None, standalone=True):
    """SDF of the rover model (``standalone``: with the <?xml?> header and <sdf> root)."""
    from liquid_controller.sim.world import WorldConfig
    config = WorldConfig(camera_height=camera_height, camera_width=camera_width,
                         camera_rate_hz=camera_rate_hz, imu_rate_hz=imu_rate_hz)
    wheel_speed = config.max_wheel_speed if max_wheel_speed is None else float(max_wheel_speed)
    cam = scene.camera
    hx, hy, hz = mjcf.CHASSIS_HALF
    r, wy, hw = mjcf.WHEEL_RADIUS, mjcf.WHEEL_SEPARATION / 2, mjcf.WHEEL_HALF_WIDTH
    caster_z = mjcf.CASTER_RADIUS - mjcf.WHEEL_RADIUS
    hfov = horizontal_fov(cam.fovy_deg, camera_width, camera_height)
    v_max = wheel_speed * r
    w_max = 2.0 * v_max / mjcf.WHEEL_SEPARATION
    # Box inertia of the chassis about its centre; wheels as solid cylinders about their axle.
    m = mjcf.CHASSIS_MASS + 2 * CASTER_MASS  # the casters are geoms of base_link in both models
    ixx, iyy, izz = (m / 3 * (hy * hy + hz * hz), m / 3 * (hx * hx + hz * hz), m / 3 * (hx * hx + hy * hy))
    mw = mjcf.WHEEL_MASS
    w_axle, w_other = mw * r * r / 2, mw * (3 * r * r + (2 * hw) ** 2) / 12

    def wheel(name, y):
        return f"""
    <link name="{name}">
      <pose relative_to="base_link">0 {y:.6f} 0 -1.5707963 0 0</pose>
      <inertial><mass>{mw}</mass>
        <inertia><ixx>{w_other:.3e}</ixx><iyy>{w_other:.3e}</iyy><izz>{w_axle:.3e}</izz><ixy>0</ixy><ixz>0</ixz><iyz>0</iyz></inertia></inertial>
      <!-- A sphere collides at one point below the axle, as in MuJoCo (a cylinder's line contact
           scrubs in turns); the cylinder is what the camera of another robot would see. -->
      <collision name="{name}_collision"><geometry><sphere><radius>{r}</radius></sphere></geometry></collision>
      <visual name="{name}_visual"><geometry><cylinder><radius>{r}</radius><length>{2 * hw}</length></cylinder></geometry>
        {_material((0.05, 0.05, 0.05))}</visual>
    </link>
    <joint name="{name}_joint" type="revolute">
      <parent>base_link</parent><child>{name}</child>
      <axis><xyz>0 0 1</xyz><limit><lower>-1e16</lower><upper>1e16</upper></limit></axis>
    </joint>"""

    def caster(name, x):
        return f"""
      <collision name="{name}"><pose>{x} 0 {caster_z:.6f} 0 0 0</pose>
        <geometry><sphere><radius>{mjcf.CASTER_RADIUS}</radius></sphere></geometry>
        <surface><friction><ode><mu>0</mu><mu2>0</mu2></ode></friction></surface></collision>"""

    model = f"""<model name="{ROVER_NAME}">
    <!-- Generated by liquid_controller.sim.gazebo_world from the MuJoCo rover (sim/mjcf.py) and scene
         {_comment(repr(scene.name))}: base_link at axle height, x forward, y left, z up (REP-103). -->
    <link name="base_link">
      <inertial><mass>{m}</mass>
        <inertia><ixx>{ixx:.5f}</ixx><iyy>{iyy:.5f}</iyy><izz>{izz:.5f}</izz><ixy>0</ixy><ixz>0</ixz><iyz>0</iyz></inertia></inertial>
      <collision name="chassis"><geometry><box><size>{2 * hx} {2 * hy} {2 * hz}</size></box></geometry></collision>
      <visual name="chassis"><geometry><box><size>{2 * hx} {2 * hy} {2 * hz}</size></box></geometry>
        {_material((0.15, 0.15, 0.18))}</visual>{caster('caster_front', mjcf.CASTER_X)}{caster('caster_rear', -mjcf.CASTER_X)}
      <sensor name="camera" type="camera">
        <!-- Gazebo cameras look along +x: a positive pitch about y tilts the view down. -->
        <pose>{cam.x} 0 {cam.height - r:.6f} 0 {math.radians(cam.pitch_deg):.6f} 0</pose>
        <gz_frame_id>{CAMERA_FRAME_ID}</gz_frame_id>
        <always_on>true</always_on>
        <update_rate>{camera_rate_hz:g}</update_rate>
        <topic>{GZ_TOPICS['image']}</topic>
        <camera name="camera">
          <camera_info_topic>{GZ_TOPICS['camera_info']}</camera_info_topic>
          <horizontal_fov>{hfov:.6f}</horizontal_fov>
          <image><width>{camera_width}</width><height>{camera_height}</height><format>R8G8B8</format></image>
          <clip><near>{CLIP_NEAR}</near><far>{CLIP_FAR}</far></clip>
        </camera>
      </sensor>
      <sensor name="imu" type="imu">
        <pose>{IMU_XYZ[0]} {IMU_XYZ[1]} {IMU_XYZ[2]} 0 0 0</pose>
        <gz_frame_id>{IMU_FRAME_ID}</gz_frame_id>
        <always_on>true</always_on>
        <update_rate>{imu_rate_hz:g}</update_rate>
        <topic>{GZ_TOPICS['imu']}</topic>
      </sensor>
    </link>{wheel('left_wheel', wy)}{wheel('right_wheel', -wy)}
    <plugin filename="gz-sim-diff-drive-system" name="gz::sim::systems::DiffDrive">
      <left_joint>left_wheel_joint</left_joint>
      <right_joint>right_wheel_joint</right_joint>
      <wheel_separation>{mjcf.WHEEL_SEPARATION}</wheel_separation>
      <wheel_radius>{r}</wheel_radius>
      <max_linear_velocity>{v_max:.6f}</max_linear_velocity>
      <max_angular_velocity>{w_max:.6f}</max_angular_velocity>
      <topic>{GZ_TOPICS['cmd_vel']}</topic>
      <odom_topic>{GZ_TOPICS['odom']}</odom_topic>
      <frame_id>odom</frame_id>
      <child_frame_id>base_link</child_frame_id>
      <odom_publish_frequency>{camera_rate_hz:g}</odom_publish_frequency>
    </plugin>
  </model>"""
    if not standalone:
        return model
    # No double hyphen in an XML comment: the command's options are spelled out in words.
    header = ('<!-- Regenerate: python -m liquid_controller.sim.gazebo_world '
              f'{_comment(scene.name)} with the options rover-only and out DIR. Gazebo topics (config/gz_bridge.yaml bridges them): '
              + ', '.join(GZ_TOPICS.values()) + ' -->')
    return f'<?xml version="1.0"?>\n{header}\n<sdf version="1.9">\n  {model}\n</sdf>\n'


def build_gazebo_world(scene, camera_width=128, camera_height=64, camera_rate_hz=30.0,
                       imu_rate_hz=200.0, physics_rate_hz=500.0):
    """The Gazebo world for ``scene`` (a Scene, shipped name or YAML path) -> :class:`GazeboWorld`."""
    from liquid_controller.sim.texture import paint_track_map
    from liquid_controller.sim.track import Track
    scene = load_scene(scene)
    for name, value, low, high in (('camera_width', camera_width, 16, 4096),
                                   ('camera_height', camera_height, 16, 4096)):
        if isinstance(value, bool) or not isinstance(value, int) or not low <= value <= high:
            raise InputError(name, value, f'expected an integer in [{low}, {high}]')
    for name, value in (('camera_rate_hz', camera_rate_hz), ('imu_rate_hz', imu_rate_hz),
                        ('physics_rate_hz', physics_rate_hz)):
        if isinstance(value, bool) or not isinstance(value, (int, float)) or not 0 < value <= 10000:
            raise InputError(name, value, 'expected a rate in (0, 10000] Hz')
    track = Track(scene.track, scene.source)
    track_map = paint_track_map(track, scene.appearance)
    app, light = scene.appearance, scene.appearance.light
    name = world_name(scene)
    texture_name = f'{name}_ground.png'
    width_m, height_m = track_map.size
    cx, cy = track_map.center
    d = np.asarray(light.direction, dtype=float)
    d = d / np.linalg.norm(d)
    sky = _exposed(app.sky_color, app.exposure)
    tint = np.asarray(light.color, dtype=float)
    ambient, diffuse, specular = (tuple(tint * light.ambient), tuple(tint * light.diffuse),
                                  tuple(tint * light.specular))
    x0, y0, heading = track.pose_at(0.0)
    start = (float(x0), float(y0), mjcf.WHEEL_RADIUS, float(heading))

    obstacles = []
    for i, (o, (x, y, z, yaw)) in enumerate(zip(scene.obstacles, obstacle_poses(scene, track))):
        if o.shape == 'box':
            geometry = f'<box><size>{2 * o.size[0]} {2 * o.size[1]} {2 * o.size[2]}</size></box>'
        else:
            geometry = f'<cylinder><radius>{o.size[0]}</radius><length>{2 * o.size[2]}</length></cylinder>'
        collision = (f'<collision name="collision"><geometry>{geometry}</geometry></collision>'
                     if o.collide else '')  # a distractor is seen, never touched
        obstacles.append(f"""
    <model name="obstacle_{i}">
      <static>true</static>
      <pose>{x:.6f} {y:.6f} {z:.6f} 0 0 {yaw:.6f}</pose>
      <link name="link">{collision}
        <visual name="visual"><geometry>{geometry}</geometry>{_material(_exposed(o.color, app.exposure))}</visual>
      </link>
    </model>""")

    rover = rover_sdf(scene, camera_width, camera_height, camera_rate_hz, imu_rate_hz, standalone=False)
    rover = rover.replace(f'<model name="{ROVER_NAME}">',
                          f'<model name="{ROVER_NAME}">\n    <pose>{start[0]:.6f} {start[1]:.6f} '
                          f'{start[2]:.6f} 0 0 {start[3]:.6f}</pose>', 1)
    world_sdf = f"""<?xml version="1.0"?>
<!-- Generated by `python -m liquid_controller.sim.gazebo_world {_comment(scene.name)}` from scene
     {_comment(repr(scene.name))} ({_comment(scene.description or 'no description')}). Do not edit: regenerate. Same ground raster, lane,
     markings, colours, obstacles, camera and rover as the MuJoCo scene (test/sim/test_gazebo_world.py). -->
<sdf version="1.9">
  <world name="{name}">
    <physics name="physics" type="ignored">
      <max_step_size>{1.0 / physics_rate_hz:.6f}</max_step_size>
      <real_time_factor>1.0</real_time_factor>
    </physics>
    <plugin filename="gz-sim-physics-system" name="gz::sim::systems::Physics"/>
    <plugin filename="gz-sim-user-commands-system" name="gz::sim::systems::UserCommands"/>
    <plugin filename="gz-sim-scene-broadcaster-system" name="gz::sim::systems::SceneBroadcaster"/>
    <plugin filename="gz-sim-sensors-system" name="gz::sim::systems::Sensors">
      <render_engine>ogre2</render_engine>
    </plugin>
    <plugin filename="gz-sim-imu-system" name="gz::sim::systems::Imu"/>
    <scene>
      <ambient>{_rgba(ambient)}</ambient>
      <background>{_rgba(sky)}</background>
      <shadows>false</shadows>
      <fog><type>linear</type><color>{_rgba(sky)}</color><start>{app.haze.start}</start><end>{app.haze.end}</end></fog>
    </scene>
    <light type="directional" name="sun">
      <cast_shadows>false</cast_shadows>
      <pose>0 0 10 0 0 0</pose>
      <diffuse>{_rgba(diffuse)}</diffuse>
      <specular>{_rgba(specular)}</specular>
      <direction>{d[0]:.6f} {d[1]:.6f} {d[2]:.6f}</direction>
    </light>
    <model name="far_ground">
      <static>true</static>
      <pose>{cx:.6f} {cy:.6f} -0.01 0 0 0</pose>
      <link name="link">
        <visual name="visual"><geometry><plane><normal>0 0 1</normal><size>{FAR_GROUND_SIZE} {FAR_GROUND_SIZE}</size></plane></geometry>
          {_material(ground_mean_color(track, track_map))}</visual>
      </link>
    </model>
    <model name="track">
      <static>true</static>
      <pose>{cx:.6f} {cy:.6f} 0 0 0 0</pose>
      <link name="link">
        <collision name="collision"><geometry><plane><normal>0 0 1</normal><size>{width_m:.6f} {height_m:.6f}</size></plane></geometry></collision>
        <visual name="visual"><geometry><plane><normal>0 0 1</normal><size>{width_m:.6f} {height_m:.6f}</size></plane></geometry>
          <material><ambient>1 1 1 1</ambient><diffuse>1 1 1 1</diffuse><specular>{app.road_specular} {app.road_specular} {app.road_specular} 1</specular>
            <pbr><metal><albedo_map>{texture_name}</albedo_map><metalness>0</metalness><roughness>1</roughness></metal></pbr>
          </material></visual>
      </link>
    </model>{''.join(obstacles)}
  {rover}
  </world>
</sdf>
"""
    return GazeboWorld(name=name, world_sdf=world_sdf,
                       rover_sdf=rover_sdf(scene, camera_width, camera_height, camera_rate_hz, imu_rate_hz),
                       texture_name=texture_name, texture_png=_png(track_map.image), start_pose=start)


def write_gazebo_world(scene, out_dir, **kwargs):
    """Write ``world.sdf``, ``rover.sdf`` and the ground texture into ``out_dir`` (created).

    Returns {'world': path, 'rover': path, 'texture': path, 'name': world name}.
    """
    world = build_gazebo_world(scene, **kwargs)
    try:
        os.makedirs(out_dir, exist_ok=True)
    except OSError as exc:
        raise InputError('out', out_dir, f'cannot create the folder: {exc.strerror or exc}') from None
    paths = {'world': os.path.join(out_dir, 'world.sdf'), 'rover': os.path.join(out_dir, 'rover.sdf'),
             'texture': os.path.join(out_dir, world.texture_name)}
    for key, content in (('world', world.world_sdf), ('rover', world.rover_sdf), ('texture', world.texture_png)):
        mode = 'wb' if isinstance(content, bytes) else 'w'
        with open(paths[key], mode) as f:
            f.write(content)
    paths['name'] = world.name
    return paths


def write_rover_sdf(scene, out_dir, **kwargs):
    """Write only ``rover.sdf`` for ``scene`` (its camera mounting) into ``out_dir``; returns the path."""
    text = rover_sdf(load_scene(scene), **kwargs)
    try:
        os.makedirs(out_dir, exist_ok=True)
        path = os.path.join(out_dir, 'rover.sdf')
        with open(path, 'w') as f:
            f.write(text)
    except OSError as exc:
        raise InputError('out', out_dir, f'cannot write rover.sdf: {exc.strerror or exc}') from None
    return path


def read_world_name(path):
    """The ``<world name=...>`` of an SDF file (the launch file passes it to ros_gz_sim)."""
    import xml.etree.ElementTree as ET
    try:
        world = ET.parse(path).getroot().find('world')
    except (OSError, ET.ParseError) as exc:
        raise InputError('world', path, f'not a readable SDF file: {exc}') from None
    if world is None or not world.get('name'):
        raise InputError('world', path, 'the SDF has no <world name="...">')
    return world.get('name')


def main(argv=None):
    """``python -m liquid_controller.sim.gazebo_world SCENE --out DIR``: exit 0, or 2 with one line."""
    parser = argparse.ArgumentParser(
        prog='python -m liquid_controller.sim.gazebo_world',
        description='Write a Gazebo (gz sim) world + rover SDF and ground texture for a scene, '
                    'matching the MuJoCo scene the policy was trained in.',
        formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    parser.add_argument('scene', help='shipped scene name (e.g. summer) or path to a scene YAML')
    parser.add_argument('--out', required=True, help='output folder (created)')
    parser.add_argument('--camera-width', type=int, default=128, help='camera image width (px)')
    parser.add_argument('--camera-height', type=int, default=64, help='camera image height (px)')
    parser.add_argument('--camera-rate', type=float, default=30.0, help='camera frame rate (Hz)')
    parser.add_argument('--imu-rate', type=float, default=200.0, help='IMU rate (Hz)')
    parser.add_argument('--rover-only', action='store_true',
                        help='write only rover.sdf (how config/gazebo/rover.sdf is regenerated)')
    args = parser.parse_args(argv)
    try:
        if args.rover_only:
            path = write_rover_sdf(args.scene, args.out, camera_width=args.camera_width,
                                   camera_height=args.camera_height, camera_rate_hz=args.camera_rate,
                                   imu_rate_hz=args.imu_rate)
            print(f'rover: {path}')
            return 0
        paths = write_gazebo_world(args.scene, args.out, camera_width=args.camera_width,
                                   camera_height=args.camera_height, camera_rate_hz=args.camera_rate,
                                   imu_rate_hz=args.imu_rate)
    except (LiquidControllerError, ValueError) as exc:
        print(f'error: {exc}', file=sys.stderr)
        return 2
    print(f"world {paths['name']!r}: {paths['world']} (rover {paths['rover']}, texture {paths['texture']})")
    return 0


if __name__ == '__main__':
    sys.exit(main())
