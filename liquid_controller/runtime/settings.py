"""The controller's settings, defined once for every caller (ROS-free).

One table, :data:`PARAMETERS`, names every parameter of the controller node with its default, range or
choices and description; the ``safety.*`` parameters come from :class:`SafetyConfig`'s fields. The
defaults of the Controller's and the frame assembler's parameters are taken from
:class:`ControllerConfig` and :mod:`liquid_controller.runtime.frame_assembler`, so they live in one
place. ``config/controller.yaml`` documents the same table (a test checks it).

:class:`Settings` holds one value for every parameter and builds what the runtime needs from them
(:class:`ControllerConfig`, :class:`SafetyConfig`, a :class:`FrameAssembler`). The node builds it from
its ROS parameters; offline replay, closed-loop evaluation and explanation load it from the node's
parameter file with :func:`load_settings`, so they run the Controller exactly as the node does.
"""
from __future__ import annotations

import dataclasses
import difflib
import math
from pathlib import Path

from liquid_controller.errors import InputError
from liquid_controller.validation import check_numbers
from liquid_controller.runtime import frame_assembler
from liquid_controller.runtime.controller import OOD_ACTIONS, ControllerConfig
from liquid_controller.runtime.policy_backend import BACKENDS
from liquid_controller.safety.config import SafetyConfig

MODES = ('drive', 'shadow')
TRANSPORTS = ('raw', 'compressed')
RELIABILITIES = ('auto', 'reliable', 'best_effort')
LIVE_PARAMETERS = ('mode', 'publish_neurons')   # may change while the node is configured


@dataclasses.dataclass(frozen=True)
class Param:
    """One parameter: default, description, numeric ``range`` (low, high[, step]) or ``choices``."""
    default: object
    description: str
    range: tuple | None = None
    choices: tuple | None = None


def _ctl(name):
    return ControllerConfig.__dataclass_fields__[name].default


PARAMETERS = {
    'model': Param('', 'Model name in models/ or path to NAME.json; empty = best available model'),
    'backend': Param('auto', 'Policy engine: torch (DrivingPolicy), onnx (an exported graph in ONNX '
                             'Runtime, no torch; the model is an export folder, its NAME.onnx.json, '
                             'or a model whose NAME.onnx.json lies next to its card) or auto (torch '
                             'when importable, else onnx); see docs/edge.md',
                     choices=BACKENDS),
    'mode': Param('drive', 'drive: publish cmd_vel; shadow: compute and publish ~/nominal_cmd_vel only',
                  choices=MODES),
    'image_transport': Param('raw', 'raw: sensor_msgs/Image on camera/image_raw; compressed: '
                                    'sensor_msgs/CompressedImage on camera/image_raw/compressed',
                             choices=TRANSPORTS),
    'image_reliability': Param('auto', 'Camera subscription QoS reliability: reliable (delivers large '
                                       'frames on one host; needs a reliable publisher), best_effort '
                                       '(matches any publisher) or auto (reliable, switching to '
                                       'best_effort when a best-effort camera publisher appears)',
                               choices=RELIABILITIES),
    'image_depth': Param(1, 'Camera subscription QoS depth (keep last); 1 = never process a stale frame',
                         (1, 100)),
    'image_height': Param(64, 'Configured camera image height (px); must match the model card', (1, 4096)),
    'image_width': Param(128, 'Configured camera image width (px); must match the model card', (1, 4096)),
    'resize_images': Param(_ctl('resize_images'),
                           'Area-resample frames whose size differs from the model input'),
    'enable_stamped_cmd_vel': Param(True, 'Publish geometry_msgs/TwistStamped (true) or Twist (false)'),
    'frame_id': Param('base_link', 'frame_id of the published commands'),
    'use_odometry': Param(True, 'Subscribe odom and give its speed to the safety filter'),
    'use_range': Param(False, 'Subscribe range (sensor_msgs/Range) as forward obstacle distance'),
    'use_scan': Param(False, 'Subscribe scan (sensor_msgs/LaserScan): nearest return within '
                             'scan_half_angle of straight ahead is the obstacle distance'),
    'scan_half_angle': Param(0.3, 'Half width (rad) of the forward sector of the scan', (0.01, 3.1416)),
    'scan_pose': Param([0.0, 0.0, 0.0], "The laser scanner's pose in base_link: [x m, y m, yaw rad]; "
                                        "scan points are moved into base_link and the obstacle distance "
                                        "is measured from base_link's origin (tf2 is not used: it has "
                                        'no PyPI wheel)'),
    'require_imu': Param(_ctl('require_imu'), 'Brake when no IMU sample arrived within imu_timeout'),
    'max_dt': Param(_ctl('max_dt'), 'Largest dt (s) fed to the network; larger frame gaps are clipped',
                    (0.001, 5.0)),
    'reset_gap': Param(_ctl('reset_gap'), 'A frame-stamp gap above this (s) resets the hidden state',
                       (0.001, 60.0)),
    'input_timeout': Param(_ctl('input_timeout'),
                           'Watchdog: no valid frame for this long (s, steady clock) -> brake to zero',
                           (0.01, 10.0)),
    'imu_timeout': Param(_ctl('imu_timeout'), 'No IMU sample for this long (s, by stamps) -> bad input',
                         (0.001, 10.0)),
    'measurement_max_age': Param(frame_assembler.MEASUREMENT_MAX_AGE,
                                 'Odometry / range / scan readings further than this (s, by stamps) '
                                 'from the camera frame are not used', (0.001, 10.0)),
    'max_clock_skew': Param(frame_assembler.MAX_CLOCK_SKEW,
                            'A live IMU or odometry stream stamped further than this (s) from the '
                            'camera is bad input (clock skew)', (0.01, 3600.0)),
    'max_linear_accel': Param(_ctl('max_linear_accel'),
                              'Rate limit of the nominal linear velocity (m/s^2)', (0.01, 100.0)),
    'max_angular_accel': Param(_ctl('max_angular_accel'),
                               'Rate limit of the nominal angular velocity (rad/s^2)', (0.01, 100.0)),
    'brake_decel': Param(_ctl('brake_decel'),
                         'Braking deceleration (m/s^2) for stops; 0 = the safety filter limit',
                         (0.0, 100.0)),
    'brake_angular_decel': Param(_ctl('brake_angular_decel'),
                                 'Yaw-rate braking (rad/s^2) for stops; 0 = max_angular_accel',
                                 (0.0, 100.0)),
    'stop_speed': Param(_ctl('stop_speed'), 'While braking, |v| and |w| below this become exactly zero',
                        (0.0, 1.0)),
    'use_predicted_lane': Param(_ctl('use_predicted_lane'),
                                "Give the policy's predicted lane offset / heading error to the safety "
                                "filter's lane rows"),
    'ood_action': Param(_ctl('ood_action'),
                        "What to do when the OOD monitor's score (~/ood) stays above 1 (beyond the "
                        'calibrated quantile of training frames) for ood_hold s: none (report only), '
                        'slow (cap the reference speed at ood_speed) or brake (brake to zero)',
                        choices=OOD_ACTIONS),
    'ood_hold': Param(_ctl('ood_hold'), 'Seconds the OOD score must stay above 1 before ood_action acts',
                      (0.0, 60.0)),
    'ood_speed': Param(_ctl('ood_speed'), 'Speed cap (m/s) of ood_action slow', (0.0, 20.0)),
    'watchdog_period': Param(0.02, 'Watchdog timer period (s, steady clock)', (0.001, 1.0)),
    'diagnostics_period': Param(1.0, 'Period of /diagnostics (s, steady clock)', (0.05, 60.0)),
    'publish_neurons': Param(True, 'Publish the hidden state on ~/neurons'),
    'attention_rate_hz': Param(0.0, 'Largest rate (Hz, steady clock) of the ~/attention overlay image, '
                                    'computed in a worker thread of its own; 0 = off', (0.0, 30.0)),
}
# Ranges of the numeric safety.* parameters (SafetyConfig also checks their relations).
SAFETY_RANGES = {
    'v_min': (-20.0, 0.0), 'v_max': (0.001, 20.0), 'w_max': (0.001, 20.0), 'accel_max': (0.001, 50.0),
    'decel_max': (0.001, 50.0), 'a_lat_max': (0.001, 100.0), 'control_period': (0.001, 1.0),
    'obstacle_margin': (0.0, 10.0), 'lane_half_width': (0.001, 100.0), 'lane_margin': (0.0, 10.0),
    'num_barrier_params': (2, 4, 2), 'soft_penalty': (1e-6, 1e9), 'solver_tol': (1e-15, 1e-3),
    'speed_tolerance': (0.0, 10.0), 'yaw_rate_tolerance': (0.0, 10.0),
    'max_abs_lateral_accel': (0.001, 1000.0), 'max_abs_lane_offset': (0.001, 1000.0),
    'max_abs_nominal': (1.0, 1e6),
}


def safety_parameters():
    """``safety.<field>`` -> Param for every SafetyConfig field (lists as lists of floats)."""
    out = {}
    defaults = SafetyConfig()
    for f in dataclasses.fields(SafetyConfig):
        value = getattr(defaults, f.name)
        text = f'safety filter: {f.name} (see liquid_controller.safety.SafetyConfig)'
        if isinstance(value, (list, tuple)):
            out[f'safety.{f.name}'] = Param([float(v) for v in value], text + '; checked with the others')
        else:
            out[f'safety.{f.name}'] = Param(value, text, SAFETY_RANGES.get(f.name))
    return out


def all_parameters():
    """Every parameter of the controller node: PARAMETERS plus the safety.* ones."""
    return {**PARAMETERS, **safety_parameters()}


class Settings:
    """One value for every parameter (``settings['max_dt']``); validated on construction.

    ``values``: a flat mapping ``name -> value`` (``safety.<field>`` for the safety filter); missing
    names take their defaults, an unknown name is an InputError naming it and the closest known name.
    """

    def __init__(self, values=None, source='parameters'):
        table = all_parameters()
        values = dict(values or {})
        unknown = [_unknown(name, table) for name in values if name not in table]
        if unknown:
            raise InputError(source, '; '.join(unknown), 'unknown parameter names')
        self.values = {name: values.get(name, p.default) for name, p in table.items()}
        for name, p in table.items():
            _check(name, self.values[name], p, source)
        # build once to validate the relations between values (e.g. max_dt <= reset_gap)
        self.controller_config()
        self.safety_config()

    def __getitem__(self, name):
        return self.values[name]

    def with_values(self, **overrides):
        """A new Settings: these values with ``overrides`` (e.g. ``backend='onnx'`` from a command
        line flag), validated like any other."""
        return Settings({**self.values, **overrides}, source='parameters with overrides')

    def controller_config(self):
        """The :class:`ControllerConfig` of these settings."""
        names = {f.name for f in dataclasses.fields(ControllerConfig)} - {'num_threads'}
        return ControllerConfig(**{n: self.values[n] for n in names})

    def safety_config(self):
        """The :class:`SafetyConfig` of these settings."""
        prefix = 'safety.'
        return SafetyConfig(**{n[len(prefix):]: (tuple(v) if isinstance(v, list) else v)
                               for n, v in self.values.items() if n.startswith(prefix)})

    def scan_pose(self):
        """The scanner's (x, y, yaw) in base_link, validated (InputError naming scan_pose)."""
        return check_numbers('scan_pose', tuple(self.values['scan_pose']), 3, -100.0, 100.0)

    def frame_assembler(self, **kwargs):
        """A new :class:`FrameAssembler` with these settings (``kwargs``: e.g. ``clock``)."""
        return frame_assembler.FrameAssembler(self.values['max_dt'],
                                              measurement_max_age=self.values['measurement_max_age'],
                                              max_clock_skew=self.values['max_clock_skew'], **kwargs)


def load_settings(path=None):
    """:class:`Settings` from a controller parameter file (config/controller.yaml format: one node
    entry with ``ros__parameters``, safety values nested under ``safety``); None: the package's file."""
    import yaml

    from liquid_controller.paths import config_file
    path = Path(path) if path is not None else config_file('controller.yaml')
    try:
        doc = yaml.safe_load(path.read_text())
        entries = [v['ros__parameters'] for v in doc.values() if isinstance(v, dict)
                   and isinstance(v.get('ros__parameters'), dict)]
    except (OSError, yaml.YAMLError, AttributeError, TypeError) as exc:
        raise InputError('params file', str(path), f'cannot read it: {exc}') from exc
    if len(entries) != 1:
        raise InputError('params file', str(path),
                         f'expected one node entry with ros__parameters, found {len(entries)}')
    values = _flatten(entries[0])
    values.pop('use_sim_time', None)   # a ROS node parameter, not a controller setting
    return Settings(values, source=f'params file {path}')


def _flatten(params, prefix=''):
    out = {}
    for key, value in params.items():
        if isinstance(value, dict):
            out.update(_flatten(value, f'{prefix}{key}.'))
        else:
            out[f'{prefix}{key}'] = value
    return out


def _unknown(name, table):
    close = difflib.get_close_matches(name, table, n=1)
    return f'{name!r} is not a parameter' + (f' (did you mean {close[0]!r}?)' if close else '')


def _check(name, value, p, source):
    """Type, range and choices of one value (the node's descriptors enforce the same)."""
    default = p.default
    if p.choices is not None and value not in p.choices:
        raise InputError(f'{source}: {name}', value, f'must be one of {p.choices}')
    if isinstance(default, bool):
        ok = isinstance(value, bool)
    elif isinstance(default, int):
        ok = isinstance(value, int) and not isinstance(value, bool)
    elif isinstance(default, float):
        ok = isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)
    elif isinstance(default, list):
        ok = isinstance(value, (list, tuple))
    else:
        ok = isinstance(value, type(default))
    if not ok:
        raise InputError(f'{source}: {name}', value, f'must be a {type(default).__name__}')
    if p.range is not None and not p.range[0] <= value <= p.range[1]:
        raise InputError(f'{source}: {name}', value, f'must be in [{p.range[0]}, {p.range[1]}]')
