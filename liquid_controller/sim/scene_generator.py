"""Seeded procedural scenes: new looks, new closed tracks, or both, each checked drivable by the expert.

Families:

- ``appearance``: the training track (``summer``'s geometry, counter-clockwise) under new looks: ground,
  road and shoulder colours and textures, lane markings (centre none/solid/dashed, edge lines on/off,
  colours), sun direction, colour and intensity, headlight, exposure, fog, sky, road specularity, and
  distractors beside the road.
- ``shape``: new closed tracks in the training looks: clockwise or counter-clockwise loops whose
  concave corners give S-bends and opposite-hand corners, a finger pushed out of or into the loop gives
  a hairpin (a U-turn of two corners whose arcs nearly meet), stretched layouts give long straights;
  a radius per corner drawn from the configured curvature range, a lane width from its range, and
  obstacles on the shoulders.
- ``both``: a new track under new looks.

Every scene is a plain :class:`~liquid_controller.sim.scene.Scene`; :func:`write_scene` writes it as
readable YAML (one file per scene, with a comment header saying how it was made) that
:func:`~liquid_controller.sim.scene.load_scene` reads back. A generated track is kept only when its
road does not come close to itself and the privileged expert (``sim/expert.py``) drives a full lap on
it without a lane departure, collision or leaving the road; otherwise the next attempt is drawn (from
a sub-seed, so the result is still a function of the seed alone).

Deterministic: scene ``i`` of ``generate_scenes(family, count, seed)`` depends only on
(family, seed, i), never on ``count`` or on other scenes.
"""
import math
import re
from dataclasses import dataclass, field

import numpy as np
import yaml

from liquid_controller.config_base import config_from_dict, config_to_dict
from liquid_controller.errors import InputError, SceneError
from liquid_controller.sim.scene import Scene, TrackSpec, load_scene
from liquid_controller.sim.track import Track

FAMILIES = ('appearance', 'shape', 'both')
# Salts keep the random streams of the families apart: the same seed gives unrelated scenes.
_FAMILY_SALT = {'appearance': 0xA11, 'shape': 0x5A9E, 'both': 0xB07}
TRAINING_SCENE = 'summer'
HAIRPIN_WINDOW_M = 6.0  # a turn of more than 150 degrees within this much track is a hairpin
ROUND = 3  # decimals written to YAML: millimetres and 1/1000 colour steps are plenty, and readable
# Generator seeds of the held-out benchmark suites (sim/benchmark_suite/, sim/stress_suite/): never
# to be trained on.
HELDOUT_GENERATOR_SEEDS = frozenset({170001, 170002, 170003, 170004, 170005})
_GENERATED_NAME = re.compile(r'^(appearance|shape|both)_s(\d+)_\d{3}$')


def _check_range(name, value, low, high):
    ok = (isinstance(value, (list, tuple)) and len(value) == 2
          and all(isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v)
                  for v in value))
    if not ok or not (low <= value[0] <= value[1] <= high):
        raise InputError(name, value, f'must be [min, max] with {low} <= min <= max <= {high}')
    return (float(value[0]), float(value[1]))


@dataclass
class GeneratorConfig:
    """Ranges the generator draws from (metres; validated on construction, errors name the key).

    corner_radius: [min, max] fillet radius of a track corner (the curvature range is the inverse);
    lane_width: [min, max] lane width; extent: [min, max] half-size of the layout before stretching;
    corners: [min, max] number of polygon corners; concave_probability: chance a corner is pulled in
    (an opposite-hand corner: S-bends); hairpin_probability: chance a track gets a hairpin (a U-turn
    finger on its longest edge, radius at most ``hairpin_radius_max``); stretch: [min, max] aspect
    factor (long straights); directions: which driving directions to draw from ('ccw', 'cw');
    shoulder_obstacles / distractors: [min, max] counts; expert_check: drive each new track with the
    expert and reject it unless it completes a lap cleanly; max_attempts: draws per scene before
    giving up; expert_laps: laps the check drives.
    """
    corner_radius: tuple = (1.2, 5.0)
    lane_width: tuple = (0.8, 1.4)
    extent: tuple = (6.0, 11.0)
    corners: tuple = (5, 9)
    concave_probability: float = 0.3
    hairpin_probability: float = 0.5
    hairpin_radius_max: float = 2.0
    stretch: tuple = (0.7, 1.4)
    directions: tuple = ('ccw', 'cw')
    shoulder_obstacles: tuple = (0, 4)
    distractors: tuple = (0, 5)
    expert_check: bool = True
    max_attempts: int = 40
    expert_laps: float = 1.0

    def __post_init__(self):
        self.corner_radius = _check_range('corner_radius', self.corner_radius, 0.8, 20.0)
        self.lane_width = _check_range('lane_width', self.lane_width, 0.7, 3.0)
        self.extent = _check_range('extent', self.extent, 3.0, 60.0)
        self.stretch = _check_range('stretch', self.stretch, 0.3, 3.0)
        for name, high in (('corners', 20), ('shoulder_obstacles', 20), ('distractors', 40)):
            lo, hi = _check_range(name, getattr(self, name), 0 if name != 'corners' else 3, high)
            if lo != int(lo) or hi != int(hi):
                raise InputError(name, getattr(self, name), 'must be whole numbers')
            setattr(self, name, (int(lo), int(hi)))
        p = self.concave_probability
        if not isinstance(p, (int, float)) or isinstance(p, bool) or not 0.0 <= p <= 0.6:
            raise InputError('concave_probability', p, 'must be a number in [0, 0.6]')
        p = self.hairpin_probability
        if not isinstance(p, (int, float)) or isinstance(p, bool) or not 0.0 <= p <= 1.0:
            raise InputError('hairpin_probability', p, 'must be a number in [0, 1]')
        r = self.hairpin_radius_max
        if not isinstance(r, (int, float)) or isinstance(r, bool) or not r >= self.corner_radius[0]:
            raise InputError('hairpin_radius_max', r, f'must be a number >= corner_radius min '
                                                      f'({self.corner_radius[0]})')
        self.directions = tuple(self.directions) if isinstance(self.directions, (list, tuple)) \
            else (self.directions,)
        if not self.directions or any(d not in ('ccw', 'cw') for d in self.directions):
            raise InputError('directions', self.directions, "must be a non-empty list of 'ccw', 'cw'")
        if self.corner_radius[0] <= self.lane_width[1] / 2 + 0.4:
            raise InputError('corner_radius', self.corner_radius,
                             f'min must exceed max lane_width / 2 + 0.4 m of shoulder '
                             f'({self.lane_width[1] / 2 + 0.4:.2f} m)')
        for name in ('expert_check',):
            if not isinstance(getattr(self, name), bool):
                raise InputError(name, getattr(self, name), 'must be true or false')
        if not isinstance(self.max_attempts, int) or isinstance(self.max_attempts, bool) \
                or not 1 <= self.max_attempts <= 1000:
            raise InputError('max_attempts', self.max_attempts, 'must be an integer in [1, 1000]')
        if not isinstance(self.expert_laps, (int, float)) or not 0 < self.expert_laps <= 5:
            raise InputError('expert_laps', self.expert_laps, 'must be a number in (0, 5]')

    def to_dict(self):
        """Plain dict (lists for the ranges)."""
        return config_to_dict(self, tuples_as_lists=True)

    @classmethod
    def from_dict(cls, data):
        """Inverse of :meth:`to_dict`; unknown keys are an InputError naming them."""
        return config_from_dict(cls, data, 'generator config')


@dataclass
class GeneratedScene:
    """One generated scene: the Scene, its family, the generator seed and index, how many draws it
    took and what the expert check measured (None when the check was off)."""
    scene: Scene
    family: str
    seed: int
    index: int
    attempts: int = 1
    expert: dict = field(default=None)
    features: dict = field(default_factory=dict)


# ------------------------------------------------------------------------------------------- looks

# Ground palettes: (name, base RGB, per-channel jitter). Wide on purpose: grass of all seasons,
# sand, snow, dirt, clay and a dark paved lot.
_GROUNDS = (
    ('grass', (0.26, 0.46, 0.17), 0.08), ('dry_grass', (0.55, 0.50, 0.25), 0.08),
    ('sand', (0.76, 0.68, 0.48), 0.06), ('snow', (0.88, 0.90, 0.93), 0.04),
    ('dirt', (0.42, 0.32, 0.22), 0.06), ('clay', (0.62, 0.35, 0.22), 0.06),
    ('paved', (0.22, 0.22, 0.23), 0.04), ('moss', (0.18, 0.30, 0.16), 0.05),
)
_SKIES = (('clear', (0.55, 0.72, 0.92)), ('overcast', (0.68, 0.70, 0.72)),
          ('dusk', (0.85, 0.55, 0.38)), ('night', (0.03, 0.04, 0.08)), ('haze', (0.80, 0.80, 0.74)))
_LIGHT_TINTS = (('white', (1.0, 1.0, 1.0)), ('warm', (1.0, 0.82, 0.62)), ('cool', (0.78, 0.88, 1.0)),
                ('sodium', (1.0, 0.70, 0.35)))
_LINE_COLOURS = (('white', (0.95, 0.95, 0.95)), ('yellow', (0.95, 0.80, 0.15)),
                 ('orange', (0.95, 0.55, 0.10)), ('blue', (0.25, 0.45, 0.90)))


def _jitter(rng, color, amount):
    return [float(np.clip(c + rng.uniform(-amount, amount), 0.0, 1.0)) for c in color]


def _luma(c):
    return 0.299 * c[0] + 0.587 * c[1] + 0.114 * c[2]


def random_appearance(rng):
    """A dict for the scene's ``appearance`` section plus the marking keys of ``track`` (centre and
    edge lines), drawn from wide palettes. Returns (appearance, markings, description words)."""
    ground_name, ground, amount = _GROUNDS[rng.integers(len(_GROUNDS))]
    ground = _jitter(rng, ground, amount)
    # A road that differs from its ground in brightness (or is lined): otherwise nothing marks the lane.
    for _ in range(20):
        grey = rng.uniform(0.12, 0.62)
        road = _jitter(rng, (grey, grey, grey + rng.uniform(-0.03, 0.03)), 0.03)
        if abs(_luma(road) - _luma(ground)) > 0.08:
            break
    shoulder = _jitter(rng, [0.5 * (a + b) for a, b in zip(road, (0.48, 0.42, 0.30))], 0.06)
    sky_name, sky = _SKIES[rng.integers(len(_SKIES))]
    sky = _jitter(rng, sky, 0.04)
    night = sky_name == 'night'
    tint_name, tint = _LIGHT_TINTS[rng.integers(len(_LIGHT_TINTS))]
    elevation = rng.uniform(math.radians(25), math.radians(80))
    azimuth = rng.uniform(-math.pi, math.pi)
    direction = [math.cos(elevation) * math.cos(azimuth), math.cos(elevation) * math.sin(azimuth),
                 -math.sin(elevation)]
    light = {
        'direction': direction,
        'diffuse': rng.uniform(0.05, 0.2) if night else rng.uniform(0.3, 0.9),
        'ambient': rng.uniform(0.05, 0.15) if night else rng.uniform(0.15, 0.5),
        'specular': rng.uniform(0.0, 0.3),
        'headlight': rng.uniform(0.6, 1.0) if night else rng.uniform(0.0, 0.4),
        'color': list(tint),
    }
    fog = rng.uniform()
    if night or fog < 0.2:       # dense fog (or darkness closing in)
        start = rng.uniform(1.5, 5.0)
        end = start + rng.uniform(6.0, 15.0)
    else:
        start = rng.uniform(10.0, 40.0)
        end = min(130.0, start + rng.uniform(30.0, 90.0))
    exposure = rng.uniform(0.7, 1.0) if rng.uniform() < 0.4 else rng.uniform(1.0, 1.6)
    edge_name, edge_color = _LINE_COLOURS[0 if rng.uniform() < 0.7 else rng.integers(len(_LINE_COLOURS))]
    centre_name, centre_color = _LINE_COLOURS[rng.integers(len(_LINE_COLOURS))]
    markings = {
        'center_line': ['none', 'solid', 'dashed'][rng.integers(3)],
        'edge_lines': bool(rng.uniform() < 0.8),
        'line_width': rng.uniform(0.03, 0.08),
        'dash_length': rng.uniform(0.2, 1.0),
    }
    appearance = {
        'ground_color': ground, 'ground_noise': rng.uniform(0.02, 0.2),
        'ground_patch_scale': rng.uniform(0.5, 4.0),
        'road_color': road, 'road_noise': rng.uniform(0.0, 0.08),
        'shoulder_color': shoulder, 'line_color': list(edge_color), 'center_line_color': list(centre_color),
        'sky_color': sky, 'light': light, 'haze': {'start': start, 'end': end},
        'texture_seed': int(rng.integers(0, 2 ** 31 - 1)), 'exposure': exposure,
        'road_specular': 0.0 if rng.uniform() < 0.6 else rng.uniform(0.1, 0.6),
    }
    words = (f'{ground_name} ground, {sky_name} sky, {tint_name} light, '
             f'{"dense fog" if end < 25 else "clear air"}, exposure {exposure:.2f}, '
             f'centre line {markings["center_line"]} {centre_name}, '
             f'edge lines {edge_name if markings["edge_lines"] else "none"}')
    return appearance, markings, words


def _training_dict():
    return load_scene(TRAINING_SCENE).to_dict()


# ------------------------------------------------------------------------------------------- shapes

def _polygon(rng, cfg):
    """Corners of a star-shaped polygon (counter-clockwise): jittered angles, per-corner radial
    factors (some pulled in: opposite-hand corners), stretched along a random axis."""
    k = int(rng.integers(cfg.corners[0], cfg.corners[1] + 1))
    step = 2 * math.pi / k
    angles = np.arange(k) * step + rng.uniform(-0.3, 0.3, size=k) * step + rng.uniform(0, 2 * math.pi)
    extent = rng.uniform(*cfg.extent)
    factor = rng.uniform(0.85, 1.1, size=k)
    concave = rng.uniform(size=k) < cfg.concave_probability
    factor[concave] = rng.uniform(0.35, 0.6, size=int(concave.sum()))
    sx, sy = rng.uniform(*cfg.stretch), rng.uniform(*cfg.stretch)
    rot = rng.uniform(0, math.pi)
    pts = np.stack([extent * factor * np.cos(angles) * sx, extent * factor * np.sin(angles) * sy], 1)
    c, s = math.cos(rot), math.sin(rot)
    return pts @ np.array([[c, s], [-s, c]])  # (k, 2); a rotation keeps the winding


def _add_hairpin(rng, corners, radii, cfg):
    """Push a U-shaped finger out of (or into) the loop from the middle of its longest edge: two
    90-degree corners at the finger's base and two at its tip, the tip ones of radius r set 2.3 r apart
    so their arcs almost meet: a 180-degree hairpin (left-hand when the finger points out of a
    counter-clockwise loop, right-hand when it points in). Returns (corners, radii) with 4 more."""
    k = len(corners)
    edges = [float(np.linalg.norm(corners[(i + 1) % k] - corners[i])) for i in range(k)]
    i = int(np.argmax(edges))
    a, b = corners[i], corners[(i + 1) % k]
    e = (b - a) / edges[i]
    outward = np.array([e[1], -e[0]])  # right of travel: out of a counter-clockwise loop
    normal = outward if rng.uniform() < 0.5 else -outward
    r_tip = rng.uniform(cfg.corner_radius[0], min(cfg.hairpin_radius_max, cfg.corner_radius[1]))
    r_base = rng.uniform(cfg.corner_radius[0], min(2.5, cfg.corner_radius[1]))
    width = 2.3 * r_tip
    depth = (r_tip + r_base) / 0.9 + rng.uniform(0.5, 3.0)
    mid = a + e * edges[i] * rng.uniform(0.4, 0.6)
    m1, m2 = mid - e * width / 2, mid + e * width / 2
    finger = [m1, m1 + normal * depth, m2 + normal * depth, m2]
    corners = np.concatenate([corners[:i + 1], np.array(finger), corners[i + 1:]], axis=0)
    radii = list(radii[:i + 1]) + [r_base, r_tip, r_tip, r_base] + list(radii[i + 1:])
    return corners, radii


def _fit_radii(corners, radii, r_min):
    """Shrink corner radii until neighbouring fillets fit on their shared edge (10% kept straight).
    Returns the radii, or None when a corner would have to go below ``r_min`` or turns back."""
    k = len(corners)
    tan_half = []
    for i in range(k):
        u1 = corners[i] - corners[i - 1]
        u2 = corners[(i + 1) % k] - corners[i]
        u1, u2 = u1 / np.linalg.norm(u1), u2 / np.linalg.norm(u2)
        turn = math.atan2(u1[0] * u2[1] - u1[1] * u2[0], float(np.dot(u1, u2)))
        if abs(turn) > math.radians(165):  # a near reversal cannot be filleted into a drivable hairpin
            return None
        tan_half.append(math.tan(abs(turn) / 2))
    radii = list(radii)
    for _ in range(3):
        for i in range(k):
            j = (i + 1) % k
            edge = float(np.linalg.norm(corners[j] - corners[i]))
            need = radii[i] * tan_half[i] + radii[j] * tan_half[j]
            if need > 0.9 * edge:
                scale = 0.9 * edge / need
                radii[i] *= scale
                radii[j] *= scale
    if min(radii) < r_min:
        return None
    return radii


def _road_clearance_ok(track, clearance):
    """True when no two parts of the centre line closer than ``clearance`` (m) are far apart along
    the track. Along one curve of radius r a chord c spans at most (pi/2) c of arc, so a pair with
    more arc than that between them belongs to different parts of the road."""
    step = max(1, int(round(0.1 / (track.length / len(track.s)))))
    pts, s = track.points[::step], track.s[::step]
    d = np.sqrt(((pts[:, None, :] - pts[None, :, :]) ** 2).sum(-1))  # (M, M)
    arc = np.abs(s[:, None] - s[None, :])
    arc = np.minimum(arc, track.length - arc)
    return not bool(((d < clearance) & (arc > math.pi / 2 * d + 0.2)).any())


def _corner_features(track, straight_curvature=0.1):
    """Counts of left and right corners (runs of |curvature| above ``straight_curvature``), the
    tightest radius and the longest straight (m)."""
    k = track.curvature
    sign = np.where(k > straight_curvature, 1, np.where(k < -straight_curvature, -1, 0))
    runs = []
    start = int(np.argmax(sign == 0)) if (sign == 0).any() else 0
    rolled = np.roll(sign, -start)
    current, length = rolled[0], 0
    for v in rolled:
        if v == current:
            length += 1
        else:
            runs.append((current, length))
            current, length = v, 1
    runs.append((current, length))
    spacing = track.length / len(track.s)
    straights = [n * spacing for v, n in runs if v == 0]
    # hairpins: places where the track turns back on itself (> 150 degrees one way) within 6 m
    window = max(1, int(round(HAIRPIN_WINDOW_M / spacing)))
    turned = np.cumsum(np.concatenate([k, k[:window]])) * spacing
    back = np.abs(turned[window:] - turned[:-window]) > math.radians(150)  # (N,) per start sample
    hairpins = int(np.sum(back & ~np.roll(back, 1))) if not back.all() else 1
    return {'left_corners': sum(1 for v, _ in runs if v > 0),
            'right_corners': sum(1 for v, _ in runs if v < 0),
            'hairpins': hairpins,
            'min_radius_m': round(float(1.0 / max(np.abs(k).max(), 1e-6)), 2),
            'longest_straight_m': round(float(max(straights) if straights else 0.0), 2),
            'length_m': round(float(track.length), 2)}


def random_track(rng, cfg):
    """A ``track`` section dict for a new closed waypoint track, or None when this draw is invalid
    (fillets do not fit, or the road comes too close to itself)."""
    corners = _polygon(rng, cfg)
    r_min, r_max = cfg.corner_radius
    # log-uniform: tight and wide corners equally likely on a ratio scale
    radii = np.exp(rng.uniform(math.log(r_min), math.log(r_max), size=len(corners)))
    if rng.uniform() < cfg.hairpin_probability:
        corners, radii = _add_hairpin(rng, corners, radii, cfg)
    radii = _fit_radii(corners, radii, r_min)
    if radii is None:
        return None
    lane = rng.uniform(*cfg.lane_width)
    shoulder = rng.uniform(0.2, 0.4)
    track = {
        'shape': 'waypoints',
        'points': [[round(float(x), ROUND), round(float(y), ROUND)] for x, y in corners],
        'corner_radii': [round(float(r), ROUND) for r in radii],
        'direction': str(cfg.directions[rng.integers(len(cfg.directions))]),
        'lane_width': round(float(lane), ROUND),
        'shoulder_width': round(float(shoulder), ROUND),
    }
    # rounding may shift a fillet past its edge: the radii were fitted with 10% slack, so rarely
    try:
        built = Track(TrackSpec(**track))
    except SceneError:  # an invalid draw is simply redrawn
        return None
    if not _road_clearance_ok(built, lane + 2 * shoulder + 0.6):
        return None
    return track


def _shoulder_objects(rng, cfg, track_dict, palette_rng):
    """Solid obstacles on the shoulders (beyond the road edge) and visual distractors further out.
    Placed by lap fraction and lateral offset; ones that land on another part of the road are dropped
    by :func:`_objects_clear`."""
    half = track_dict['lane_width'] / 2 + track_dict.get('shoulder_width', 0.25)
    objects = []
    for _ in range(int(rng.integers(cfg.shoulder_obstacles[0], cfg.shoulder_obstacles[1] + 1))):
        size = rng.uniform(0.08, 0.2)
        side = 1 if rng.uniform() < 0.5 else -1
        objects.append({'at': rng.uniform(0, 1), 'offset': side * (half + size + rng.uniform(0.1, 0.5)),
                        'shape': 'box' if rng.uniform() < 0.5 else 'cylinder',
                        'size': [size, size, rng.uniform(0.1, 0.3)],
                        'color': _jitter(palette_rng, (0.8, 0.3, 0.1), 0.2), 'collide': True})
    for _ in range(int(rng.integers(cfg.distractors[0], cfg.distractors[1] + 1))):
        radius = rng.uniform(0.1, 0.35)
        side = 1 if rng.uniform() < 0.5 else -1
        objects.append({'at': rng.uniform(0, 1), 'offset': side * (half + radius + rng.uniform(0.6, 2.5)),
                        'shape': 'cylinder', 'size': [radius, radius, rng.uniform(0.3, 1.2)],
                        'color': [float(c) for c in palette_rng.uniform(0, 1, size=3)], 'collide': False})
    for o in objects:
        o['at'] = round(float(o['at']), ROUND)
        o['offset'] = round(float(o['offset']), ROUND)
        o['size'] = [round(float(v), ROUND) for v in o['size']]
        o['color'] = [round(float(v), ROUND) for v in o['color']]
    return objects


def _objects_clear(scene):
    """Drop objects whose footprint reaches any part of the road (on a winding track, a shoulder
    object of one section can sit on another section)."""
    track = Track(scene.track)
    half_road = scene.track.lane_width / 2 + scene.track.shoulder_width
    kept = []
    for o in scene.obstacles:
        x, y, heading = track.pose_at(o.at * track.length)
        x -= o.offset * math.sin(heading)
        y += o.offset * math.cos(heading)
        _, offset, _ = track.project(x, y)
        if abs(offset) >= half_road + max(o.size[0], o.size[1]) * 1.5 + 0.05:
            kept.append(o)
    scene.obstacles = kept
    return scene


# ------------------------------------------------------------------------------------------- checks

def expert_check(scene, laps=1.0):
    """Drive ``scene`` with the privileged expert (no rendering). Returns a dict: ``ok`` (a full lap
    with no lane departure, collision or off-road), laps, departures, collisions, max |offset| (m),
    mean speed (m/s)."""
    from liquid_controller.sim.expert import ExpertDriver
    from liquid_controller.sim.metrics import run_episode
    from liquid_controller.sim.world import DrivingWorld, WorldConfig
    world = DrivingWorld(WorldConfig(render=False))
    try:
        expert = ExpertDriver(scene, dt=world.frame_period)
        metrics = run_episode(world, lambda obs, truth: expert.command(truth), scene=scene, laps=laps,
                              max_seconds=200.0 * laps, stop_on_collision=True)
    finally:
        world.close()
    s = metrics.summary()
    road = scene.track.lane_width / 2 + scene.track.shoulder_width
    ok = (s['laps'] >= laps and s['lane_departures'] == 0 and s['collisions'] == 0
          and s['max_abs_lateral_offset_m'] < road)
    return {'ok': bool(ok), 'laps': round(s['laps'], 3), 'lane_departures': s['lane_departures'],
            'collisions': s['collisions'], 'max_abs_lateral_offset_m': round(s['max_abs_lateral_offset_m'], 3),
            'mean_speed_mps': round(s['mean_speed_mps'], 3)}


# ------------------------------------------------------------------------------------------- held out

def generator_seed_of(scene_name):
    """The generator seed in a generated scene's name (``both_s1003_007`` -> 1003), else None."""
    match = _GENERATED_NAME.match(str(scene_name))
    return int(match.group(2)) if match else None


def check_training_scene(scene):
    """Raise InputError when ``scene`` (a Scene) belongs to a held-out benchmark: its name carries a
    held-out generator seed, or its file lies in a shipped suite's folder. Training data recorded on
    it would make the benchmark measure memory instead of generalisation."""
    from pathlib import Path
    seed = generator_seed_of(scene.name)
    here = Path(__file__).resolve().parent
    source = Path(str(scene.source))
    in_suite = source.is_file() and any(here / d in source.resolve().parents
                                        for d in ('benchmark_suite', 'stress_suite'))
    if seed in HELDOUT_GENERATOR_SEEDS or in_suite:
        raise InputError('scene', f'{scene.name} ({scene.source})',
                         f'belongs to the held-out benchmark suite (generator seeds '
                         f'{sorted(HELDOUT_GENERATOR_SEEDS)}): never record training data on it')


# ------------------------------------------------------------------------------------------- driver

def _round_tree(value):
    if isinstance(value, float):
        return round(value, ROUND)
    if isinstance(value, list):
        return [_round_tree(v) for v in value]
    if isinstance(value, tuple):
        return [_round_tree(v) for v in value]
    if isinstance(value, dict):
        return {k: _round_tree(v) for k, v in value.items()}
    return value


def generate_scene(family, seed, index, config=None):
    """Scene ``index`` of ``family`` for generator ``seed``: a :class:`GeneratedScene`.

    Raises InputError for an unknown family or bad seed/index, SceneError when no draw passes the
    checks within ``config.max_attempts``.
    """
    cfg = config if config is not None else GeneratorConfig()
    if family not in FAMILIES:
        raise InputError('family', family, f'must be one of {list(FAMILIES)}')
    for name, value in (('seed', seed), ('index', index)):
        if not isinstance(value, (int, np.integer)) or isinstance(value, bool) or value < 0:
            raise InputError(name, value, 'must be a non-negative integer')
    name = f'{family}_s{seed}_{index:03d}'
    for attempt in range(cfg.max_attempts):
        rng = np.random.default_rng([_FAMILY_SALT[family], int(seed), int(index), attempt])
        # Separate streams for looks and geometry: the same seed gives the same looks whatever the
        # number of geometry draws it took.
        looks_rng = np.random.default_rng([_FAMILY_SALT[family], int(seed), int(index), 0, 1])
        base = _training_dict()
        data = {'name': name, 'description': '', 'track': base['track'],
                'appearance': base['appearance'], 'obstacles': [], 'camera': base['camera'],
                'noise': base['noise']}
        words = []
        if family in ('shape', 'both'):
            track = random_track(rng, cfg)
            if track is None:
                continue
            markings = {k: base['track'][k] for k in ('line_width', 'center_line', 'dash_length',
                                                      'edge_lines')}
            data['track'] = {**track, **markings}
            words.append(f'new {track["direction"]} track, lane {track["lane_width"]:.2f} m')
        else:
            words.append('training track')
        if family in ('appearance', 'both'):
            appearance, markings, look_words = random_appearance(looks_rng)
            data['appearance'] = appearance
            data['track'] = {**data['track'], **markings}
            words.append(look_words)
        else:
            words.append('training looks')
        data['obstacles'] = _shoulder_objects(rng, cfg, data['track'], looks_rng) \
            if family != 'appearance' else \
            [o for o in _shoulder_objects(rng, cfg, data['track'], looks_rng) if not o['collide']]
        data['description'] = f'Generated ({family}, seed {seed}, scene {index}): ' + '; '.join(words) + '.'
        data = _round_tree(data)
        try:
            scene = _objects_clear(Scene.from_dict(data, source=f'<generated {name}>'))
        except SceneError:
            continue
        features = _corner_features(Track(scene.track))
        check = None
        if cfg.expert_check:
            check = expert_check(scene, cfg.expert_laps)
            if not check['ok']:
                continue
        return GeneratedScene(scene=scene, family=family, seed=int(seed), index=int(index),
                              attempts=attempt + 1, expert=check, features=features)
    raise SceneError(f'{family} scene {index} of seed {seed}: no drivable track in '
                     f'{cfg.max_attempts} attempts; widen corner_radius or lower concave_probability')


def generate_scenes(family, count, seed, config=None, progress=False):
    """``count`` scenes of ``family`` for ``seed`` (list of :class:`GeneratedScene`). ``progress``
    shows a tqdm bar (each scene is checked by driving the expert for a lap: about a second)."""
    if not isinstance(count, int) or isinstance(count, bool) or not 1 <= count <= 1000:
        raise InputError('count', count, 'must be an integer in [1, 1000]')
    indices = range(count)
    if progress:
        from tqdm import tqdm
        indices = tqdm(indices, desc=f'{family} scenes', unit='scene')
    return [generate_scene(family, seed, i, config) for i in indices]


def scene_yaml(generated, command=None):
    """The scene as YAML text a person can read and edit: a comment header (family, seed, index,
    features, expert check, the command that made it) and the sections in the file format."""
    s = generated.scene
    data = _round_tree(s.to_dict())
    if s.track.shape == 'waypoints':
        # unused by a waypoint track: left out so the file shows only what shapes it
        for key in ('length', 'width') + (('corner_radius',) if s.track.corner_radii else ()):
            data['track'].pop(key, None)
    header = [f'# Generated scene {s.name}: family {generated.family}, generator seed {generated.seed}, '
              f'index {generated.index}.',
              f'# Track: {", ".join(f"{k} {v}" for k, v in generated.features.items())}.']
    if generated.expert is not None:
        e = generated.expert
        header.append(f'# Expert check: {e["laps"]} laps, {e["lane_departures"]} lane departures, '
                      f'max |offset| {e["max_abs_lateral_offset_m"]} m, mean speed {e["mean_speed_mps"]} m/s '
                      f'(draw {generated.attempts}).')
    if command:
        header.append(f'# Made by: {command}')
    header.append('# Edit freely: liquid_controller.sim.load_scene validates every key.')
    body = yaml.safe_dump(data, sort_keys=False, default_flow_style=None, width=110)
    return '\n'.join(header) + '\n' + body


def write_scene(generated, folder, command=None):
    """Write ``folder/NAME.yaml`` (see :func:`scene_yaml`); returns the path."""
    from pathlib import Path
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / f'{generated.scene.name}.yaml'
    path.write_text(scene_yaml(generated, command))
    return path


def contact_sheet(scenes, path, columns=6, scale=2, start=0.02):
    """Write a PNG with one camera frame per scene (the rover on the centre line at lap fraction
    ``start``), ``scale`` x enlarged, the scene name under each; returns the path."""
    from PIL import Image, ImageDraw

    from liquid_controller.sim.world import DrivingWorld, WorldConfig
    world = DrivingWorld(WorldConfig())
    try:
        frames = []
        for scene in scenes:
            scene = scene.scene if isinstance(scene, GeneratedScene) else load_scene(scene)
            frames.append((scene.name, world.reset(scene, seed=0, start=start).image))
    finally:
        world.close()
    h, w = frames[0][1].shape[:2]
    cell_w, cell_h, label = w * scale, h * scale, 14
    columns = max(1, min(columns, len(frames)))
    rows = math.ceil(len(frames) / columns)
    sheet = Image.new('RGB', (columns * cell_w, rows * (cell_h + label)), (255, 255, 255))
    draw = ImageDraw.Draw(sheet)
    for i, (name, image) in enumerate(frames):
        x, y = (i % columns) * cell_w, (i // columns) * (cell_h + label)
        sheet.paste(Image.fromarray(image).resize((cell_w, cell_h), Image.NEAREST), (x, y))
        draw.text((x + 2, y + cell_h + 1), name[:cell_w // 6], fill=(0, 0, 0))
    sheet.save(path)
    return path
