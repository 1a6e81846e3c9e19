"""Scenes: YAML data files describing a track and its appearance, parsed by a strict validator.

A scene file has the top-level sections ``name``, ``description``, ``track``, ``appearance``,
``obstacles``, ``camera`` and ``noise`` (all but ``name`` and ``track`` optional). Every key is checked:
an unknown key or an invalid value raises :class:`~liquid_controller.errors.SceneError` whose message
names the file and the dotted key (``track.lane_width``). Shipped scenes live in
``liquid_controller/sim/scenes/NAME.yaml``; a user adds a scene by writing such a file and passing its
path to :func:`load_scene`.

Example (the shipped ``summer`` scene)::

    name: summer
    track: {shape: rounded_rectangle, length: 16.0, width: 10.0, corner_radius: 3.0, lane_width: 1.0}
    appearance: {ground_color: [0.25, 0.45, 0.18], sky_color: [0.55, 0.72, 0.92]}
"""
import dataclasses
import math
import threading
from dataclasses import dataclass, field, fields
from pathlib import Path

import yaml

from liquid_controller.errors import InputError, SceneError
from liquid_controller.validation import check_number

SCENES_DIR = Path(__file__).resolve().parent / 'scenes'

TRACK_SHAPES = ('rounded_rectangle', 'ellipse', 'waypoints')
TRACK_DIRECTIONS = ('ccw', 'cw')
CENTER_LINE_STYLES = ('none', 'solid', 'dashed')
OBSTACLE_SHAPES = ('box', 'cylinder')


class _Invalid(Exception):
    """Raised inside the validators; :func:`parse_scene` turns it into a SceneError with the file."""

    def __init__(self, key, message):
        super().__init__(message)
        self.key = key
        self.message = message


def _check(condition, key, value, reason):
    if not condition:
        raise _Invalid(key, f'{key}={value!r}: {reason}')


def _number(value, key, low=-math.inf, high=math.inf, low_open=False):
    """A finite real number in [low, high] (or (low, high] when low_open): the shared rule
    (liquid_controller/validation.py), reported as a scene error naming the key."""
    try:
        return check_number(key, value, low, high, low_open=low_open)
    except InputError as exc:
        raise _Invalid(key, f'{key}={value!r}: {exc.reason}') from None


def _color(value, key):
    """An RGB colour: three numbers in [0, 1]."""
    _check(isinstance(value, (list, tuple)) and len(value) == 3, key, value,
           'must be a list of 3 numbers in [0, 1] (RGB)')
    return tuple(_number(c, f'{key}[{i}]', 0.0, 1.0) for i, c in enumerate(value))


def _vector(value, key, n):
    _check(isinstance(value, (list, tuple)) and len(value) == n, key, value,
           f'must be a list of {n} numbers')
    return tuple(_number(c, f'{key}[{i}]') for i, c in enumerate(value))


def _choice(value, key, options):
    _check(value in options, key, value, f'must be one of {list(options)}')
    return value


# The dotted key prefix of the section being parsed by from_dict (for error messages); None when a
# section is constructed directly in code.
_parsing = threading.local()


class _Section:
    """Mixin: validation in ``__post_init__`` plus a strict ``from_dict`` (unknown keys rejected).

    Constructed directly, an invalid value raises SceneError naming ``KEY.field``; through
    ``from_dict`` the error names the full dotted key (``obstacles[2].size``) and the file.
    """
    KEY = 'section'

    def __post_init__(self):
        prefix = getattr(_parsing, 'prefix', None)
        try:
            self.validate(prefix or self.KEY)
        except _Invalid as exc:
            if prefix is not None:
                raise  # from_dict's caller adds the file name
            raise SceneError(exc.message) from None

    @classmethod
    def from_dict(cls, data, prefix):
        if data is None:
            data = {}
        _check(isinstance(data, dict), prefix, data, 'must be a mapping')
        names = {f.name for f in fields(cls)}
        for key in data:
            if key not in names:
                raise _Invalid(f'{prefix}.{key}',
                               f'unknown key {prefix}.{key!s} (allowed: {", ".join(sorted(names))})')
        previous = getattr(_parsing, 'prefix', None)
        _parsing.prefix = prefix
        try:
            return cls(**data)
        finally:
            _parsing.prefix = previous

    def to_dict(self):
        """Plain dict (lists, floats) that :meth:`from_dict` reads back to an equal object."""
        def plain(value):
            if isinstance(value, tuple):
                return [plain(v) for v in value]
            if isinstance(value, list):
                return [plain(v) for v in value]
            if dataclasses.is_dataclass(value):
                return value.to_dict()
            return value
        return {f.name: plain(getattr(self, f.name)) for f in fields(self)}


@dataclass
class TrackSpec(_Section):
    """Centre line and road geometry (metres).

    shape: 'rounded_rectangle' (length, width, corner_radius: the centre line's extent and corner
    radius), 'ellipse' (length, width: the axes' full lengths) or 'waypoints' (points: closed polygon
    of [x, y] corners, rounded with corner_radius, or per corner with corner_radii: one radius per
    point, so one track can mix hairpins and sweepers). direction: 'ccw' (default: the rover drives
    counter-clockwise, the loop's corners turn left) or 'cw' (clockwise: right-hand loop), whatever
    order the points are listed in. edge_lines: paint the two lane edge lines (default true);
    center_line: 'none', 'solid' or 'dashed'.
    """
    KEY = 'track'
    shape: str = 'rounded_rectangle'
    length: float = 16.0
    width: float = 10.0
    corner_radius: float = 3.0
    points: list = None
    corner_radii: list = None
    direction: str = 'ccw'
    lane_width: float = 1.0
    line_width: float = 0.05
    center_line: str = 'dashed'
    edge_lines: bool = True
    dash_length: float = 0.4
    shoulder_width: float = 0.25

    def validate(self, p):
        _choice(self.shape, f'{p}.shape', TRACK_SHAPES)
        _choice(self.direction, f'{p}.direction', TRACK_DIRECTIONS)
        _check(isinstance(self.edge_lines, bool), f'{p}.edge_lines', self.edge_lines,
               'must be true or false')
        self.length = _number(self.length, f'{p}.length', 2.0, 200.0)
        self.width = _number(self.width, f'{p}.width', 2.0, 200.0)
        self.corner_radius = _number(self.corner_radius, f'{p}.corner_radius', 0.5, 50.0)
        self.lane_width = _number(self.lane_width, f'{p}.lane_width', 0.5, 5.0)
        self.line_width = _number(self.line_width, f'{p}.line_width', 0.01, 0.3)
        _choice(self.center_line, f'{p}.center_line', CENTER_LINE_STYLES)
        self.dash_length = _number(self.dash_length, f'{p}.dash_length', 0.05, 5.0)
        self.shoulder_width = _number(self.shoulder_width, f'{p}.shoulder_width', 0.0, 2.0)
        if self.shape == 'rounded_rectangle':
            _check(2 * self.corner_radius <= min(self.length, self.width), f'{p}.corner_radius',
                   self.corner_radius, 'must be at most half of min(length, width)')
        if self.shape == 'waypoints':
            pts = self.points
            _check(isinstance(pts, list) and len(pts) >= 3, f'{p}.points', pts,
                   'must be a list of at least 3 [x, y] points for shape waypoints')
            self.points = [list(_vector(q, f'{p}.points[{i}]', 2)) for i, q in enumerate(pts)]
            if self.corner_radii is not None:
                radii = self.corner_radii
                _check(isinstance(radii, list) and len(radii) == len(pts), f'{p}.corner_radii', radii,
                       f'must be a list of {len(pts)} radii (one per point)')
                self.corner_radii = [_number(r, f'{p}.corner_radii[{i}]', 0.5, 50.0)
                                     for i, r in enumerate(radii)]
        else:
            _check(self.points is None, f'{p}.points', self.points,
                   'only allowed with shape: waypoints')
            _check(self.corner_radii is None, f'{p}.corner_radii', self.corner_radii,
                   'only allowed with shape: waypoints')
        # The rover must fit the curve: the inner lane edge needs a positive radius.
        for key, radius in self._radii_by_key(p):
            _check(radius > self.lane_width / 2 + self.shoulder_width or self.shape == 'ellipse',
                   key, radius, 'must exceed lane_width/2 + shoulder_width')

    def _radii_by_key(self, p):
        """(dotted key, radius) of every corner's fillet radius."""
        if self.shape == 'waypoints' and self.corner_radii is not None:
            return [(f'{p}.corner_radii[{i}]', r) for i, r in enumerate(self.corner_radii)]
        return [(f'{p}.corner_radius', self.corner_radius)]

    def radii(self):
        """Fillet radius of each waypoint corner (m): corner_radii, else corner_radius for every point."""
        if self.corner_radii is not None:
            return list(self.corner_radii)
        return [self.corner_radius] * len(self.points or [])


@dataclass
class LightSpec(_Section):
    """Directional sun light: direction points from the light toward the scene (world frame).

    diffuse, specular: the sun's intensities; ambient: uniform light; headlight: a light at the
    camera. color: RGB tint of all of them (white [1, 1, 1] by default; [1.0, 0.8, 0.6] is a warm
    evening light). The renderer clamps the summed light at 1 per channel before it multiplies the
    surface colours, so lights can darken a scene but never make it brighter than its colours: use
    ``appearance.exposure`` for that.
    """
    KEY = 'appearance.light'
    direction: tuple = (0.3, 0.2, -1.0)
    diffuse: float = 0.7
    ambient: float = 0.35
    specular: float = 0.05
    headlight: float = 0.25
    color: tuple = (1.0, 1.0, 1.0)

    def validate(self, p):
        self.direction = _vector(self.direction, f'{p}.direction', 3)
        _check(self.direction[2] < 0, f'{p}.direction', self.direction,
               'z must be negative (light shines downward)')
        for name in ('diffuse', 'ambient', 'specular', 'headlight'):
            setattr(self, name, _number(getattr(self, name), f'{p}.{name}', 0.0, 1.0))
        self.color = _color(self.color, f'{p}.color')


@dataclass
class HazeSpec(_Section):
    """Distance fog blending toward the sky colour between start and end (metres)."""
    KEY = 'appearance.haze'
    start: float = 30.0
    end: float = 120.0

    def validate(self, p):
        self.start = _number(self.start, f'{p}.start', 0.0, 1000.0)
        # The sky walls sit beyond 130 m and take the fog colour only when the fog ends before them.
        self.end = _number(self.end, f'{p}.end', 0.0, 130.0)
        _check(self.end > self.start, f'{p}.end', self.end, 'must be greater than start')


@dataclass
class AppearanceSpec(_Section):
    """Colours (RGB in [0, 1]) and procedural texture parameters.

    exposure: camera exposure gain on every surface colour (ground texture, sky, obstacles) before
    lighting, clipped at white; 1 leaves the colours as written, > 1 gives scenes brighter than any
    light setting can (see LightSpec). road_specular: specular reflectance of the track surface in
    [0, 1] (a wet or polished road shows the sun's highlight); the ground texture is one material, so
    the shoulders and the grass painted next to the road share it.
    """
    KEY = 'appearance'
    ground_color: tuple = (0.25, 0.45, 0.18)
    ground_noise: float = 0.08
    ground_patch_scale: float = 1.5
    road_color: tuple = (0.32, 0.32, 0.34)
    road_noise: float = 0.03
    shoulder_color: tuple = (0.45, 0.40, 0.30)
    line_color: tuple = (0.95, 0.95, 0.95)
    center_line_color: tuple = (0.95, 0.80, 0.15)
    sky_color: tuple = (0.55, 0.72, 0.92)
    light: LightSpec = field(default_factory=LightSpec)
    haze: HazeSpec = field(default_factory=HazeSpec)
    texture_resolution: float = 0.02
    texture_seed: int = 0
    exposure: float = 1.0
    road_specular: float = 0.0

    @classmethod
    def from_dict(cls, data, prefix):
        _check(data is None or isinstance(data, dict), prefix, data, 'must be a mapping')
        data = dict(data or {})
        data['light'] = LightSpec.from_dict(data.get('light'), f'{prefix}.light')
        data['haze'] = HazeSpec.from_dict(data.get('haze'), f'{prefix}.haze')
        return super().from_dict(data, prefix)

    def validate(self, p):
        _check(isinstance(self.light, LightSpec), f'{p}.light', self.light, 'must be a LightSpec')
        _check(isinstance(self.haze, HazeSpec), f'{p}.haze', self.haze, 'must be a HazeSpec')
        for name in ('ground_color', 'road_color', 'shoulder_color', 'line_color', 'center_line_color',
                     'sky_color'):
            setattr(self, name, _color(getattr(self, name), f'{p}.{name}'))
        self.ground_noise = _number(self.ground_noise, f'{p}.ground_noise', 0.0, 0.5)
        self.road_noise = _number(self.road_noise, f'{p}.road_noise', 0.0, 0.5)
        self.ground_patch_scale = _number(self.ground_patch_scale, f'{p}.ground_patch_scale', 0.1, 20.0)
        self.texture_resolution = _number(self.texture_resolution, f'{p}.texture_resolution',
                                          0.005, 0.1)
        self.exposure = _number(self.exposure, f'{p}.exposure', 0.25, 4.0)
        self.road_specular = _number(self.road_specular, f'{p}.road_specular', 0.0, 1.0)
        _check(isinstance(self.texture_seed, int) and not isinstance(self.texture_seed, bool)
               and self.texture_seed >= 0, f'{p}.texture_seed', self.texture_seed,
               'must be a non-negative integer')


@dataclass
class ObstacleSpec(_Section):
    """A static obstacle placed relative to the track.

    at: fraction of the lap along the centre line in [0, 1); offset: lateral offset from the centre
    line (m, left positive); size: box half-sizes (x, y, z) or cylinder (radius, radius, half-height).
    collide: true (default) for a solid obstacle (touching it is a collision); false for a visual
    distractor (a sign, a bush) the rover passes through and the range sensor still sees.
    """
    KEY = 'obstacle'
    at: float = 0.0
    offset: float = 0.0
    shape: str = 'box'
    size: tuple = (0.15, 0.15, 0.15)
    color: tuple = (0.8, 0.3, 0.1)
    collide: bool = True

    def validate(self, p):
        self.at = _number(self.at, f'{p}.at', 0.0, 1.0)
        _check(self.at < 1.0, f'{p}.at', self.at, 'must be < 1')
        self.offset = _number(self.offset, f'{p}.offset', -20.0, 20.0)
        _choice(self.shape, f'{p}.shape', OBSTACLE_SHAPES)
        self.size = _vector(self.size, f'{p}.size', 3)
        for i, s in enumerate(self.size):
            _number(s, f'{p}.size[{i}]', 0.01, 5.0)
        self.color = _color(self.color, f'{p}.color')
        _check(isinstance(self.collide, bool), f'{p}.collide', self.collide, 'must be true or false')


@dataclass
class CameraSpec(_Section):
    """Forward camera mounting on the rover (base_link frame) and optics."""
    KEY = 'camera'
    x: float = 0.12
    height: float = 0.22
    pitch_deg: float = 12.0
    fovy_deg: float = 55.0

    def validate(self, p):
        self.x = _number(self.x, f'{p}.x', -0.3, 0.3)
        self.height = _number(self.height, f'{p}.height', 0.05, 1.5)
        self.pitch_deg = _number(self.pitch_deg, f'{p}.pitch_deg', -10.0, 60.0)
        self.fovy_deg = _number(self.fovy_deg, f'{p}.fovy_deg', 10.0, 120.0)


@dataclass
class NoiseSpec(_Section):
    """Additive zero-mean Gaussian sensor noise (standard deviations, SI units; image in 0..255)."""
    KEY = 'noise'
    image_std: float = 0.0
    gyro_std: float = 0.0
    accel_std: float = 0.0
    odom_v_std: float = 0.0
    odom_w_std: float = 0.0
    range_std: float = 0.0

    def validate(self, p):
        for f in fields(self):
            setattr(self, f.name, _number(getattr(self, f.name), f'{p}.{f.name}', 0.0, 100.0))


@dataclass
class Scene:
    """A validated scene. Build one with :func:`load_scene` or :meth:`Scene.from_dict`."""
    name: str
    track: TrackSpec
    appearance: AppearanceSpec = field(default_factory=AppearanceSpec)
    obstacles: list = field(default_factory=list)
    camera: CameraSpec = field(default_factory=CameraSpec)
    noise: NoiseSpec = field(default_factory=NoiseSpec)
    description: str = ''
    source: str = '<dict>'

    TOP_KEYS = ('name', 'description', 'track', 'appearance', 'obstacles', 'camera', 'noise')

    def __post_init__(self):
        for key, kind in (('track', TrackSpec), ('appearance', AppearanceSpec),
                          ('camera', CameraSpec), ('noise', NoiseSpec)):
            if not isinstance(getattr(self, key), kind):
                raise SceneError(f'{self.source}: {key} must be a {kind.__name__}')
        if not isinstance(self.name, str) or not self.name.strip():
            raise SceneError(f'{self.source}: name={self.name!r}: must be a non-empty string')
        if not all(isinstance(o, ObstacleSpec) for o in self.obstacles):
            raise SceneError(f'{self.source}: obstacles must be ObstacleSpec items')

    @classmethod
    def from_dict(cls, data, source='<dict>'):
        """Validate a parsed scene mapping; raises SceneError naming ``source`` and the key."""
        try:
            return cls._from_dict(data, source)
        except _Invalid as exc:
            raise SceneError(f'{source}: {exc.message}') from None

    @classmethod
    def _from_dict(cls, data, source):
        _check(isinstance(data, dict), '<top level>', type(data).__name__, 'must be a mapping')
        for key in data:
            if key not in cls.TOP_KEYS:
                raise _Invalid(key, f'unknown key {key!s} (allowed: {", ".join(cls.TOP_KEYS)})')
        for key in ('name', 'track'):
            if key not in data:
                raise _Invalid(key, f'missing required key {key}')
        name = data['name']
        _check(isinstance(name, str) and name.strip() != '', 'name', name, 'must be a non-empty string')
        description = data.get('description', '') or ''
        _check(isinstance(description, str), 'description', description, 'must be a string')
        obstacles = data.get('obstacles') or []
        _check(isinstance(obstacles, list), 'obstacles', obstacles, 'must be a list')
        return cls(
            name=name,
            description=description,
            track=TrackSpec.from_dict(data['track'], 'track'),
            appearance=AppearanceSpec.from_dict(data.get('appearance'), 'appearance'),
            obstacles=[ObstacleSpec.from_dict(o, f'obstacles[{i}]') for i, o in enumerate(obstacles)],
            camera=CameraSpec.from_dict(data.get('camera'), 'camera'),
            noise=NoiseSpec.from_dict(data.get('noise'), 'noise'),
            source=source,
        )

    def to_dict(self):
        """Plain dict in the file format; ``Scene.from_dict(s.to_dict())`` equals ``s``."""
        return {
            'name': self.name,
            'description': self.description,
            'track': self.track.to_dict(),
            'appearance': self.appearance.to_dict(),
            'obstacles': [o.to_dict() for o in self.obstacles],
            'camera': self.camera.to_dict(),
            'noise': self.noise.to_dict(),
        }

    def cache_key(self):
        """A hashable key of everything that changes the compiled model (geometry and looks)."""
        d = self.to_dict()
        d.pop('noise')  # noise is applied at run time, not compiled into the model
        return yaml.safe_dump(d, sort_keys=True)


def list_scenes():
    """Names of the shipped scenes (files in liquid_controller/sim/scenes), sorted."""
    return sorted(p.stem for p in SCENES_DIR.glob('*.yaml'))


def load_scene(name_or_path):
    """Load and validate a scene by shipped name (``'summer'``) or by path to a YAML file.

    A ``Scene`` instance is returned unchanged. Raises SceneError (a ValueError) for an unknown name,
    unreadable file, YAML syntax error, unknown key or invalid value; the message names the file and key.
    """
    if isinstance(name_or_path, Scene):
        return name_or_path
    if not isinstance(name_or_path, (str, Path)) or str(name_or_path).strip() == '':
        raise SceneError(f'scene={name_or_path!r}: must be a scene name or a path to a YAML file')
    text = str(name_or_path)
    path = Path(text)
    if not (text.endswith(('.yaml', '.yml')) or '/' in text or path.is_file()):
        path = SCENES_DIR / f'{text}.yaml'
        if not path.is_file():
            raise SceneError(f'scene={text!r}: no shipped scene of that name '
                             f'(known: {", ".join(list_scenes())}); pass a path to use your own file')
    if not path.is_file():
        raise SceneError(f'{path}: scene file not found')
    try:
        data = yaml.safe_load(path.read_text())
    except yaml.YAMLError as exc:
        raise SceneError(f'{path}: YAML syntax error: {exc}') from None
    except OSError as exc:
        raise SceneError(f'{path}: cannot read: {exc}') from None
    return Scene.from_dict(data, source=str(path))
