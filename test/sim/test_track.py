"""Centre-line geometry: length, projection sign conventions, pose lookup."""
import math

import numpy as np
import pytest

from liquid_controller.sim import Track, load_scene


@pytest.fixture(scope='module')
def track():
    return Track(load_scene('summer').track)


def test_rounded_rectangle_length_matches_formula(track):
    spec = track.spec
    expected = 2 * (spec.length - 2 * spec.corner_radius) + 2 * (spec.width - 2 * spec.corner_radius) \
        + 2 * math.pi * spec.corner_radius
    assert track.length == pytest.approx(expected, rel=1e-3)


def test_lap_starts_on_the_first_straight_heading_east(track):
    x, y, heading = track.pose_at(0.0)
    assert (x, y) == pytest.approx((0.0, -5.0), abs=0.02)
    assert heading == pytest.approx(0.0, abs=1e-6)
    assert track.curvature_at(0.0) == pytest.approx(0.0, abs=1e-6)
    # In a corner the curvature is 1 / corner_radius (left turns positive).
    assert track.curvature_at(8.0 - 3.0 + 3.0 * math.pi / 4) == pytest.approx(1 / 3.0, rel=0.02)


def test_project_signs_left_positive(track):
    s, offset, heading = track.project(1.0, -5.0 + 0.3)  # 0.3 m left of the eastbound straight
    assert s == pytest.approx(1.0, abs=0.02)
    assert offset == pytest.approx(0.3, abs=1e-6)
    assert heading == pytest.approx(0.0, abs=1e-6)
    _, offset, _ = track.project(1.0, -5.0 - 0.2)
    assert offset == pytest.approx(-0.2, abs=1e-6)


def test_lateral_field_matches_project(track):
    xs = np.linspace(-10, 10, 201)
    ys = np.linspace(-7, 7, 141)
    offset, s = track.lateral_field(xs, ys)
    rng = np.random.default_rng(0)
    for _ in range(50):
        i, j = rng.integers(0, len(ys)), rng.integers(0, len(xs))
        _, ref, _ = track.project(xs[j], ys[i])
        if abs(ref) < 2.0:  # the raster is used near the road only
            assert offset[i, j] == pytest.approx(ref, abs=0.07)
