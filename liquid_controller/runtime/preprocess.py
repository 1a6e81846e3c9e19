"""Image and IMU preprocessing shared by the live node, bag replay, evaluation and training.

One definition of the network's input so that what the robot feeds the policy is exactly what the
policy was trained on:

- image: (H, W, 3) uint8 RGB -> float32 array (1, 3, H, W) in [0, 1] (x / 255). Optional resizing
  (area averaging, the same windows as ``torch.nn.functional.interpolate(mode='area')``) for cameras
  whose native size differs from the model's.
- IMU: the samples of one frame window -> 6 features: mean angular velocity xyz (rad/s) and mean linear
  acceleration xyz (m/s^2), then normalised with the model card's mean/std.

Every function validates its input and raises :class:`~liquid_controller.errors.InputError` naming the
argument; nothing returns a silently wrong result.

numpy only: the torch-free edge runtime (``backend: onnx``) preprocesses with this module too, so both
backends see the same numbers. ``image_to_tensor`` / ``images_to_tensor`` wrap the arrays as torch
tensors for the training code and import torch only when called.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from liquid_controller.errors import InputError
from liquid_controller.validation import check_numbers

MAX_IMAGE_PIXELS = 4096 * 4096  # anything larger is refused before any allocation


@dataclass
class ImuWindow:
    """IMU samples that arrived for one camera frame (all arrays share the first dimension N).

    stamps (N,) s, angular_velocity (N, 3) rad/s, linear_acceleration (N, 3) m/s^2.
    """
    stamps: np.ndarray
    angular_velocity: np.ndarray
    linear_acceleration: np.ndarray

    @classmethod
    def empty(cls):
        return cls(np.zeros(0), np.zeros((0, 3)), np.zeros((0, 3)))

    def __len__(self):
        return int(np.asarray(self.stamps).shape[0]) if np.ndim(self.stamps) else 0


def image_to_array(frame, height, width, *, resize=False):
    """Validate an RGB frame and return the network input as numpy.

    frame: (H, W, 3) uint8. Returns a float32 array (1, 3, height, width) in [0, 1] (C-contiguous).
    With ``resize`` False a frame of another size is an InputError; with True it is area-resampled.
    """
    if not isinstance(frame, np.ndarray):
        raise InputError('frame', type(frame).__name__, 'must be a numpy array (H, W, 3) uint8')
    if frame.dtype != np.uint8:
        raise InputError('frame.dtype', str(frame.dtype), 'must be uint8 RGB')
    if frame.ndim != 3 or frame.shape[2] != 3:
        raise InputError('frame.shape', frame.shape, 'must be (H, W, 3) RGB')
    h, w = int(frame.shape[0]), int(frame.shape[1])
    if h == 0 or w == 0 or h * w > MAX_IMAGE_PIXELS:
        raise InputError('frame.shape', frame.shape, f'image size out of range (1..{MAX_IMAGE_PIXELS} px)')
    if (h, w) != (int(height), int(width)) and not resize:
        raise InputError('frame.shape', frame.shape,
                         f'model expects {height}x{width} (HxW); enable resizing or fix the camera')
    if (h, w) != (int(height), int(width)):
        return area_resize(frame, int(height), int(width))[None]                       # (1, 3, h', w')
    # (H, W, 3) uint8 -> (3, H, W) float32 / 255: the division (not a multiplication by 1/255) is
    # what torch's div_ did, so the values are bit-identical to the previous torch preprocessing.
    x = np.divide(frame.transpose(2, 0, 1), np.float32(255.0), dtype=np.float32)      # (3, H, W)
    return np.ascontiguousarray(x)[None]                                                # (1, 3, H, W)


def _area_windows(size_in, size_out):
    """Windows of adaptive average pooling along one axis: output i averages inputs
    [floor(i * in / out), ceil((i + 1) * in / out)). Returns (start, end) int arrays (size_out,)."""
    i = np.arange(size_out)
    return (i * size_in) // size_out, -((-(i + 1) * size_in) // size_out)


def _window_sums(x, axis, size_out):
    """Sums of ``x`` over the area windows along ``axis`` (float64, exact for uint8 input) and the
    window lengths. Windows may overlap by one element, so they are built from the sums of the segments
    between all window bounds (np.add.reduceat) and a short prefix sum over those segments."""
    start, end = _area_windows(x.shape[axis], size_out)
    bounds = np.unique(np.concatenate([start, end]))                  # 0 ... size_in
    seg = np.add.reduceat(x, bounds[:-1], axis=axis, dtype=np.float64)
    prefix = np.cumsum(seg, axis=axis)
    prefix = np.concatenate([np.zeros_like(np.take(prefix, [0], axis=axis)), prefix], axis=axis)
    sums = (np.take(prefix, np.searchsorted(bounds, end), axis=axis)
            - np.take(prefix, np.searchsorted(bounds, start), axis=axis))
    return sums, end - start


def area_resize(frame, height, width):
    """Area resampling of an (H, W, 3) uint8 frame to the (3, height, width) float32 network input in
    [0, 1]: the windows of ``torch.nn.functional.interpolate(mode='area')`` (adaptive average pooling).

    Window sums of the integer pixels are exact in float64; the mean is divided by 255 and rounded once
    to float32 (within one float32 rounding of torch's float32 pooling). Band sums instead of matrix
    products: a VGA frame takes a few ms, not the tens of ms a dense float64 product took.
    """
    sums, rows = _window_sums(frame, 0, int(height))                    # (height, W, 3)
    sums, cols = _window_sums(sums, 1, int(width))                      # (height, width, 3)
    mean = sums / (rows[:, None, None] * cols[None, :, None] * 255.0)
    return np.ascontiguousarray(mean.astype(np.float32).transpose(2, 0, 1))  # (3, height, width)


def image_to_tensor(frame, height, width, *, resize=False):
    """:func:`image_to_array` as a torch tensor (1, 3, height, width); imports torch (training and
    the torch-only tools use it, the runtime Controller does not)."""
    import torch
    return torch.from_numpy(image_to_array(frame, height, width, resize=resize))


def validate_imu_window(window):
    """Check shapes and finiteness of an :class:`ImuWindow`; returns float64 arrays
    (stamps (N,), gyro (N,3), accel (N,3))."""
    if window is None:
        return np.zeros(0), np.zeros((0, 3)), np.zeros((0, 3))
    try:
        stamps = np.asarray(window.stamps, dtype=np.float64).reshape(-1)
        gyro = np.asarray(window.angular_velocity, dtype=np.float64)
        accel = np.asarray(window.linear_acceleration, dtype=np.float64)
    except (TypeError, ValueError, AttributeError) as exc:
        raise InputError('imu', type(window).__name__, f'not an IMU window: {exc}') from exc
    n = stamps.shape[0]
    if gyro.shape != (n, 3):
        raise InputError('imu.angular_velocity.shape', gyro.shape, f'must be ({n}, 3)')
    if accel.shape != (n, 3):
        raise InputError('imu.linear_acceleration.shape', accel.shape, f'must be ({n}, 3)')
    if not np.isfinite(stamps).all():
        raise InputError('imu.stamps', stamps[~np.isfinite(stamps)][:3], 'must be finite')
    if not np.isfinite(gyro).all():
        raise InputError('imu.angular_velocity', gyro[~np.isfinite(gyro).all(axis=1)][:1],
                         'contains NaN or Inf')
    if not np.isfinite(accel).all():
        raise InputError('imu.linear_acceleration', accel[~np.isfinite(accel).all(axis=1)][:1],
                         'contains NaN or Inf')
    return stamps, gyro, accel


def imu_features(window, mean=None, std=None):
    """Mean gyro xyz and mean accel xyz over the window, normalised: (f - mean) / std.

    Returns float32 array (6,). An empty window is an InputError (the caller decides what to hold).
    """
    stamps, gyro, accel = validate_imu_window(window)
    if stamps.shape[0] == 0:
        raise InputError('imu', 0, 'no IMU samples in this frame window')
    f = np.concatenate([gyro.mean(axis=0), accel.mean(axis=0)])  # (6,)
    if mean is not None:
        f = f - np.asarray(mean, dtype=np.float64)
    if std is not None:
        f = f / np.asarray(std, dtype=np.float64)
    return f.astype(np.float32)


def images_to_tensor(frames):
    """Batch/sequence version for training and replay: uint8 (..., H, W, 3) -> float32 (..., 3, H, W)
    in [0, 1]; same normalisation as :func:`image_to_tensor`."""
    frames = np.asarray(frames)
    if frames.dtype != np.uint8 or frames.ndim < 3 or frames.shape[-1] != 3:
        raise InputError('frames', frames.shape, 'must be uint8 (..., H, W, 3)')
    import torch
    x = torch.from_numpy(np.ascontiguousarray(frames)).to(torch.float32).div_(255.0)
    return x.movedim(-1, -3)  # (..., 3, H, W)


def forward_distance(ranges, angle_min, angle_increment, range_min, range_max, half_angle,
                     pose=(0.0, 0.0, 0.0)):
    """Nearest obstacle ahead of the robot from a planar scan (sensor_msgs/LaserScan fields, REP-117).

    ``pose`` (x m, y m, yaw rad) is the scanner's pose in base_link (the ``scan_pose`` parameter; the
    default: at base_link's origin, facing forward). Each beam's end point is moved into base_link;
    the result is the smallest distance from base_link's origin to an end point whose bearing from
    base_link's x axis is within ``half_angle`` (rad), or +inf when no beam there sees anything.
    Readings outside [range_min, range_max], NaN and +inf are "no return"; -inf (too close, REP-117)
    counts as range_min. Raises InputError for malformed fields.
    """
    try:
        r = np.asarray(ranges, dtype=np.float64).reshape(-1)
        a0, da = float(angle_min), float(angle_increment)
        lo, hi, half = float(range_min), float(range_max), float(half_angle)
    except (TypeError, ValueError) as exc:
        raise InputError('scan', type(ranges).__name__, f'malformed scan: {exc}') from None
    for name, v in (('angle_min', a0), ('angle_increment', da), ('range_min', lo),
                    ('range_max', hi), ('half_angle', half)):
        if not np.isfinite(v):
            raise InputError(f'scan.{name}', v, 'must be finite')
    x0, y0, yaw0 = check_numbers('scan_pose', tuple(pose), 3)
    if r.size == 0:
        raise InputError('scan.ranges', 0, 'empty scan')
    if da == 0.0 and r.size > 1:
        raise InputError('scan.angle_increment', da, 'must be non-zero for more than one beam')
    if not 0.0 <= lo < hi:
        raise InputError('scan.range_min', (lo, hi), 'need 0 <= range_min < range_max')
    angles = a0 + da * np.arange(r.size) + yaw0             # (N,) beam directions in base_link
    r = np.where(np.isneginf(r), lo, r)                      # REP-117: -inf = closer than range_min
    valid = np.isfinite(r) & (r >= lo) & (r <= hi)
    rv = np.where(valid, r, 0.0)
    px, py = x0 + rv * np.cos(angles), y0 + rv * np.sin(angles)   # (N,) end points in base_link
    valid &= np.abs(np.arctan2(py, px)) <= half
    return float(np.hypot(px, py)[valid].min()) if valid.any() else float('inf')
