"""The lane barrier's geometry for an episode, from the scene and the robot.

The safety filter's lane rows keep the rover's *centre* within ``lane_half_width - lane_margin`` of
the lane centre (by the network's own lane-offset estimate). For the wheels to stay inside the lane
lines the centre may use ``lane_width / 2 - rover_half_width``: 0.31 m on a 1 m lane for the 0.38 m
rover, where the parameter file's fixed 0.6 m would let a wheel cross the line by 0.29 m before the
barrier even starts to act. Evaluation sets it per scene; on a robot it is a parameter to set for the
road at hand (config/controller.yaml ``safety.lane_half_width``).
"""
import dataclasses

from liquid_controller.errors import InputError


def lane_half_width(lane_width, rover_half_width):
    """Half-width (m) of the band the rover's centre may use: ``lane_width / 2 - rover_half_width``."""
    return float(lane_width) / 2.0 - float(rover_half_width)


def scene_safety_config(safety, world):
    """``safety`` (a SafetyConfig) with ``lane_half_width`` from ``world``'s current scene and rover.

    Raises InputError naming the scene when the lane leaves no more room than the filter's
    ``lane_margin`` (the barrier would be infeasible from the start)."""
    half = lane_half_width(world.track.lane_width, world.rover_half_width)
    if half <= safety.lane_margin:
        raise InputError('track.lane_width', world.track.lane_width,
                         f'scene {world.scene.name}: leaves {half:.3f} m for the rover centre, not more than '
                         f'safety.lane_margin={safety.lane_margin} m')
    return dataclasses.replace(safety, lane_half_width=half)
