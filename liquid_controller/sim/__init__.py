"""Layer 4: the embedded MuJoCo driving world, expert driver and episode metrics (ROS-free).

Public API::

    from liquid_controller.sim import (DrivingWorld, WorldConfig, load_scene, list_scenes,
                                       ExpertDriver, PerturbationConfig, EpisodeMetrics, run_episode)
    world = DrivingWorld(WorldConfig(camera_height=64, camera_width=128))
    obs = world.reset(scene='summer', seed=0, start=0.0)      # -> Observation
    expert = ExpertDriver(world.scene)
    result = world.step(expert.command(world.last_truth))     # -> StepResult(observation, truth)

Rendering needs a headless OpenGL backend (EGL or OSMesa), chosen by ``select_gl_backend()``.
Procedural scenes (new looks, new tracks, both): ``liquid_controller.sim.scene_generator``.
"""
from liquid_controller.sim.expert import ExpertDriver, PerturbationConfig
from liquid_controller.sim.metrics import EpisodeMetrics, run_episode
from liquid_controller.sim.rendering import RenderBackendError, select_gl_backend
from liquid_controller.sim.scene import Scene, list_scenes, load_scene
from liquid_controller.sim.track import Track
from liquid_controller.sim.world import (DrivingWorld, GroundTruth, ImuSamples, Observation,
                                         OdometryState, StepResult, WorldConfig)

__all__ = [
    'DrivingWorld', 'WorldConfig', 'Observation', 'ImuSamples', 'OdometryState', 'GroundTruth',
    'StepResult', 'Scene', 'load_scene', 'list_scenes', 'Track', 'ExpertDriver',
    'PerturbationConfig', 'EpisodeMetrics', 'run_episode', 'select_gl_backend',
    'RenderBackendError',
]
