"""Time alignment of decoded bag streams into training sequences (pure numpy, no bag or ROS code).

The rules, the same as the robot's (runtime/frame_assembler.py cuts the live node's inputs, and replay's,
by the same window rule):

- **Frames** are the camera messages in bag (arrival) order, timed by their header stamps. A new
  *segment* (a sequence with its own hidden-state history) starts when a stamp does not increase
  (a simulator reset restarts its clock), when the gap to the previous frame exceeds
  ``max_frame_gap``, or where a frame has no valid command.
- **IMU window** of frame i: the IMU samples with ``max(t[i-1], t[i] - max_window) < stamp <= t[i]``
  (what arrived since the previous frame, at most ``max_window`` back: the node's ``max_dt``). The
  first frame of a segment uses ``(t[0] - max_window, t[0]]``, as the node does after a reset. The
  6-dim feature of the window is computed by the runtime's preprocessing, and an empty window holds the
  previous feature (dataset.py), so training sees exactly what the robot sees.
- **Command label** of frame i: ``'hold'`` (default) is the latest command stamped at or before
  ``t[i]``, i.e. the command in effect when the frame was taken (zero-order hold, as the motor
  driver executes it); ``'interpolate'`` is the linear interpolation between the commands either
  side of ``t[i]`` (the held value after the last one). A command older than ``max_command_age``
  (the cmd_vel timeout of diff_drive_controller is 0.5 s) is stale: such frames, and frames before the
  first command, carry no label and are dropped.
- **prev_command** of frame i is the label of frame i-1 (for the first frame of a segment, the command
  in effect one period earlier, zero when there is none or it is stale): the controller's own last
  output, which is the state the safety filter starts from.
- **Ground truth** (lane offset, heading error), when the bag has it, is the sample nearest in time
  within half a frame period; frames without one have ``truth_mask`` False.

Streams recorded across simulator resets (stamps jumping backwards) are split into *epochs* by the
camera's stamp resets; the other topics are assigned to an epoch by their own stamp resets matched in
bag arrival time (see ``_epoch_of``), so samples of different episodes are never paired.
"""
from dataclasses import dataclass, field
from typing import Callable, Optional

import numpy as np

from liquid_controller.errors import InputError

COMMAND_ALIGNMENTS = ('hold', 'interpolate')


@dataclass
class TimedArray:
    """Samples of one topic: ``stamps`` (N,) float64 header seconds, ``log_ns`` (N,) int64 bag arrival
    time, ``values`` (N, ...) in arrival order."""

    stamps: np.ndarray
    log_ns: np.ndarray
    values: np.ndarray

    def __post_init__(self):
        self.stamps = np.asarray(self.stamps, dtype=np.float64).reshape(-1)
        self.log_ns = np.asarray(self.log_ns, dtype=np.int64).reshape(-1)
        self.values = np.asarray(self.values)
        n = self.stamps.shape[0]
        if self.log_ns.shape[0] != n or self.values.shape[0] != n:
            raise InputError('TimedArray', (n, self.log_ns.shape[0], self.values.shape[0]),
                             'stamps, log_ns and values must have the same length')
        if n and not np.all(np.isfinite(self.stamps)):
            raise InputError('stamps', 'non-finite', 'stamps must be finite')

    def __len__(self):
        return int(self.stamps.shape[0])

    def select(self, mask):
        """Subset by a boolean mask or index array (keeps arrival order)."""
        return TimedArray(self.stamps[mask], self.log_ns[mask], self.values[mask])

    @staticmethod
    def empty(value_shape=(), dtype=np.float64):
        return TimedArray(np.zeros(0), np.zeros(0, np.int64), np.zeros((0,) + tuple(value_shape), dtype))


@dataclass
class Streams:
    """Decoded streams of one bag (images already resized to the training size)."""

    frames: TimedArray                     # values (N, H, W, 3) uint8 RGB
    imu: TimedArray                        # values (M, 6): gyro xyz, accel xyz
    commands: TimedArray                   # values (K, 2): v m/s, w rad/s
    truth: Optional[TimedArray] = None     # values (L, 2): lane offset m, heading error rad


@dataclass
class AlignedSegment:
    """One continuous sequence of frames with labels (all arrays share the first axis N)."""

    stamps: np.ndarray          # (N,) float64 s
    dt: np.ndarray              # (N,) float32 s, elapsed time since the previous frame (period first)
    images: np.ndarray          # (N, H, W, 3) uint8
    imu: np.ndarray             # (N, imu_size) float32 feature of the frame's IMU window
    imu_count: np.ndarray       # (N,) int32 IMU samples in the window
    command: np.ndarray         # (N, 2) float32 recorded command label (v, w)
    prev_command: np.ndarray    # (N, 2) float32
    truth: np.ndarray           # (N, 2) float32 lane offset, heading error (0 where missing)
    truth_mask: np.ndarray      # (N,) bool

    def __len__(self):
        return int(self.stamps.shape[0])


@dataclass
class AlignmentReport:
    """What alignment did to a bag: counts a user can check against `ros2 bag info`."""

    frames_in: int = 0
    frames_kept: int = 0
    dropped_no_command: int = 0
    dropped_stale_command: int = 0
    dropped_short_segment: int = 0
    segments: int = 0
    epochs: int = 0
    frame_period: float = 0.0
    empty_imu_windows: int = 0
    frames_with_truth: int = 0
    notes: list = field(default_factory=list)

    def to_dict(self):
        return dict(self.__dict__)


def median_period(stamps):
    """Median positive interval of monotone runs of ``stamps`` (s); InputError when there is none."""
    d = np.diff(np.asarray(stamps, dtype=np.float64))
    d = d[d > 0]
    if d.size == 0:
        raise InputError('camera stamps', len(stamps), 'need at least two increasing frame stamps')
    return float(np.median(d))


def split_epochs(stamps):
    """Start indices of epochs: a new epoch begins wherever a stamp goes backwards (clock reset)."""
    stamps = np.asarray(stamps, dtype=np.float64)
    if stamps.size == 0:
        return np.zeros(0, dtype=np.int64)
    back = np.nonzero(np.diff(stamps) < 0)[0] + 1
    return np.concatenate([[0], back]).astype(np.int64)


def _epoch_of(arr, epoch_log_starts):
    """Camera epoch of each message of ``arr`` (a TimedArray in arrival order).

    A stream whose stamps also reset is split at its own resets, and each of its runs goes to the
    camera epoch that started nearest in bag time (the IMU samples of a new episode's first window
    arrive just before its first frame). A stream that never resets (e.g. timed by bag time) is
    assigned message by message by bag time.
    """
    if len(arr) == 0 or len(epoch_log_starts) == 1:
        return np.zeros(len(arr), dtype=np.int64)
    runs = split_epochs(arr.stamps)
    if runs.size == 1:
        idx = np.searchsorted(epoch_log_starts, arr.log_ns, side='right') - 1
        return np.clip(idx, 0, len(epoch_log_starts) - 1)
    out = np.zeros(len(arr), dtype=np.int64)
    bounds = list(runs) + [len(arr)]
    for r in range(runs.size):
        start = arr.log_ns[bounds[r]]
        out[bounds[r]:bounds[r + 1]] = int(np.argmin(np.abs(epoch_log_starts - start)))
    return out


def command_at(times, cmd_stamps, cmd_values, mode):
    """Command label at each of ``times`` -> (values (N, 2), age (N,) s; age is inf before the first).

    ``cmd_stamps`` must be sorted. 'hold': latest command with stamp <= t. 'interpolate': linear between
    the bracketing commands, held after the last one.
    """
    times = np.asarray(times, dtype=np.float64)
    n = times.shape[0]
    out = np.zeros((n, 2), dtype=np.float64)
    age = np.full(n, np.inf)
    if cmd_stamps.size == 0:
        return out, age
    i = np.searchsorted(cmd_stamps, times, side='right') - 1    # latest at or before t
    valid = i >= 0
    iv = i[valid]
    out[valid] = cmd_values[iv]
    age[valid] = times[valid] - cmd_stamps[iv]
    if mode == 'interpolate':
        nxt = iv + 1
        has_next = nxt < cmd_stamps.size
        rows = np.nonzero(valid)[0][has_next]
        a, b = iv[has_next], nxt[has_next]
        span = cmd_stamps[b] - cmd_stamps[a]
        frac = np.where(span > 0, (times[rows] - cmd_stamps[a]) / np.where(span > 0, span, 1.0), 0.0)
        out[rows] = cmd_values[a] + frac[:, None] * (cmd_values[b] - cmd_values[a])
    elif mode != 'hold':
        raise InputError('command_alignment', mode, f'expected one of {COMMAND_ALIGNMENTS}')
    return out, age


def nearest_within(times, stamps, values, tolerance):
    """Value of the sample nearest in time to each of ``times`` within ``tolerance`` -> (values, mask)."""
    times = np.asarray(times, dtype=np.float64)
    n = times.shape[0]
    out = np.zeros((n,) + values.shape[1:], dtype=np.float64)
    mask = np.zeros(n, dtype=bool)
    if stamps.size == 0:
        return out, mask
    j = np.clip(np.searchsorted(stamps, times), 0, stamps.size - 1)
    jm = np.clip(j - 1, 0, stamps.size - 1)
    pick = np.where(np.abs(stamps[jm] - times) <= np.abs(stamps[j] - times), jm, j)
    mask = np.abs(stamps[pick] - times) <= tolerance
    out[mask] = values[pick[mask]]
    return out, mask


def _sorted(arr: TimedArray):
    order = np.argsort(arr.stamps, kind='stable')
    return arr.stamps[order], arr.values[order]


def align_streams(streams: Streams, imu_feature: Callable, *, command_alignment='hold',
                  max_command_age=0.5, max_frame_gap=0.5, min_segment_frames=2, max_window=None):
    """Pair every camera frame with its IMU window feature, command label and ground truth.

    ``max_window``: s, how far back an IMU window reaches (None: the controller node's default
    ``max_dt``, runtime/settings.py).

    ``imu_feature(gyro (n, 3), accel (n, 3)) -> (F,)`` computes the IMU feature of one window (the
    runtime's preprocessing). Returns ``(segments: list[AlignedSegment], AlignmentReport)``.
    """
    if command_alignment not in COMMAND_ALIGNMENTS:
        raise InputError('command_alignment', command_alignment, f'expected one of {COMMAND_ALIGNMENTS}')
    frames = streams.frames
    report = AlignmentReport(frames_in=len(frames))
    if len(frames) < 2:
        raise InputError('camera frames', len(frames), 'a bag needs at least two camera frames')
    if max_window is None:
        from liquid_controller.runtime.settings import PARAMETERS
        max_window = PARAMETERS['max_dt'].default
    period = median_period(frames.stamps)
    report.frame_period = period
    starts = split_epochs(frames.stamps)
    report.epochs = int(starts.size)
    epoch_log_starts = frames.log_ns[starts]
    bounds = list(starts) + [len(frames)]

    imu_epoch = _epoch_of(streams.imu, epoch_log_starts)
    cmd_epoch = _epoch_of(streams.commands, epoch_log_starts)
    truth = streams.truth
    truth_epoch = _epoch_of(truth, epoch_log_starts) if truth is not None else None

    segments = []
    for e in range(starts.size):
        lo, hi = bounds[e], bounds[e + 1]
        seg_frames = frames.select(slice(lo, hi))
        imu = streams.imu.select(imu_epoch == e)
        cmd = streams.commands.select(cmd_epoch == e)
        tr = truth.select(truth_epoch == e) if truth is not None else None
        segments += _align_epoch(seg_frames, imu, cmd, tr, imu_feature, period, command_alignment,
                                 max_command_age, max_frame_gap, min_segment_frames, max_window, report)
    report.segments = len(segments)
    report.frames_kept = int(sum(len(s) for s in segments))
    report.frames_with_truth = int(sum(int(s.truth_mask.sum()) for s in segments))
    return segments, report


def _align_epoch(frames, imu, cmd, truth, imu_feature, period, command_alignment, max_command_age,
                 max_frame_gap, min_segment_frames, max_window, report):
    t = frames.stamps                                           # (N,) increasing within an epoch
    cmd_t, cmd_v = _sorted(cmd)
    label, age = command_at(t, cmd_t, cmd_v.astype(np.float64), command_alignment)
    no_cmd = ~np.isfinite(age)
    stale = np.isfinite(age) & (age > max_command_age)
    report.dropped_no_command += int(no_cmd.sum())
    report.dropped_stale_command += int(stale.sum())
    valid = ~(no_cmd | stale)

    prev_t = np.concatenate([[t[0] - period], t[:-1]])
    gap = t - prev_t
    # A segment breaks before frame i when i-1 was invalid or the gap is too large.
    breaks = np.ones(len(t), dtype=bool)
    breaks[1:] = (~valid[:-1]) | (gap[1:] > max_frame_gap) | (gap[1:] <= 0)

    imu_t, imu_v = _sorted(imu)
    if truth is not None and len(truth):
        tr_t, tr_v = _sorted(truth)
        truth_v, truth_m = nearest_within(t, tr_t, tr_v.astype(np.float64), 0.5 * period)
    else:
        truth_v, truth_m = np.zeros((len(t), 2)), np.zeros(len(t), dtype=bool)

    out = []
    i = 0
    n = len(t)
    while i < n:
        if not valid[i]:
            i += 1
            continue
        j = i + 1
        while j < n and valid[j] and not breaks[j]:
            j += 1
        idx = np.arange(i, j)
        if idx.size < min_segment_frames:
            report.dropped_short_segment += int(idx.size)
        else:
            out.append(_build_segment(idx, t, frames.values, imu_t, imu_v, label, cmd_t, cmd_v,
                                      command_alignment, max_command_age, truth_v, truth_m, imu_feature,
                                      period, max_window, report))
        i = j
    return out


def _build_segment(idx, t, images, imu_t, imu_v, label, cmd_t, cmd_v, command_alignment,
                   max_command_age, truth_v, truth_m, imu_feature, period, max_window, report):
    ts = t[idx]
    dt = np.diff(ts, prepend=ts[0] - period)                    # (N,) real elapsed time
    window_lo = np.maximum(ts - dt, ts - max_window)            # the node's window rule
    window_lo[0] = ts[0] - max_window                           # a segment starts like a reset
    lo = np.searchsorted(imu_t, window_lo, side='right')        # first sample with stamp > window_lo
    hi = np.searchsorted(imu_t, ts, side='right')               # one past the last with stamp <= t[i]
    feats, counts = [], []
    for a, b in zip(lo, hi):
        window = imu_v[a:b].astype(np.float64)                  # (n, 6)
        feats.append(np.asarray(imu_feature(window[:, :3], window[:, 3:6]), dtype=np.float32))
        counts.append(b - a)
    counts = np.asarray(counts, dtype=np.int32)
    report.empty_imu_windows += int((counts == 0).sum())
    first_prev, first_age = command_at(ts[:1] - period, cmd_t, cmd_v.astype(np.float64), command_alignment)
    prev0 = first_prev[0] if first_age[0] <= max_command_age else np.zeros(2)
    prev = np.concatenate([prev0[None], label[idx[:-1]]], axis=0)
    return AlignedSegment(
        stamps=ts.astype(np.float64),
        dt=dt.astype(np.float32),
        images=np.ascontiguousarray(images[idx]),
        imu=np.stack(feats).astype(np.float32),
        imu_count=counts,
        command=label[idx].astype(np.float32),
        prev_command=prev.astype(np.float32),
        truth=truth_v[idx].astype(np.float32),
        truth_mask=truth_m[idx].copy(),
    )
