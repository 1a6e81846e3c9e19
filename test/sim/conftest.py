"""Shared fixtures for the ROS-free simulator tests: one rendering world and one physics-only world
per test session (compiling a scene and creating a GL context cost tenths of a second each)."""
import pytest

from liquid_controller.sim import DrivingWorld, WorldConfig


@pytest.fixture(scope='session')
def physics_world():
    """A world without camera rendering (fast expert and dynamics checks)."""
    world = DrivingWorld(WorldConfig(render=False))
    yield world
    world.close()


@pytest.fixture(scope='session')
def render_world():
    """A world rendering the default 64x128 camera with the real MuJoCo renderer (EGL or OSMesa)."""
    world = DrivingWorld(WorldConfig())
    yield world
    world.close()
