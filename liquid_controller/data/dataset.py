"""Training data from rosbag2 bags: read, align, cache (``prepare``), split, and serve sequences.

Works with any rosbag2 bag (MCAP or sqlite3) that has a camera topic (sensor_msgs/Image or
CompressedImage), an IMU topic (sensor_msgs/Imu) and a command topic (geometry_msgs/TwistStamped or
Twist); topic names are settings, so ``ros2 bag record`` bags from a real robot work as well as the
simulator's. When the simulator's ground-truth topic is present its lane offset and heading error
become auxiliary targets.

Pipeline::

    prepare(bags, cache_dir, DatasetConfig)    # once: decode + align -> cache (.npz + index.json)
    episodes = load_episodes(prepared)         # arrays only
    train, val, split = split_episodes(episodes, val_fraction, seed)
    SequenceDataset(train, seq_len, ...)       # windows of consecutive frames with real dt

Alignment rules are documented in :mod:`liquid_controller.data.align`; the image and IMU features are
computed by :mod:`liquid_controller.runtime.preprocess`, the same code the robot runs.
"""
import math
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
from torch.utils.data import Dataset

from liquid_controller.data import cache
from liquid_controller.data.align import COMMAND_ALIGNMENTS, Streams, TimedArray, align_streams
from liquid_controller.config_base import config_from_dict, config_to_dict
from liquid_controller.errors import BagError, InputError
from liquid_controller.validation import check_choice, check_int, check_number

TIME_SOURCES = ('header', 'log')
IMAGE_TYPES = ('sensor_msgs/msg/Image', 'sensor_msgs/msg/CompressedImage')
COMMAND_TYPES = ('geometry_msgs/msg/TwistStamped', 'geometry_msgs/msg/Twist')
TRUTH_FIELDS = ('lateral_offset', 'heading_error')
# Floor on the IMU feature standard deviation used for normalisation: an axis that never moves in the
# training data (gyro x on a flat track) must not have its noise amplified into a large input.
IMU_STD_FLOOR = 0.05


@dataclass
class DatasetConfig:
    """Which topics to read and how to align them. Validated on construction.

    Topic names may be relative ('cmd_vel') or absolute ('/robot1/cmd_vel'); a relative name also matches
    its '/'-prefixed form in the bag (``ros2 bag record`` stores absolute names).
    ``truth_topic``: the simulator's ground truth (std_msgs/Float64MultiArray labelled
    lateral_offset, heading_error, ...); used when present in a bag, '' to ignore it.
    ``imu_topic`` '' trains without an IMU: the features are zeros, as the runtime Controller feeds
    with ``require_imu`` false.
    ``time_source``: 'header' (message header stamps; unstamped Twist uses the bag time) or 'log'
    (bag receive times for every topic, for robots whose drivers stamp badly).
    """

    camera_topic: str = 'camera/image_raw'
    imu_topic: str = 'imu/data'
    command_topic: str = 'cmd_vel'
    truth_topic: str = 'sim/ground_truth'
    image_height: int = 64
    image_width: int = 128
    time_source: str = 'header'
    command_alignment: str = 'hold'
    max_command_age: float = 0.5
    max_frame_gap: float = 0.5
    min_segment_frames: int = 2

    def __post_init__(self):
        for name in ('camera_topic', 'command_topic'):
            value = getattr(self, name)
            if not isinstance(value, str) or not value.strip('/'):
                raise InputError(f'dataset.{name}', value, 'expected a non-empty topic name')
        for name in ('imu_topic', 'truth_topic'):
            if not isinstance(getattr(self, name), str):
                raise InputError(f'dataset.{name}', getattr(self, name), "expected a topic name or ''")
        for name, high in (('image_height', 1024), ('image_width', 1024), ('min_segment_frames', math.inf)):
            setattr(self, name, check_int(f'dataset.{name}', getattr(self, name), 1, high))
        check_choice('dataset.time_source', self.time_source, TIME_SOURCES)
        check_choice('dataset.command_alignment', self.command_alignment, COMMAND_ALIGNMENTS)
        for name in ('max_command_age', 'max_frame_gap'):  # seconds
            setattr(self, name, check_number(f'dataset.{name}', getattr(self, name), 0.0, 60.0, low_open=True))

    def to_dict(self):
        return config_to_dict(self)

    @classmethod
    def from_dict(cls, data):
        return config_from_dict(cls, data, 'dataset')


# ---------------------------------------------------------------------------------------- bag reading

def find_bags(paths):
    """Bag directories from ``paths``: a folder holding metadata.yaml is a bag; any other folder is
    searched recursively for bags. Returns sorted, de-duplicated absolute Paths; BagError when none."""
    found = []
    for p in paths:
        p = Path(p).expanduser()
        if not p.exists():
            raise BagError(f'{p}: no such bag or folder')
        if (p / 'metadata.yaml').is_file():
            found.append(p.resolve())
        elif p.is_dir():
            found += [m.parent.resolve() for m in p.rglob('metadata.yaml')]
        else:
            raise BagError(f'{p}: not a rosbag2 directory (no metadata.yaml)')
    found = sorted(set(found))
    if not found:
        raise BagError(f'no rosbag2 bags (folders with metadata.yaml) under {[str(p) for p in paths]}')
    return found


def _resolve(topics, name):
    """Name of ``name`` in a bag's {topic: (type, count)} or None ('a/b' also finds '/a/b')."""
    if name in topics:
        return name
    if not name.startswith('/') and '/' + name in topics:
        return '/' + name
    return None


def decode_truth(msg):
    """Ground truth message (std_msgs/Float64MultiArray labelled by encode_float_array) -> (2,)
    lane offset m, heading error rad."""
    from liquid_controller.messages.convert import decode_float_array
    values = decode_float_array(msg)
    missing = [k for k in TRUTH_FIELDS if k not in values]
    if missing:
        raise InputError('ground truth labels', sorted(values), f'missing {missing}')
    return np.array([values[k] for k in TRUTH_FIELDS], dtype=np.float64)


def _resize_frame(frame, height, width):
    """(h, w, 3) uint8 -> (height, width, 3) uint8 with the runtime's resampling (area)."""
    if frame.shape[:2] == (height, width):
        return frame
    from liquid_controller.runtime.preprocess import image_to_tensor
    frame = frame if frame.flags.writeable else frame.copy()  # torch.from_numpy warns on read-only
    x = image_to_tensor(frame, height, width, resize=True)[0]                   # (3, H, W) in [0, 1]
    return (x.permute(1, 2, 0).numpy() * 255.0 + 0.5).clip(0, 255).astype(np.uint8)  # (H, W, 3)


def read_bag_streams(bag_path, config: DatasetConfig, progress=False):
    """Decode a bag's camera, IMU, command (and ground truth) topics -> (Streams, info dict).

    Raises BagError for a missing topic or unreadable bag and InputError for a message of the wrong
    type or with bad content (naming the topic and the field).
    """
    from liquid_controller.data.bag import BagReader
    from liquid_controller.messages import convert

    info = {'bag': str(bag_path)}
    with BagReader(bag_path) as reader:
        topics = reader.topics
        names = {}
        for role, want, types in (('camera', config.camera_topic, IMAGE_TYPES),
                                  ('imu', config.imu_topic, ('sensor_msgs/msg/Imu',)),
                                  ('command', config.command_topic, COMMAND_TYPES)):
            if not want:
                continue                                   # no IMU: features stay zero
            name = _resolve(topics, want)
            if name is None:
                raise BagError(f'{bag_path}: {role} topic {want!r} not in bag; it has {sorted(topics)} '
                               f'(set dataset.{role}_topic)')
            if topics[name][0] not in types:
                raise InputError(f'dataset.{role}_topic', want, f'is {topics[name][0]}, expected one of {types}')
            names[role] = name
        truth_name = _resolve(topics, config.truth_topic) if config.truth_topic else None
        if truth_name is not None:
            if topics[truth_name][0] != 'std_msgs/msg/Float64MultiArray':
                raise InputError('dataset.truth_topic', config.truth_topic,
                                 f'is {topics[truth_name][0]}, expected std_msgs/msg/Float64MultiArray')
            names['truth'] = truth_name
        info.update(storage=reader.storage, duration=reader.duration,
                    topics={role: {'name': n, 'type': topics[n][0], 'count': topics[n][1]}
                            for role, n in names.items()})
        role_of = {n: role for role, n in names.items()}
        total = sum(topics[n][1] for n in names.values())
        cols = {role: ([], [], []) for role in names}  # stamps, log_ns, values
        # frames go straight into one preallocated array (a long bag must not hold two copies)
        frames = np.empty((topics[names['camera']][1], config.image_height, config.image_width, 3), np.uint8)
        use_log = config.time_source == 'log'
        bar = _progress(total, f'read {Path(bag_path).name}', progress)
        for msg in reader.messages(topics=list(names.values())):
            role = role_of[msg.topic]
            stamp, value = _decode(role, msg, convert, config)
            if use_log or stamp is None:
                stamp = msg.stamp_ns * 1e-9
            st, lg, vals = cols[role]
            if role == 'camera':
                if len(st) >= frames.shape[0]:
                    raise BagError(f'{bag_path}: more camera messages than metadata.yaml counts')
                frames[len(st)] = value
                value = None
            st.append(stamp)
            lg.append(msg.stamp_ns)
            vals.append(value)
            bar.update(1)
        bar.close()

    def timed(role, shape, dtype):
        st, lg, vals = cols.get(role, ([], [], []))
        if not vals:
            return TimedArray.empty(shape, dtype)
        values = frames[:len(st)] if role == 'camera' else np.stack(vals).astype(dtype)
        return TimedArray(np.asarray(st), np.asarray(lg), values)

    streams = Streams(frames=timed('camera', (config.image_height, config.image_width, 3), np.uint8),
                      imu=timed('imu', (6,), np.float64),
                      commands=timed('command', (2,), np.float64),
                      truth=timed('truth', (2,), np.float64) if 'truth' in names else None)
    return streams, info


def _decode(role, msg, convert, config):
    """One bag message -> (header stamp seconds or None, value array)."""
    m = msg.message
    try:
        if role == 'camera':
            if msg.msgtype == 'sensor_msgs/msg/CompressedImage':
                frame = convert.decode_compressed_image(m)
            else:
                frame = convert.decode_image(m)
            return convert.stamp_to_sec(m.header.stamp), _resize_frame(frame, config.image_height,
                                                                        config.image_width)
        if role == 'imu':
            r = convert.decode_imu(m)
            return r.stamp, np.concatenate([r.angular_velocity, r.linear_acceleration])
        if role == 'command':
            stamp, v, w = convert.decode_twist(m)
            return stamp, np.array([v, w])
        # Float64MultiArray has no header: ground truth is timed by its bag time stamp.
        return None, decode_truth(m)
    except InputError as exc:
        raise InputError(f'{msg.topic} at {msg.stamp_ns} ns: {exc.name}', exc.value, exc.reason) from None


def _progress(total, desc, enabled):
    from tqdm import tqdm
    return tqdm(total=total, desc=desc, unit='msg', disable=not enabled, leave=False)


def raw_imu_feature(gyro, accel):
    """Un-normalised IMU feature of one window, computed by the runtime's preprocessing
    (mean gyro xyz, mean accel xyz) -> (6,); NaN for an empty window (the caller holds the last one)."""
    from liquid_controller.runtime.preprocess import ImuWindow, imu_features
    if gyro.shape[0] == 0:
        return np.full(6, np.nan)
    return imu_features(ImuWindow(np.zeros(gyro.shape[0]), gyro, accel))


def _hold_last_imu(segments):
    """Empty IMU windows hold the previous frame's feature, as the runtime Controller does; before the
    first sample of a segment the feature stays NaN (normalised to 0 = the Controller's initial value)."""
    for seg in segments:
        for i in range(1, len(seg)):
            if seg.imu_count[i] == 0:
                seg.imu[i] = seg.imu[i - 1]


# -------------------------------------------------------------------------------------------- prepare

@dataclass
class PreparedData:
    """Result of :func:`prepare`: the cache folder and one index entry per bag (same order as bags)."""

    cache_dir: Path
    entries: list = field(default_factory=list)   # dicts: bag, key, file, frames, segments, report, ...
    reused: int = 0
    built: int = 0

    def summary(self):
        """Training-data summary for the model card."""
        frames = sum(e['frames'] for e in self.entries)
        seconds = sum(e['seconds'] for e in self.entries)
        return {'bags': [e['bag'] for e in self.entries], 'frames': int(frames),
                'segments': int(sum(e['segments'] for e in self.entries)),
                'seconds': round(float(seconds), 3),
                'frames_with_truth': int(sum(e['report']['frames_with_truth'] for e in self.entries)),
                'storage': sorted({e['storage'] for e in self.entries})}


def prepare(bags, cache_dir, config: DatasetConfig, progress=True, force=False):
    """Decode and align every bag into the cache, reusing entries whose key still matches.

    ``bags``: bag directories or folders holding bags. Returns :class:`PreparedData`.
    """
    cache_dir = Path(cache_dir)
    bag_paths = find_bags(bags)
    index = cache.read_index(cache_dir)
    settings = config.to_dict()
    out = PreparedData(cache_dir=cache_dir)
    for bag in bag_paths:
        key = cache.cache_key(cache.bag_fingerprint(bag), settings)
        entry = index['entries'].get(str(bag))
        if not force and entry and entry.get('key') == key and (cache_dir / entry['file']).is_file():
            out.entries.append(entry)
            out.reused += 1
            continue
        t0 = time.perf_counter()
        streams, info = read_bag_streams(bag, config, progress=progress)
        segments, report = align_streams(
            streams, raw_imu_feature, command_alignment=config.command_alignment,
            max_command_age=config.max_command_age, max_frame_gap=config.max_frame_gap,
            min_segment_frames=config.min_segment_frames)
        if not segments:
            raise InputError('bag', str(bag), f'no usable frames after alignment: {report.to_dict()}')
        _hold_last_imu(segments)
        name = cache.entry_file_name(bag, key)
        old = entry.get('file') if entry else None
        cache.write_segments(cache_dir / name, segments)
        if old and old != name:
            (cache_dir / old).unlink(missing_ok=True)  # the superseded entry of this bag
        entry = {'bag': str(bag), 'key': key, 'file': name, 'frames': report.frames_kept,
                 'segments': report.segments, 'seconds': float(sum(float(s.dt[1:].sum()) for s in segments)),
                 'storage': info['storage'], 'topics': info['topics'], 'report': report.to_dict(),
                 'prepare_seconds': round(time.perf_counter() - t0, 3)}
        index['entries'][str(bag)] = entry
        cache.write_index(cache_dir, index)
        out.entries.append(entry)
        out.built += 1
    return out


# ------------------------------------------------------------------------------------ episodes, split

@dataclass
class Episode:
    """One cached segment: a continuous sequence from one bag (arrays share the frame axis)."""

    bag: str
    index: int              # segment number within the bag
    arrays: dict            # ARRAY_FIELDS -> np.ndarray

    def __len__(self):
        return int(self.arrays['stamps'].shape[0])


def load_episodes(prepared: PreparedData):
    """Read every cached segment of ``prepared`` -> list of Episode (in bag order)."""
    episodes = []
    for entry in prepared.entries:
        for i, arrays in enumerate(cache.read_segments(prepared.cache_dir / entry['file'])):
            episodes.append(Episode(entry['bag'], i, arrays))
    return episodes


def _cut(ep, a, b, index):
    return Episode(ep.bag, index, {k: v[a:b] for k, v in ep.arrays.items()})


def split_episodes(episodes, val_fraction, seed=0):
    """Split into (train, val, description).

    - several bags: whole bags go to validation (a bag is one recording session);
    - one bag with several segments: whole segments (episodes) go to validation;
    - one bag, one segment: its last ``val_fraction`` of frames is validation (a split in time).
    The choice of bags/segments is a seeded shuffle. ``val_fraction`` 0 gives no validation set.
    """
    check_number('val_fraction', val_fraction, 0.0, 1.0, high_open=True)
    if not episodes:
        raise InputError('episodes', 0, 'no episodes to split')
    if val_fraction == 0:
        return list(episodes), [], {'by': 'none', 'train': len(episodes), 'val': 0}
    rng = np.random.default_rng(seed)
    bags = sorted({e.bag for e in episodes})
    if len(bags) >= 2:
        n_val = min(len(bags) - 1, max(1, int(round(val_fraction * len(bags)))))
        val_bags = set(rng.permutation(bags)[:n_val].tolist())
        train = [e for e in episodes if e.bag not in val_bags]
        val = [e for e in episodes if e.bag in val_bags]
        return train, val, {'by': 'bag', 'val_bags': sorted(val_bags), 'train': len(train), 'val': len(val)}
    if len(episodes) >= 2:
        n_val = min(len(episodes) - 1, max(1, int(round(val_fraction * len(episodes)))))
        order = rng.permutation(len(episodes))
        val_idx = set(order[:n_val].tolist())
        train = [e for i, e in enumerate(episodes) if i not in val_idx]
        val = [e for i, e in enumerate(episodes) if i in val_idx]
        return train, val, {'by': 'episode', 'val_episodes': sorted(val_idx), 'train': len(train),
                            'val': len(val)}
    (ep,) = episodes
    n = len(ep)
    cut = n - max(1, int(round(val_fraction * n)))
    if cut < 2 or n - cut < 2:
        raise InputError('episodes', n, 'a single segment this short cannot be split; record more or '
                                        'set val_fraction 0')
    return [_cut(ep, 0, cut, 0)], [_cut(ep, cut, n, 1)], {'by': 'time', 'cut_frame': int(cut),
                                                          'train': 1, 'val': 1}


def imu_statistics(episodes):
    """Mean and (floored) standard deviation of the raw IMU features over ``episodes`` -> (6,), (6,)."""
    feats = np.concatenate([e.arrays['imu'] for e in episodes], axis=0).astype(np.float64)  # (N, 6)
    feats = feats[np.isfinite(feats).all(axis=1)]
    if feats.shape[0] == 0:
        return np.zeros(6), np.ones(6)
    return feats.mean(axis=0), np.maximum(feats.std(axis=0), IMU_STD_FLOOR)


# ------------------------------------------------------------------------------------ torch dataset

class SequenceDataset(Dataset):
    """Windows of ``seq_len`` consecutive frames of the episodes, for truncated BPTT.

    Windows start every ``stride`` frames; an episode shorter than ``seq_len`` gives one window padded
    at the end (``mask`` False on padding). Items are dicts of tensors:
    images (T, H, W, 3) uint8, imu (T, 6) normalised float32, dt (T,) float32 seconds (clipped to
    ``max_dt``; the first frame of an episode has the nominal period), command / prev_command (T, 2),
    truth (T, 2), truth_mask (T,), mask (T,) (False on padding).
    """

    def __init__(self, episodes, seq_len, stride=None, imu_mean=None, imu_std=None, max_dt=0.2):
        seq_len = check_int('seq_len', seq_len, 1)
        stride = seq_len if stride is None else check_int('stride', stride, 1)
        if not episodes:
            raise InputError('episodes', 0, 'no episodes')
        self.episodes = list(episodes)
        self.seq_len = seq_len
        self.max_dt = float(max_dt)
        self.imu_mean = np.zeros(6) if imu_mean is None else np.asarray(imu_mean, dtype=np.float64)
        self.imu_std = np.ones(6) if imu_std is None else np.asarray(imu_std, dtype=np.float64)
        self.windows = []  # (episode index, start)
        for k, ep in enumerate(self.episodes):
            n = len(ep)
            starts = list(range(0, max(1, n - seq_len + 1), stride))
            if n > seq_len and starts[-1] != n - seq_len:
                starts.append(n - seq_len)  # cover the tail too
            self.windows += [(k, s) for s in starts]

    def __len__(self):
        return len(self.windows)

    @property
    def frames(self):
        return int(sum(len(e) for e in self.episodes))

    def __getitem__(self, i):
        k, s = self.windows[i]
        a = self.episodes[k].arrays
        e = min(s + self.seq_len, len(self.episodes[k]))
        n, t = e - s, self.seq_len
        imu = (a['imu'][s:e].astype(np.float64) - self.imu_mean) / self.imu_std
        imu = np.nan_to_num(imu, nan=0.0)     # before the first IMU sample: the runtime's initial zeros
        dt = np.minimum(a['dt'][s:e], self.max_dt)

        def pad(x, value=0):
            if n == t:
                return x
            shape = (t - n,) + x.shape[1:]
            return np.concatenate([x, np.full(shape, value, dtype=x.dtype)], axis=0)

        return {
            'images': torch.from_numpy(pad(a['images'][s:e])),                       # (T, H, W, 3) uint8
            'imu': torch.from_numpy(pad(imu.astype(np.float32))),                    # (T, 6)
            'dt': torch.from_numpy(pad(dt.astype(np.float32), value=float(dt[-1]))),  # (T,)
            'command': torch.from_numpy(pad(a['command'][s:e].astype(np.float32))),  # (T, 2)
            'prev_command': torch.from_numpy(pad(a['prev_command'][s:e].astype(np.float32))),
            'truth': torch.from_numpy(pad(a['truth'][s:e].astype(np.float32))),      # (T, 2)
            'truth_mask': torch.from_numpy(pad(a['truth_mask'][s:e].astype(bool), value=False)),
            'mask': torch.from_numpy(pad(np.ones(n, dtype=bool), value=False)),      # (T,)
        }
