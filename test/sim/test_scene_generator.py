"""The procedural scene generator: deterministic per seed, valid readable YAML, drivable tracks with
both turn directions, and the shipped held-out suite built from it."""
import numpy as np
import pytest
import yaml

from liquid_controller.errors import InputError
from liquid_controller.sim import Track, load_scene
from liquid_controller.sim import scene_generator as sg


@pytest.fixture(scope='module')
def shapes():
    return [sg.generate_scene('shape', 11, i) for i in range(4)]


def test_same_seed_same_files_other_seed_other_scenes():
    first, again, other = (sg.generate_scene('both', s, 1) for s in (5, 5, 6))
    assert sg.scene_yaml(first) == sg.scene_yaml(again)
    assert first.scene.track.points != other.scene.track.points
    assert first.scene.appearance.to_dict() != other.scene.appearance.to_dict()
    # scene i does not depend on how many scenes are generated
    assert sg.scene_yaml(sg.generate_scenes('appearance', 2, 5, sg.GeneratorConfig(expert_check=False))[1]) \
        == sg.scene_yaml(sg.generate_scene('appearance', 5, 1, sg.GeneratorConfig(expert_check=False)))


def test_written_yaml_loads_back_to_the_same_scene(tmp_path, shapes):
    for g in shapes[:2]:
        path = sg.write_scene(g, tmp_path, command='test')
        text = path.read_text()
        assert text.startswith('# Generated scene') and '# Made by: test' in text
        loaded = load_scene(str(path))
        assert loaded.to_dict() == g.scene.to_dict()
        yaml.safe_load(text)


def test_shape_family_tracks_turn_both_ways_and_are_drivable(shapes):
    cfg = sg.GeneratorConfig()
    directions = {g.scene.track.direction for g in shapes}
    assert directions == {'ccw', 'cw'}
    assert any(g.features['right_corners'] > 0 for g in shapes)
    for g in shapes:
        track = Track(g.scene.track)
        assert g.expert['ok'] and g.expert['laps'] >= 1.0 and g.expert['lane_departures'] == 0
        assert cfg.lane_width[0] <= g.scene.track.lane_width <= cfg.lane_width[1]
        radius = 1 / np.abs(track.curvature).max()
        assert radius > cfg.corner_radius[0] * 0.95, radius
        # looks are the training scene's
        assert g.scene.appearance.to_dict() == load_scene('summer').appearance.to_dict()
        # shoulder obstacles stay off every part of the road
        half_road = g.scene.track.lane_width / 2 + g.scene.track.shoulder_width
        for o in g.scene.obstacles:
            x, y, h = track.pose_at(o.at * track.length)
            _, offset, _ = track.project(x - o.offset * np.sin(h), y + o.offset * np.cos(h))
            assert abs(offset) > half_road


def test_a_clockwise_generated_track_is_driven_turning_right(shapes):
    g = next(g for g in shapes if g.scene.track.direction == 'cw')
    track = Track(g.scene.track)
    # turning clockwise overall: the signed curvature integrates to -2 pi
    total = float((track.curvature * (track.length / len(track.s))).sum())
    assert total == pytest.approx(-2 * np.pi, abs=0.05)


def test_appearance_family_keeps_the_training_track():
    g = sg.generate_scene('appearance', 3, 0)
    summer = load_scene('summer').track
    for key in ('shape', 'length', 'width', 'corner_radius', 'lane_width', 'direction'):
        assert getattr(g.scene.track, key) == getattr(summer, key)
    assert g.scene.appearance.to_dict() != load_scene('summer').appearance.to_dict()
    assert all(not o.collide for o in g.scene.obstacles)   # distractors only


@pytest.mark.parametrize('key, value', [('corner_radius', (3.0, 1.0)), ('lane_width', (0.5, 1.0)),
                                        ('concave_probability', 0.9), ('directions', ('up',)),
                                        ('corners', (2, 5))])
def test_generator_config_errors_name_the_key(key, value):
    with pytest.raises(InputError, match=key):
        sg.GeneratorConfig(**{key: value})


def test_unknown_family_is_an_error():
    with pytest.raises(InputError, match='family'):
        sg.generate_scene('colour', 0, 0)


def test_contact_sheet_has_one_frame_per_scene(tmp_path):
    from PIL import Image
    scenes = ['summer', 'night', 'winter']
    path = sg.contact_sheet(scenes, tmp_path / 'sheet.png', columns=2, scale=1)
    image = np.asarray(Image.open(path))
    assert image.shape == (2 * (64 + 14), 2 * 128, 3)
    assert image[:64, :128].std() > 5 and image[:64, 128:].std() > 5



def test_hairpins_are_drawn_and_driven():
    cfg = sg.GeneratorConfig(hairpin_probability=1.0)
    g = sg.generate_scene('shape', 2, 0, cfg)
    assert g.features['hairpins'] >= 1 and g.expert['ok']
    track = Track(g.scene.track)
    # somewhere the track turns back on itself within 6 m
    spacing = track.length / len(track.s)
    window = int(6.0 / spacing)
    turned = np.cumsum(np.concatenate([track.curvature, track.curvature[:window]])) * spacing
    assert np.abs(turned[window:] - turned[:-window]).max() > np.radians(150)
    none = sg.generate_scene('shape', 2, 0, sg.GeneratorConfig(hairpin_probability=0.0))
    assert none.scene.track.points != g.scene.track.points


def test_training_set_is_disjoint_from_the_held_out_suite_and_reproducible():
    """The committed training scenes: seeds apart from the benchmark's, names unique and never a
    suite scene's, and a file equal (bar the command line) to what the generator draws again."""
    from pathlib import Path

    from liquid_controller.evaluation.benchmark import load_suite
    folder = Path(sg.__file__).parent / 'training_scenes'
    manifest = yaml.safe_load((folder / 'training_set.yaml').read_text())
    files = sorted(folder.glob('*/*.yaml'))
    names = [load_scene(str(f)).name for f in files]
    assert len(names) == len(set(names)) == 96
    seeds = {sg.generator_seed_of(n) for n in names}
    assert seeds == {1001, 1002, 1003, 1004} and not seeds & sg.HELDOUT_GENERATOR_SEEDS
    assert not set(names) & set(load_suite().names)
    for scene in map(load_scene, map(str, files)):
        sg.check_training_scene(scene)                                # no InputError
    assert len(manifest['generated_by']) == 4 and len(manifest['recorded_by']) == 2
    committed = (folder / 'shape_s1002' / 'shape_s1002_003.yaml').read_text()
    drawn = sg.scene_yaml(sg.generate_scene('shape', 1002, 3))
    strip = lambda text: [line for line in text.splitlines() if not line.startswith('# Made by')]  # noqa: E731
    assert strip(committed) == strip(drawn)


def test_generator_seed_of_reads_generated_names_only():
    assert sg.generator_seed_of('both_s170003_011') == 170003
    assert sg.generator_seed_of('appearance_s1001_000') == 1001
    assert sg.generator_seed_of('summer') is None and sg.generator_seed_of('both_s12_x') is None
