"""A privileged expert driver: pure pursuit on the centre line, speed from the curvature ahead.

Optional perturbations disturb the expert's yaw-rate command for a while (a random push left or right);
when the push ends the expert steers back to the centre line, so recorded data covers drifting off
and recovering. ``command()`` returns what is applied; ``clean_command`` holds the undisturbed expert
command for the same state (the label to learn), ``perturbing`` tells whether a push is active.
"""
import math
from dataclasses import asdict, dataclass

import numpy as np

from liquid_controller.config_base import config_from_dict
from liquid_controller.errors import InputError
from liquid_controller.sim.scene import Scene, load_scene
from liquid_controller.sim.track import Track
from liquid_controller.validation import check_number


def _positive(name, value, allow_zero=False):
    check_number(name, value, 0.0, low_open=not allow_zero)


@dataclass
class PerturbationConfig:
    """Random command disturbances: on average ``rate_hz`` events per second, each lasting a duration
    drawn uniformly from [min_duration, max_duration] s and adding a yaw rate drawn uniformly from
    [min_yaw_rate, max_yaw_rate] rad/s with a random sign. ``warmup`` s after reset are left alone."""
    rate_hz: float = 0.1
    min_duration: float = 0.4
    max_duration: float = 1.2
    min_yaw_rate: float = 0.4
    max_yaw_rate: float = 1.0
    warmup: float = 2.0

    def __post_init__(self):
        _positive('rate_hz', self.rate_hz)
        for name in ('min_duration', 'max_duration', 'min_yaw_rate', 'max_yaw_rate', 'warmup'):
            _positive(name, getattr(self, name), allow_zero=True)
        if self.max_duration < self.min_duration:
            raise InputError('max_duration', self.max_duration, 'must be >= min_duration')
        if self.max_yaw_rate < self.min_yaw_rate:
            raise InputError('max_yaw_rate', self.max_yaw_rate, 'must be >= min_yaw_rate')

    def to_dict(self):
        """Plain dict of the fields."""
        return asdict(self)

    @classmethod
    def from_dict(cls, data):
        """Inverse of to_dict; unknown keys are an InputError naming them."""
        return config_from_dict(cls, data, 'perturbation')


class ExpertDriver:
    """Pure-pursuit expert with curvature-limited speed.

    track: a Scene, scene name/path or Track. v_max/v_min (m/s): speed bounds; a_lat_max (m/s^2):
    lateral acceleration allowed in curves (v = sqrt(a_lat_max / |curvature|) over the preview
    distance); w_max (rad/s); lookahead = lookahead_min + lookahead_gain * speed (m); accel_max
    (m/s^2) limits speed changes per call of period ``dt`` (s); perturbation: PerturbationConfig or
    None; seed: seeds the perturbation events.
    """

    def __init__(self, track, v_max=1.2, v_min=0.3, a_lat_max=0.8, w_max=2.5, lookahead_min=0.5,
                 lookahead_gain=0.5, accel_max=1.5, dt=1 / 30, perturbation=None, seed=0):
        if isinstance(track, Track):
            self.track = track
        else:
            scene = track if isinstance(track, Scene) else load_scene(track)
            self.track = Track(scene.track, scene.source)
        for name, value in (('v_max', v_max), ('v_min', v_min), ('a_lat_max', a_lat_max),
                            ('w_max', w_max), ('lookahead_min', lookahead_min), ('dt', dt),
                            ('accel_max', accel_max)):
            _positive(name, value)
        _positive('lookahead_gain', lookahead_gain, allow_zero=True)
        if v_min > v_max:
            raise InputError('v_min', v_min, 'must be <= v_max')
        if perturbation is not None and not isinstance(perturbation, PerturbationConfig):
            raise InputError('perturbation', perturbation, 'must be a PerturbationConfig or None')
        self.v_max, self.v_min, self.a_lat_max, self.w_max = v_max, v_min, a_lat_max, w_max
        self.lookahead_min, self.lookahead_gain = lookahead_min, lookahead_gain
        self.accel_max, self.dt = accel_max, dt
        self.perturbation = perturbation
        self.seed = seed
        self.reset(seed)

    def reset(self, seed=None):
        """Forget the speed history and restart the perturbation schedule (optionally re-seeded)."""
        if seed is not None:
            self.seed = seed
        self._rng = np.random.default_rng(self.seed)
        self._v = 0.0
        self._push_until = -math.inf
        self._push_w = 0.0
        self._next_push = None
        self.clean_command = (0.0, 0.0)
        self.perturbing = False

    def target_speed(self, s):
        """Speed (m/s) allowed by the curvature over the preview distance ahead of arc length s."""
        preview = self.lookahead_min + self.v_max * 1.5  # a braking distance's worth of road
        kappa = self.track.max_abs_curvature(s, s + preview)
        if kappa < 1e-6:
            return self.v_max
        return float(np.clip(math.sqrt(self.a_lat_max / kappa), self.v_min, self.v_max))

    def command(self, truth):
        """(v, w) for the given GroundTruth (uses x, y, yaw, speed, track_s, stamp)."""
        v_target = self.target_speed(truth.track_s)
        step = self.accel_max * self.dt
        self._v = float(np.clip(v_target, self._v - step, self._v + step))
        v = self._v
        lookahead = self.lookahead_min + self.lookahead_gain * max(truth.speed, 0.0)
        tx, ty, _ = self.track.pose_at(truth.track_s + lookahead)
        alpha = math.atan2(ty - truth.y, tx - truth.x) - truth.yaw
        distance = math.hypot(tx - truth.x, ty - truth.y)
        curvature = 2.0 * math.sin(alpha) / max(distance, 1e-3)  # pure pursuit arc through the target
        w = float(np.clip(v * curvature, -self.w_max, self.w_max))
        self.clean_command = (v, w)
        w_applied = w + self._perturbation(truth.stamp)
        return v, float(np.clip(w_applied, -self.w_max, self.w_max))

    def _perturbation(self, t):
        cfg = self.perturbation
        if cfg is None:
            self.perturbing = False
            return 0.0
        if self._next_push is None:
            self._next_push = t + cfg.warmup + self._rng.exponential(1.0 / cfg.rate_hz)
        if t >= self._next_push and t >= self._push_until:
            duration = self._rng.uniform(cfg.min_duration, cfg.max_duration)
            self._push_until = t + duration
            self._push_w = self._rng.choice([-1.0, 1.0]) * self._rng.uniform(cfg.min_yaw_rate,
                                                                             cfg.max_yaw_rate)
            self._next_push = self._push_until + self._rng.exponential(1.0 / cfg.rate_hz)
        self.perturbing = t < self._push_until
        return self._push_w if self.perturbing else 0.0
