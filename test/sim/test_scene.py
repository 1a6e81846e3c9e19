"""Scene files: every shipped scene validates; invalid files fail naming the file and the key."""
import copy

import pytest
import yaml

from liquid_controller.errors import SceneError
from liquid_controller.sim import Scene, Track, list_scenes, load_scene
from liquid_controller.sim.scene import SCENES_DIR

SHIPPED = list_scenes()


def test_required_scenes_are_shipped():
    for name in ('summer', 'fall', 'winter', 'night', 'summer_chicane', 'summer_oval_wide'):
        assert name in SHIPPED


@pytest.mark.parametrize('name', SHIPPED)
def test_shipped_scene_validates_and_round_trips(name):
    scene = load_scene(name)
    assert scene.name == name
    assert scene.source.endswith(f'{name}.yaml')
    again = Scene.from_dict(scene.to_dict(), source=scene.source)
    assert again == scene
    track = Track(scene.track)
    assert track.length > 20.0
    # A closed loop driven counter-clockwise turns through +2 pi in total.
    assert abs(track.curvature.sum() * (track.length / len(track.s)) - 2 * 3.141592653589793) < 0.05


def test_held_out_variants_share_the_summer_track_and_differ_in_looks():
    summer = load_scene('summer')
    for name in ('fall', 'winter', 'night'):
        variant = load_scene(name)
        assert variant.track == summer.track
        assert variant.appearance.ground_color != summer.appearance.ground_color
        assert variant.appearance.sky_color != summer.appearance.sky_color


def test_load_by_path_equals_load_by_name():
    by_path = load_scene(SCENES_DIR / 'winter.yaml')
    assert by_path == load_scene('winter')


def _write(tmp_path, data, name='bad.yaml'):
    path = tmp_path / name
    path.write_text(yaml.safe_dump(data))
    return path


def _summer_dict():
    with open(SCENES_DIR / 'summer.yaml') as f:
        return yaml.safe_load(f)


@pytest.mark.parametrize('mutate, key', [
    (lambda d: d.update(colour='red'), 'colour'),
    (lambda d: d['track'].update(lane_widht=1.0), 'track.lane_widht'),
    (lambda d: d['track'].update(lane_width=-1.0), 'track.lane_width'),
    (lambda d: d['track'].update(lane_width='wide'), 'track.lane_width'),
    (lambda d: d['track'].update(shape='spiral'), 'track.shape'),
    (lambda d: d['track'].update(corner_radius=20.0), 'track.corner_radius'),
    (lambda d: d['appearance'].update(sky_color=[0.5, 0.5]), 'appearance.sky_color'),
    (lambda d: d['appearance'].update(road_color=[0.5, 0.5, 1.5]), 'appearance.road_color[2]'),
    (lambda d: d['appearance']['light'].update(direction=[0, 0, 1]), 'appearance.light.direction'),
    (lambda d: d['appearance']['light'].update(shadows=True), 'appearance.light.shadows'),
    (lambda d: d['appearance']['haze'].update(end=1.0), 'appearance.haze.end'),
    (lambda d: d['noise'].update(gyro_std=-0.1), 'noise.gyro_std'),
    (lambda d: d['camera'].update(fovy_deg=170), 'camera.fovy_deg'),
    (lambda d: d.update(obstacles=[{'at': 0.5, 'size': [0.1, 0.1]}]), 'obstacles[0].size'),
    (lambda d: d.update(obstacles=[{'at': 1.5}]), 'obstacles[0].at'),
    (lambda d: d.pop('track'), 'track'),
])
def test_invalid_scene_file_names_file_and_key(tmp_path, mutate, key):
    data = copy.deepcopy(_summer_dict())
    mutate(data)
    path = _write(tmp_path, data)
    with pytest.raises(SceneError) as info:
        load_scene(path)
    message = str(info.value)
    assert str(path) in message
    assert key in message


def test_waypoint_corner_radius_too_large_for_an_edge(tmp_path):
    data = _summer_dict()
    data['track'] = {'shape': 'waypoints', 'points': [[0, 0], [10, 0], [10, 1.5], [0, 1.5]],
                     'corner_radius': 1.0}
    path = _write(tmp_path, data)
    scene = load_scene(path)  # schema-valid; the geometry check happens when the track is built
    with pytest.raises(SceneError, match='track.corner_radius'):
        Track(scene.track, scene.source)


def test_yaml_syntax_error_and_unknown_name(tmp_path):
    path = tmp_path / 'broken.yaml'
    path.write_text('name: x\ntrack: [unclosed\n')
    with pytest.raises(SceneError, match='broken.yaml'):
        load_scene(path)
    with pytest.raises(SceneError, match='no shipped scene'):
        load_scene('no_such_scene')


def test_sections_validate_when_constructed_in_code():
    from liquid_controller.sim.scene import NoiseSpec, ObstacleSpec, TrackSpec
    with pytest.raises(SceneError, match='track.lane_width'):
        TrackSpec(lane_width=0.0)
    with pytest.raises(SceneError, match=r'obstacle.size\[1\]'):
        ObstacleSpec(size=(0.1, -0.1, 0.1))
    assert NoiseSpec(gyro_std=0.01).gyro_std == 0.01
    with pytest.raises(SceneError, match='track must be a TrackSpec'):
        Scene(name='x', track={'shape': 'ellipse'})
