"""What makes evaluation seeds real trials: a start pose and command disturbances drawn per seed.

Without these, an episode's only randomness is the simulator's sensor noise, and runs with different
seeds differ by millimetres. With ``random_start`` each (scene, seed) starts at its own place on the
lap, a little off the centre line and askew; with ``disturbance_rate_hz`` > 0 the rover is pushed off
course now and then (a yaw rate added to the command the world applies, as wind, a bump or wheel
slip would; the driver does not see it). Both are drawn from a generator seeded by (seed, scene), so
an episode is reproducible and independent of which other episodes run.
"""
import math
import zlib

import numpy as np

from liquid_controller.sim.expert import PerturbationConfig

START_LATERAL_MAX = 0.1    # m: start up to this far left or right of the centre line
START_HEADING_MAX = 0.15   # rad: and turned up to this much against the track direction
START_SALT = 0x57A27
DISTURBANCE_SALT = 0xD157


def _scene_key(scene):
    """A stable integer for a scene name or path (the seed stream must not depend on hash())."""
    return zlib.crc32(str(scene).encode())


def episode_start(scene, seed, random_start, start=0.0):
    """Start pose for ``world.reset``: {'start', 'lateral_offset', 'heading_offset'}. Without
    ``random_start`` the centre line at lap fraction ``start``; with it, a uniform lap fraction,
    lateral offset in +-START_LATERAL_MAX m and heading offset in +-START_HEADING_MAX rad."""
    if not random_start:
        return {'start': float(start), 'lateral_offset': 0.0, 'heading_offset': 0.0}
    rng = np.random.default_rng([int(seed), _scene_key(scene), START_SALT])
    return {'start': float(rng.uniform(0.0, 1.0)),
            'lateral_offset': float(rng.uniform(-START_LATERAL_MAX, START_LATERAL_MAX)),
            'heading_offset': float(rng.uniform(-START_HEADING_MAX, START_HEADING_MAX))}


class CommandDisturbance:
    """Random yaw-rate pushes added to the applied command: on average ``rate_hz`` pushes a second
    (none when 0), each lasting 0.3 to 0.8 s with 0.2 to 0.6 rad/s of either sign, none in the first
    2 s. ``apply((v, w), t) -> (v, w + push)``; ``pushes`` counts the pushes started."""

    def __init__(self, scene, seed, rate_hz):
        self.rate_hz = float(rate_hz)
        self.pushes = 0
        if self.rate_hz > 0:
            self.config = PerturbationConfig(rate_hz=self.rate_hz, min_duration=0.3, max_duration=0.8,
                                             min_yaw_rate=0.2, max_yaw_rate=0.6, warmup=2.0)
            self._rng = np.random.default_rng([int(seed), _scene_key(scene), DISTURBANCE_SALT])
        self._next = None
        self._until = -math.inf
        self._w = 0.0

    def apply(self, command, t):
        """The command the world applies at sim time ``t``: (float v, float w)."""
        v, w = float(command[0]), float(command[1])
        if self.rate_hz <= 0:
            return v, w
        cfg, rng = self.config, self._rng
        if self._next is None:
            self._next = t + cfg.warmup + rng.exponential(1.0 / cfg.rate_hz)
        if t >= self._next and t >= self._until:
            self._until = t + rng.uniform(cfg.min_duration, cfg.max_duration)
            self._w = rng.choice([-1.0, 1.0]) * rng.uniform(cfg.min_yaw_rate, cfg.max_yaw_rate)
            self._next = self._until + rng.exponential(1.0 / cfg.rate_hz)
            self.pushes += 1
        return (v, w + self._w) if t < self._until else (v, w)
