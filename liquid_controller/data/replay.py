"""Offline bag replay: a recorded rosbag2 -> the runtime Controller -> an output bag plus metrics.

ROS-free and deterministic (no DDS, no clocks: the "steady" time given to the controller is the frame
stamp), as fast as the controller runs. It feeds the controller exactly as the live node
(:mod:`liquid_controller.ros.controller_node`) does, so a replay predicts what the node commands:

- messages are taken in bag-time order and go through the node's frame assembler
  (runtime/frame_assembler.py): each camera frame gets the unused IMU samples stamped in
  (frame stamp - max_dt, frame stamp], later samples wait for the next frame;
- odometry speed and range are used as measured state when their stamp is within
  ``measurement_max_age`` of the frame (the node's rule);
- a frame that cannot be decoded, or a decode failure on IMU/odometry/range before it, makes the
  controller brake with a reason (``Controller.reject``), as in the node;
- the watchdog (``Controller.tick``) is not run: a gap in the bag shows up as a hidden-state reset
  (``reset_gap``), not as stale-input braking.

The output bag (rosbag2, MCAP by default) holds the input topics unchanged plus, under
``output_prefix`` (default ``/replay``): ``cmd_vel`` (geometry_msgs/TwistStamped, stamped with the
frame stamp), ``nominal_cmd_vel``, ``safety`` (diagnostic_msgs/DiagnosticStatus with the certificate)
``neurons`` (std_msgs/Float32MultiArray, labelled layout) and, when the model card holds OOD
statistics, ``ood`` (std_msgs/Float32, the OOD monitor's score), built by the same functions the node
publishes with (:mod:`liquid_controller.messages.diagnostics`, :func:`liquid_controller.messages.convert.encode_twist`).
Building those messages needs the ROS 2 message packages (the PyPI wheels), not a running ROS.

Faults in the bag (truncated or corrupt file, missing required topic, unknown message type on a topic
that is used, header stamps going backwards on a topic) raise :class:`ReplayError` naming the file and
the topic. Everything computed before the fault is kept: the output bag is finished and the partial
:class:`ReplayResult` is attached to the error (``error.result``).
"""
from __future__ import annotations

import json
import math
import time
from dataclasses import dataclass, field, fields
from pathlib import Path

import numpy as np

from liquid_controller.data.bag_source import open_bag_source, resolve_topic
from liquid_controller.config_base import check_known_keys, config_from_dict, config_to_dict
from liquid_controller.errors import BagError, InputError
from liquid_controller.runtime.ood import ood_summary
from liquid_controller.validation import check_int, check_number

IMAGE_TYPES = ('sensor_msgs/msg/Image', 'sensor_msgs/msg/CompressedImage')
TWIST_TYPES = ('geometry_msgs/msg/TwistStamped', 'geometry_msgs/msg/Twist')
EXPECTED_TYPES = {'imu': ('sensor_msgs/msg/Imu',), 'odom': ('nav_msgs/msg/Odometry',),
                  'range': ('sensor_msgs/msg/Range',), 'image': IMAGE_TYPES, 'command': TWIST_TYPES}
STAGES = ('decode', 'preprocess', 'policy', 'filter', 'write')


class ReplayError(BagError):
    """A fault in the bag stopped the replay. ``path``/``topic`` name where; ``result`` holds what was
    computed before the fault (its output bag, when one was requested, is finished and readable)."""

    def __init__(self, message, path=None, topic=None, result=None):
        super().__init__(message)
        self.path = path
        self.topic = topic
        self.result = result


@dataclass
class ReplayTopics:
    """Topic names read from the bag (relative names also match '/'-prefixed bag topics).

    ``image`` may be Image or CompressedImage; when it is absent and ``image + '/compressed'`` exists,
    that is used. ``odom``, ``range`` and ``command`` (the recorded command the metrics compare with)
    are optional: empty string = not used; when absent from the bag they are skipped with a note.
    """
    image: str = 'camera/image_raw'
    imu: str = 'imu/data'
    odom: str = 'odom'
    range: str = 'range'
    command: str = 'cmd_vel'

    def __post_init__(self):
        for f in fields(self):
            value = getattr(self, f.name)
            if not isinstance(value, str):
                raise InputError(f'topics.{f.name}', value, 'expected a topic name (string)')
        for name in ('image', 'imu'):
            if not getattr(self, name):
                raise InputError(f'topics.{name}', getattr(self, name), 'required topic name is empty')

    def to_dict(self):
        return config_to_dict(self)

    @classmethod
    def from_dict(cls, d):
        return config_from_dict(cls, d, 'topics')


@dataclass
class ReplayConfig:
    """How to replay. ``output_prefix``: namespace of the computed topics in the output bag;
    ``storage``: output bag storage ('mcap' or 'sqlite3'); ``copy_inputs``: copy every input topic into
    the output bag; ``max_frames``: stop after this many camera frames (0 = all);
    ``command_max_age``: a recorded command older than this (s) is not paired with a frame;
    ``max_stamp_disorder``: how far (s) a header stamp may go back on a topic before it is a fault
    (default 0: any backwards stamp stops the replay; drivers with jittery IMU stamps may need a few ms,
    which are then sorted like the node does)."""
    topics: ReplayTopics = field(default_factory=ReplayTopics)
    output_prefix: str = '/replay'
    storage: str = 'mcap'
    copy_inputs: bool = True
    max_frames: int = 0
    command_max_age: float = 0.5
    max_stamp_disorder: float = 0.0
    frame_id: str = 'base_link'

    def __post_init__(self):
        if isinstance(self.topics, dict):
            self.topics = ReplayTopics.from_dict(self.topics)
        if not isinstance(self.topics, ReplayTopics):
            raise InputError('topics', self.topics, 'expected a ReplayTopics or a dict')
        if not isinstance(self.output_prefix, str) or not self.output_prefix.startswith('/') \
                or self.output_prefix.endswith('/') and self.output_prefix != '/':
            raise InputError('output_prefix', self.output_prefix, "expected an absolute namespace like '/replay'")
        if self.storage not in ('mcap', 'sqlite3'):
            raise InputError('storage', self.storage, "expected 'mcap' or 'sqlite3'")
        self.max_frames = check_int('max_frames', self.max_frames, 0)  # 0 = all
        self.command_max_age = check_number('command_max_age', self.command_max_age, 0.0, low_open=True)
        self.max_stamp_disorder = check_number('max_stamp_disorder', self.max_stamp_disorder, 0.0)

    def topic(self, name):
        """Full name of an output topic, e.g. topic('cmd_vel') -> '/replay/cmd_vel'."""
        return f"{self.output_prefix.rstrip('/')}/{name}"

    def to_dict(self):
        d = config_to_dict(self)
        d['topics'] = self.topics.to_dict()
        return d

    @classmethod
    def from_dict(cls, d):
        check_known_keys(d, {f.name for f in fields(cls)}, 'replay config')
        d = dict(d)
        if 'topics' in d:
            d['topics'] = ReplayTopics.from_dict(d['topics'])
        return cls(**d)


@dataclass
class ReplayResult:
    """Per-frame outputs of a replay (N frames, S neurons) plus bookkeeping."""
    bag: str
    out: str | None
    stamps: np.ndarray          # (N,) frame header stamps, s
    command: np.ndarray         # (N, 2) filtered command (v m/s, w rad/s)
    nominal: np.ndarray         # (N, 2) policy reference command
    recorded: np.ndarray        # (N, 2) bag's recorded command held at the frame stamp (NaN: none)
    neurons: np.ndarray         # (N, S) float32 hidden state after each frame
    status: list                # (N,) controller status strings
    intervened: np.ndarray      # (N,) bool: the safety filter changed the command
    timings: dict               # stage -> (N,) seconds
    ood: np.ndarray = field(default_factory=lambda: np.zeros(0))  # (N,) OOD score (nan: unavailable)
    wall_s: float = 0.0
    bag_seconds: float = 0.0    # span of the replayed frame stamps
    notes: list = field(default_factory=list)
    error: str | None = None

    @property
    def frames(self):
        return int(self.stamps.shape[0])

    def metrics(self):
        """Agreement with the recorded command, filter interventions and the time budget."""
        m = {'frames': self.frames, 'bag_seconds': self.bag_seconds, 'wall_s': self.wall_s,
             'frames_per_s': self.frames / self.wall_s if self.wall_s > 0 else float('nan'),
             'realtime_factor': self.bag_seconds / self.wall_s if self.wall_s > 0 and self.bag_seconds > 0
             else float('nan'),
             'interventions': int(self.intervened.sum()),
             'intervention_rate': float(self.intervened.mean()) if self.frames else float('nan'),
             'status_counts': {s: self.status.count(s) for s in sorted(set(self.status))},
             'ood': ood_summary(self.ood)}
        paired = np.isfinite(self.recorded).all(axis=1) if self.frames else np.zeros(0, bool)
        m['compared'] = int(paired.sum())
        for i, name in enumerate(('v', 'w')):
            a, b = self.command[paired, i], self.recorded[paired, i]
            m[f'mae_{name}'] = float(np.abs(a - b).mean()) if a.size else float('nan')
            m[f'corr_{name}'] = _correlation(a, b)
        stage = {}
        for k, v in self.timings.items():
            v = np.asarray(v, dtype=np.float64)
            if v.size:
                stage[k] = {'mean_ms': float(v.mean() * 1e3), 'p50_ms': float(np.median(v) * 1e3),
                            'p99_ms': float(np.percentile(v, 99) * 1e3),
                            'share': float(v.sum() / self.wall_s) if self.wall_s > 0 else float('nan')}
        m['stages'] = stage
        return m

    def format_metrics(self):
        """Human-readable summary (what `liquid-controller replay` prints)."""
        m = self.metrics()
        lines = [f"frames {m['frames']}  bag {m['bag_seconds']:.2f} s  wall {m['wall_s']:.2f} s  "
                 f"{m['frames_per_s']:.1f} frames/s  ({m['realtime_factor']:.1f}x real time)"]
        if m['compared']:
            lines.append(f"vs recorded command ({m['compared']} frames): MAE v {m['mae_v']:.4f} m/s, "
                         f"w {m['mae_w']:.4f} rad/s; correlation v {_fmt(m['corr_v'])}, w {_fmt(m['corr_w'])}")
        else:
            lines.append('no recorded command to compare with')
        lines.append(f"filter interventions {m['interventions']} ({100 * m['intervention_rate']:.1f}%); "
                     f"statuses {m['status_counts']}")
        o = m['ood']
        lines.append('OOD score: unavailable (the model card has no OOD statistics)' if not o['available']
                     else f"OOD score: mean {o['mean']:.2f}, max {o['max']:.2f}; above 1 on {o['frames_over']} "
                          f"frames ({100 * o['fraction_over']:.1f}%)")
        lines.append('time budget per frame (ms):  stage    mean    p50    p99   share')
        for k in STAGES:
            if k in m['stages']:
                s = m['stages'][k]
                lines.append(f"  {k:<10} {s['mean_ms']:7.3f} {s['p50_ms']:6.3f} {s['p99_ms']:6.3f} "
                             f"{100 * s['share']:6.1f}%")
        lines += [f'note: {n}' for n in self.notes]
        if self.error:
            lines.append(f'ERROR (results up to the fault kept): {self.error}')
        return '\n'.join(lines)

    def save_npz(self, path):
        """Arrays for golden files and plots (np.load gives them back; see load_result_arrays)."""
        np.savez_compressed(path, stamps=self.stamps, command=self.command, nominal=self.nominal,
                            recorded=self.recorded, neurons=self.neurons, intervened=self.intervened,
                            status=np.asarray(self.status, dtype=str), ood=self.ood)


def _fmt(x):
    return 'n/a' if x is None or not math.isfinite(x) else f'{x:.3f}'


def _correlation(a, b):
    """Pearson correlation; NaN when either series is constant or shorter than 2."""
    if a.size < 2 or np.std(a) == 0 or np.std(b) == 0:
        return float('nan')
    return float(np.corrcoef(a, b)[0, 1])


def _load_controller(model, settings):
    from liquid_controller.runtime.controller import Controller
    from liquid_controller.runtime.policy_backend import load_runtime_model
    loaded = load_runtime_model(model, settings['backend'])   # torch or onnx (settings 'backend')
    return Controller(loaded, settings.controller_config(), settings.safety_config())


def _select_topics(source, config, path):
    """Map roles to bag topics; raise ReplayError for a missing required topic or a wrong type."""
    t = config.topics
    available = source.topics
    chosen, notes = {}, []
    image = resolve_topic(t.image, available) or resolve_topic(t.image + '/compressed', available)
    if image is None:
        raise ReplayError(f'{path}: camera topic {t.image!r} not in bag (it has {sorted(available)})',
                          path=str(path), topic=t.image)
    chosen['image'] = image
    imu = resolve_topic(t.imu, available)
    if imu is None:
        raise ReplayError(f'{path}: IMU topic {t.imu!r} not in bag (it has {sorted(available)})',
                          path=str(path), topic=t.imu)
    chosen['imu'] = imu
    for role in ('odom', 'range', 'command'):
        name = getattr(t, role)
        if not name:
            continue
        found = resolve_topic(name, available)
        if found is None:
            notes.append(f'{role} topic {name!r} not in bag: not used')
        else:
            chosen[role] = found
    for role, topic in chosen.items():
        msgtype = available[topic].msgtype
        if msgtype not in EXPECTED_TYPES[role]:
            raise ReplayError(f'{path}: topic {topic!r} has message type {msgtype!r}; the {role} topic '
                              f'must be one of {list(EXPECTED_TYPES[role])}', path=str(path), topic=topic)
    return chosen, notes


class _Replayer:
    """One replay run (state shared by the per-message handlers)."""

    def __init__(self, bag, controller, config, out, settings):
        from rosbags.typesys import Stores, get_typestore

        from liquid_controller.messages import diagnostics
        self.bag = Path(bag)
        self.ctl = controller
        self.settings = settings
        self.config = config
        self.out = Path(out) if out is not None else None
        self.typestore = get_typestore(Stores.ROS2_KILTED)
        self.labels = diagnostics.neuron_labels(controller.neuron_groups, controller.neurons().size)
        self.frames = dict(bag_ns=[], stamps=[], command=[], nominal=[], neurons=[], status=[],
                           intervened=[], ood=[])
        self.timings = {k: [] for k in STAGES}
        self.recorded = []   # (stamp, v, w)
        self.last_stamp = {}  # topic -> last header stamp (order check)
        self.writer = None
        self.out_topics = {}
        self.copied = set()
        self.notes = []
        self.last_topic = None

    # ---------------------------------------------------------------------------- output bag
    def open_writer(self, source, chosen):
        from liquid_controller.data.bag import BagWriter
        if self.out is None:
            return
        self.writer = BagWriter(self.out, storage=self.config.storage)
        copied = set()
        if self.config.copy_inputs:
            for name, info in source.topics.items():
                qos = info.offered_qos[0] if info.offered_qos else None
                try:
                    self.writer.add_topic(name, info.msgtype, qos=qos)
                    copied.add(name)
                except BagError as exc:  # unknown type on a topic replay does not use: not copied
                    self.notes.append(f'input topic {name!r} not copied: {exc}')
        self.copied = copied
        c = self.config
        self.out_topics = {'cmd_vel': c.topic('cmd_vel'), 'nominal': c.topic('nominal_cmd_vel'),
                           'safety': c.topic('safety'), 'neurons': c.topic('neurons')}
        self.writer.add_topic(self.out_topics['cmd_vel'], 'geometry_msgs/msg/TwistStamped')
        self.writer.add_topic(self.out_topics['nominal'], 'geometry_msgs/msg/TwistStamped')
        self.writer.add_topic(self.out_topics['safety'], 'diagnostic_msgs/msg/DiagnosticStatus', qos='state')
        self.writer.add_topic(self.out_topics['neurons'], 'std_msgs/msg/Float32MultiArray', qos='state')
        if self.ctl.ood is not None:
            self.out_topics['ood'] = c.topic('ood')
            self.writer.add_topic(self.out_topics['ood'], 'std_msgs/msg/Float32', qos='state')
        self.writer.set_custom_data('liquid_controller.replay', json.dumps(
            {'source_bag': str(self.bag), 'model': str(getattr(self.ctl.model, 'json_path', '')),
             'model_untrained': bool(self.ctl.card.untrained), 'config': self.config.to_dict(),
             'controller_config': self.ctl.config.to_dict()}))

    def write_outputs(self, bag_ns, out):
        from liquid_controller.messages import convert, diagnostics
        if self.writer is None:
            return
        stamp = out.stamp if math.isfinite(out.stamp) else bag_ns * 1e-9
        fid = self.config.frame_id
        w = self.writer
        w.write(self.out_topics['cmd_vel'], bag_ns,
                convert.encode_twist(out.command[0], out.command[1], stamp=stamp, frame_id=fid))
        if not out.safe or out.certificate is not None:  # same rule as the node
            w.write(self.out_topics['nominal'], bag_ns,
                    convert.encode_twist(out.nominal[0], out.nominal[1], stamp=stamp, frame_id=fid))
        w.write(self.out_topics['safety'], bag_ns, diagnostics.safety_status('controller: safety', out))
        if out.neurons is not None:
            w.write(self.out_topics['neurons'], bag_ns, diagnostics.neurons_message(out.neurons, self.labels))
        if 'ood' in self.out_topics and not math.isnan(out.ood_score):
            w.write(self.out_topics['ood'], bag_ns, diagnostics.ood_message(out.ood_score))

    # ---------------------------------------------------------------------------- inputs
    def check_order(self, topic, stamp):
        last = self.last_stamp.get(topic)
        if last is not None and stamp < last - self.config.max_stamp_disorder:
            raise ReplayError(f'{self.bag}: topic {topic!r}: header stamp {stamp:.9f} s is earlier than '
                              f'the previous one ({last:.9f} s): stamps out of order', path=str(self.bag),
                              topic=topic)
        self.last_stamp[topic] = stamp if last is None else max(last, stamp)

    def decode(self, topic, msgtype, raw, bag_ns):
        try:
            return self.typestore.deserialize_cdr(raw, msgtype)
        except Exception as exc:  # arbitrary bytes: any failure is a corrupt record
            raise ReplayError(f'{self.bag}: topic {topic!r}: corrupt {msgtype} message at bag time '
                              f'{bag_ns} ns: {type(exc).__name__}: {exc}', path=str(self.bag),
                              topic=topic) from exc

    def on_frame(self, topic, msgtype, msg, bag_ns, asm):
        from liquid_controller.messages import convert
        from liquid_controller.runtime.controller import MeasuredState
        t0 = time.perf_counter()
        try:
            stamp = convert.stamp_to_sec(msg.header.stamp, 'header.stamp')
        except (InputError, AttributeError) as exc:
            out = self.ctl.reject(f'image: {exc}', now=bag_ns * 1e-9)
            return self.record(bag_ns, out, time.perf_counter() - t0)
        self.check_order(topic, stamp)
        try:
            if msgtype == 'sensor_msgs/msg/CompressedImage':
                frame = convert.decode_compressed_image(msg)
            else:
                frame = convert.decode_image(msg)
        except InputError as exc:  # like the node: brake, keep the IMU samples for the next frame
            out = self.ctl.reject(f'image: {exc}', now=stamp)
            return self.record(bag_ns, out, time.perf_counter() - t0)
        decode_s = time.perf_counter() - t0
        try:
            inputs = asm.assemble(stamp)
        except InputError as exc:       # clock skew between the camera and IMU / odometry
            return self.record(bag_ns, self.ctl.reject(str(exc), now=stamp), decode_s)
        if inputs.error is not None:    # a sensor reading rejected since the last frame
            return self.record(bag_ns, self.ctl.reject(inputs.error, now=stamp), decode_s)
        measured = MeasuredState(speed=inputs.speed, range=inputs.range)
        out = self.ctl.step(frame, stamp, inputs.imu, measured, now=stamp)
        return self.record(bag_ns, out, decode_s)

    def record(self, bag_ns, out, decode_s):
        t0 = time.perf_counter()
        self.write_outputs(bag_ns, out)
        f = self.frames
        f['bag_ns'].append(bag_ns)
        f['stamps'].append(out.stamp if math.isfinite(out.stamp) else bag_ns * 1e-9)
        f['command'].append(np.asarray(out.command, dtype=np.float64))
        f['nominal'].append(np.asarray(out.nominal, dtype=np.float64))
        f['neurons'].append(out.neurons if out.neurons is not None else self.ctl.neurons())
        f['status'].append(out.status)
        f['intervened'].append(bool(out.intervened))
        f['ood'].append(float(out.ood_score))
        self.timings['decode'].append(decode_s)
        for k in ('preprocess', 'policy', 'filter'):
            self.timings[k].append(float(out.timings.get(k, 0.0)))
        self.timings['write'].append(time.perf_counter() - t0)

    def on_other(self, role, topic, msg, bag_ns, asm):
        from liquid_controller.messages import convert
        try:
            if role == 'imu':
                reading = convert.decode_imu(msg)
                self.check_order(topic, reading.stamp)
                asm.add_imu(reading.stamp, reading.angular_velocity, reading.linear_acceleration)
            elif role == 'odom':
                reading = convert.decode_odometry(msg)
                self.check_order(topic, reading.stamp)
                asm.set_reading('odom', reading.stamp, float(reading.linear[0]))
            elif role == 'range':
                stamp, value = convert.decode_range(msg)
                self.check_order(topic, stamp)
                asm.set_reading('range', stamp, value)
            elif role == 'command':
                stamp, v, w = convert.decode_twist(msg)
                self.recorded.append((bag_ns * 1e-9 if stamp is None else stamp, v, w))
        except InputError as exc:
            if role in ('imu', 'odom', 'range'):  # the node brakes on the next frame; so do we
                asm.report_error(f'{role}: {exc}')

    # ---------------------------------------------------------------------------- main loop
    def consume(self, source, roles, chosen, progress):
        """Feed the bag's messages (bag-time order) to the controller; copy them to the output bag."""
        from tqdm import tqdm
        config = self.config
        # the node's frame assembler; "arrival" is the bag's receive time, as it was on the robot
        bag_time = [0.0]
        asm = self.settings.frame_assembler(clock=lambda: bag_time[0])
        total = source.topics[chosen['image']].count
        if config.max_frames:
            total = min(total, config.max_frames) if total >= 0 else config.max_frames
        bar = tqdm(total=total if total >= 0 else None, unit='frame', desc='replay', disable=not progress)
        try:
            for topic, bag_ns, msgtype, raw in source.messages(None):
                self.last_topic = topic
                if self.writer is not None and topic in self.copied:
                    self.writer.write(topic, bag_ns, raw)
                role = roles.get(topic)
                if role is None:
                    continue
                bag_time[0] = bag_ns * 1e-9
                msg = self.decode(topic, msgtype, raw, bag_ns)
                if role == 'image':
                    self.on_frame(topic, msgtype, msg, bag_ns, asm)
                    bar.update(1)
                    if config.max_frames and len(self.frames['stamps']) >= config.max_frames:
                        break
                else:
                    self.on_other(role, topic, msg, bag_ns, asm)
        finally:
            bar.close()

    # ---------------------------------------------------------------------------- result
    def result(self, wall_s, error=None):
        f = self.frames
        n = len(f['stamps'])
        stamps = np.asarray(f['stamps'], dtype=np.float64).reshape(n)
        S = self.ctl.neurons().size
        result = ReplayResult(
            bag=str(self.bag), out=str(self.out) if self.out is not None else None, stamps=stamps,
            command=np.asarray(f['command'], dtype=np.float64).reshape(n, 2),
            nominal=np.asarray(f['nominal'], dtype=np.float64).reshape(n, 2),
            recorded=self._recorded_at(stamps),
            neurons=np.asarray(f['neurons'], dtype=np.float32).reshape(n, S),
            status=list(f['status']), intervened=np.asarray(f['intervened'], dtype=bool).reshape(n),
            timings={k: np.asarray(v, dtype=np.float64) for k, v in self.timings.items()},
            ood=np.asarray(f['ood'], dtype=np.float64).reshape(n),
            wall_s=wall_s, bag_seconds=float(stamps.max() - stamps.min()) if n > 1 else 0.0,
            notes=list(self.notes), error=error)
        return result

    def _recorded_at(self, stamps):
        """Recorded command held (zero-order) at each frame stamp, NaN when none within max age."""
        out = np.full((stamps.shape[0], 2), np.nan)
        if not self.recorded or not stamps.size:
            return out
        rec = np.asarray(sorted(self.recorded, key=lambda r: r[0]), dtype=np.float64)  # (M, 3)
        idx = np.searchsorted(rec[:, 0], stamps + 1e-6, side='right') - 1  # latest with stamp <= frame
        ok = idx >= 0
        age = np.where(ok, stamps - rec[np.clip(idx, 0, None), 0], np.inf)
        ok &= age <= self.config.command_max_age
        out[ok] = rec[idx[ok], 1:3]
        return out


def replay_bag(bag, model, out=None, config=None, settings=None, progress=False):
    """Replay ``bag`` through a Controller built from ``model``; return a :class:`ReplayResult`.

    Args:
        bag: rosbag2 directory (MCAP or sqlite3); a damaged MCAP file is read up to the damage.
        model: model file path / name (see runtime.model_file.load_model) or a LoadedModel.
        out: output bag directory to create (must not exist), or None for no output bag.
        config: :class:`ReplayConfig` (topic names, output prefix and storage, frame limit).
        settings: :class:`liquid_controller.runtime.settings.Settings`, the node's parameters (e.g.
            ``load_settings('config/controller.yaml')``); None: the defaults.
        progress: show a tqdm progress bar over camera frames.

    Raises ReplayError (a BagError) on a fault in the bag, with the partial result attached and the
    output bag finished; BagError when the bag cannot be opened at all; ModelFileError for the model.
    """
    config = config if config is not None else ReplayConfig()
    if not isinstance(config, ReplayConfig):
        raise InputError('config', config, 'expected a ReplayConfig')
    if out is not None and Path(out).exists():
        raise InputError('out', str(out), 'output bag directory already exists')
    from liquid_controller.runtime.settings import Settings
    settings = settings if settings is not None else Settings()
    source = open_bag_source(bag)
    try:
        controller = _load_controller(model, settings)
    except BaseException:
        source.close()
        raise
    run = _Replayer(bag, controller, config, out, settings)
    if source.salvaged:
        run.notes.append(f'bag is damaged ({source.cause}); reading the MCAP stream up to the damage')
    t_start = time.perf_counter()
    error = None
    try:
        chosen, notes = _select_topics(source, config, bag)
        run.notes += notes
        roles = {topic: role for role, topic in chosen.items()}
        run.open_writer(source, chosen)
        run.consume(source, roles, chosen, progress)
    except ReplayError as exc:
        error = exc
    except BagError as exc:  # corrupt record met while reading: name the last topic read
        error = ReplayError(f'{exc} (last message read before the fault: topic {run.last_topic!r})',
                            path=str(bag), topic=run.last_topic)
        error.__cause__ = exc
    finally:
        source.close()
        if run.writer is not None:
            run.writer.close()
    result = run.result(time.perf_counter() - t_start, error=str(error) if error else None)
    if error is not None:
        error.result = result
        raise error
    return result
