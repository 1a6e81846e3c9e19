"""Scene format extensions: driving direction, per-corner radii, light colour, exposure, road
specularity, edge lines, distractors. Real tracks, real physics, the real renderer."""
import copy
import math

import numpy as np
import pytest

from liquid_controller.errors import SceneError
from liquid_controller.sim import ExpertDriver, Track, load_scene, run_episode
from liquid_controller.sim.mjcf import ROVER_HALF_WIDTH
from liquid_controller.sim.scene import Scene
from liquid_controller.sim.texture import paint_track_map


def _summer(**changes):
    d = load_scene('summer').to_dict()
    d['noise'] = {k: 0.0 for k in d['noise']}  # compare pixels without sensor noise
    for dotted, value in changes.items():
        node = d
        keys = dotted.split('.')
        for k in keys[:-1]:
            node = node[k]
        node[keys[-1]] = value
    return Scene.from_dict(copy.deepcopy(d))


def _road_patch(world, scene):
    """Mean RGB of the road straight ahead, just below the image centre (lane only, no lines)."""
    image = world.reset(scene, seed=0, start=0.0).image.astype(float)
    mask = world.road_mask()
    h, w = mask.shape
    rows = slice(h // 2 + 6, h)
    cols = slice(w // 2 - 30, w // 2 - 6)  # left of the centre line
    region = mask[rows, cols]
    assert region.mean() > 0.9
    return image[rows, cols][region].mean(axis=0)


def test_clockwise_track_is_the_same_loop_driven_the_other_way():
    ccw = Track(_summer().track)
    cw = Track(_summer(**{'track.direction': 'cw'}).track)
    assert cw.length == pytest.approx(ccw.length)
    assert np.allclose(cw.points[0], ccw.points[0])            # the lap starts at the same place
    assert math.cos(cw.heading[0] - ccw.heading[0]) == pytest.approx(-1.0, abs=1e-3)
    assert ccw.curvature.min() > -1e-6 and ccw.curvature.max() > 0.3     # left corners only
    assert cw.curvature.max() < 1e-6 and cw.curvature.min() < -0.3       # right corners only


def test_expert_turns_right_around_a_clockwise_loop(physics_world):
    scene = _summer(**{'track.direction': 'cw'})
    expert = ExpertDriver(scene, dt=physics_world.frame_period)
    yaw_rates = []

    def drive(obs, truth):
        yaw_rates.append(truth.yaw_rate)
        return expert.command(truth)
    metrics = run_episode(physics_world, drive, scene=scene, laps=1.0, max_seconds=120)
    s = metrics.summary()
    assert s['laps'] >= 1.0 and s['lane_departures'] == 0
    # a clockwise lap turns by -2 pi in total: the yaw rate integrates to about -2 pi
    turned = float(np.sum(yaw_rates)) * physics_world.frame_period
    assert turned == pytest.approx(-2 * math.pi, abs=0.5)
    breakdown = metrics.corner_breakdown()
    assert breakdown['right']['frames'] > 100 and breakdown['left']['frames'] == 0
    assert sum(breakdown[c]['lane_departures'] for c in ('left', 'right', 'straight')) == \
        s['lane_departures']


def test_corner_radii_set_each_corner():
    pts = [[-8, -5], [8, -5], [8, 5], [-8, 5]]
    scene = _summer(track={'shape': 'waypoints', 'points': pts, 'corner_radii': [1.5, 3.0, 2.0, 4.0]})
    track = Track(scene.track)
    assert 1 / np.abs(track.curvature).max() == pytest.approx(1.5, rel=0.05)
    # listed clockwise: built counter-clockwise, same radii at the same corners
    cw_listed = _summer(track={'shape': 'waypoints', 'points': pts[::-1],
                               'corner_radii': [4.0, 2.0, 3.0, 1.5]})
    assert Track(cw_listed.track).length == pytest.approx(track.length, abs=0.05)
    with pytest.raises(SceneError, match=r'track.corner_radii'):
        _summer(track={'shape': 'waypoints', 'points': pts, 'corner_radii': [1.5, 3.0]})
    with pytest.raises(SceneError, match=r'track.corner_radii\[1\]'):
        _summer(track={'shape': 'waypoints', 'points': pts, 'corner_radii': [1.5, 0.55, 2, 2]})
    too_big = _summer(track={'shape': 'waypoints', 'points': pts, 'corner_radii': [1.5, 6.0, 5.0, 2.0]})
    with pytest.raises(SceneError, match=r'track.corner_radii\[1\]'):
        Track(too_big.track)


@pytest.mark.parametrize('key, value', [('track.direction', 'left'), ('track.edge_lines', 'yes'),
                                        ('appearance.exposure', 5.0), ('appearance.road_specular', -0.1),
                                        ('appearance.light.color', [1.0, 2.0, 1.0])])
def test_new_keys_are_validated_and_named(key, value):
    with pytest.raises(SceneError, match=key.replace('.', r'\.').replace('[', r'\[')):
        _summer(**{key: value})


def test_lights_saturate_but_exposure_brightens(render_world):
    base = _road_patch(render_world, _summer())
    full = _road_patch(render_world, _summer(**{'appearance.light.diffuse': 1.0, 'appearance.light.ambient': 1.0,
                                                'appearance.light.headlight': 1.0}))
    # summer's lights already sum past 1: the renderer clamps, raising them changes nothing
    assert np.abs(full - base).max() < 1.0
    bright = _road_patch(render_world, _summer(**{'appearance.exposure': 1.4}))
    assert (bright > base * 1.25).all()
    dim = _road_patch(render_world, _summer(**{'appearance.exposure': 0.6}))
    assert (dim < base * 0.75).all()


def test_light_colour_tints_the_scene(render_world):
    dim = {'appearance.light.diffuse': 0.3, 'appearance.light.ambient': 0.2, 'appearance.light.headlight': 0.1}
    white = _road_patch(render_world, _summer(**dim))
    warm = _road_patch(render_world, _summer(**dim, **{'appearance.light.color': [1.0, 0.7, 0.4]}))
    assert warm[0] == pytest.approx(white[0], abs=2.0)     # red unchanged
    assert warm[2] < 0.55 * white[2]                        # blue cut by the tint


def test_road_specular_adds_a_highlight(render_world):
    # sun straight ahead of the camera and low: a specular road shows its highlight in front
    looks = {'appearance.light.direction': [-1.0, 0.0, -0.6], 'appearance.light.specular': 1.0,
             'appearance.light.diffuse': 0.3, 'appearance.light.ambient': 0.2, 'appearance.light.headlight': 0.0}
    matte = _road_patch(render_world, _summer(**looks))
    shiny = _road_patch(render_world, _summer(**looks, **{'appearance.road_specular': 0.8}))
    assert (shiny > matte + 3).all()


def test_edge_lines_can_be_left_out():
    lined = _summer()
    plain = _summer(**{'track.edge_lines': False, 'track.center_line': 'none'})
    for scene, has_lines in ((lined, True), (plain, False)):
        track = Track(scene.track)
        tm = paint_track_map(track, scene.appearance)
        half = scene.track.lane_width / 2
        on_line = np.abs(np.abs(tm.offset) - (half - scene.track.line_width / 2)) < 0.01
        brightness = tm.image[on_line].mean()
        assert (brightness > 200) == has_lines, brightness


def test_distractors_are_seen_but_not_hit(physics_world):
    obstacle = {'at': 0.02, 'offset': 0.0, 'shape': 'cylinder', 'size': [0.15, 0.15, 0.5]}
    for collide in (True, False):
        d = load_scene('summer').to_dict()
        d['obstacles'] = [dict(obstacle, collide=collide)]
        scene = Scene.from_dict(d)
        expert = ExpertDriver(scene, dt=physics_world.frame_period)
        metrics = run_episode(physics_world, lambda o, t: expert.command(t), scene=scene, seconds=3.0,
                              stop_on_collision=True)
        assert (metrics.summary()['collisions'] > 0) == collide


def test_rover_half_width_matches_the_lane_rule():
    # in_lane (world) and the evaluation's lane barrier both use this half-width
    assert ROVER_HALF_WIDTH == pytest.approx(0.19)
