"""Message <-> numpy conversion for the ROS adapters (contract 4). Unit packing only, no maths.

Decoders are duck-typed: they read attributes by name, so they accept rclpy messages (where ``uint8[]``
fields are ``array.array``) and messages deserialised by ``rosbags`` (where they are ``np.ndarray``)
alike, and ``bytes``. Everything is validated; anything wrong raises
:class:`liquid_controller.errors.InputError` naming the message field (``encoding``, ``step``,
``data``, ``angular_velocity``, ...) so a node can turn it into a safe stop and a diagnostic.

Encoders return rclpy messages. rclpy message modules are imported lazily so that the decoders (used
by bag reading and training) do not need a working ROS installation.
"""
import array
import io
import math

import numpy as np

from liquid_controller.errors import InputError

# encoding -> (channels, index order that turns the stored channels into RGB)
IMAGE_ENCODINGS = {
    'rgb8': (3, (0, 1, 2)),
    'bgr8': (3, (2, 1, 0)),
    'rgba8': (4, (0, 1, 2)),
    'bgra8': (4, (2, 1, 0)),
    'mono8': (1, (0, 0, 0)),
}
# YUV 4:2:2, two pixels in four bytes. sensor_msgs/image_encodings: 'yuv422' is UYVY (U Y0 V Y1),
# 'yuv422_yuy2' is YUYV (Y0 U Y1 V); 'uyvy' / 'yuyv' are the names usb_cam and V4L2 use.
YUV422_ENCODINGS = {'yuv422': 'uyvy', 'uyvy': 'uyvy', 'yuv422_yuy2': 'yuyv', 'yuyv': 'yuyv'}
# Bayer mosaics, 8 bit: encoding -> colours of the 2x2 tile, row by row.
BAYER_ENCODINGS = {'bayer_rggb8': 'rggb', 'bayer_bggr8': 'bggr', 'bayer_gbrg8': 'gbrg',
                   'bayer_grbg8': 'grbg'}
SUPPORTED_ENCODINGS = tuple(sorted([*IMAGE_ENCODINGS, *YUV422_ENCODINGS, *BAYER_ENCODINGS, 'mono16']))
# Larger frames are rejected: a corrupt header must not make us allocate gigabytes.
MAX_IMAGE_SIDE = 4096
MAX_COMPRESSED_BYTES = 64 * 1024 * 1024


# --------------------------------------------------------------------------------------------- helpers

def _field(msg, name, path=None):
    """Read attribute ``name`` of ``msg``; a missing attribute is an InputError naming ``path``."""
    try:
        return getattr(msg, name)
    except AttributeError:
        raise InputError(path or name, type(msg).__name__, 'message has no such field') from None


def _as_bytes(data, name):
    """uint8[] field (bytes, bytearray, memoryview, array.array, np.ndarray, list) -> bytes-like."""
    if isinstance(data, (bytes, bytearray)):
        return bytes(data)
    if isinstance(data, memoryview):
        return data.tobytes()
    if isinstance(data, array.array):
        if data.itemsize != 1:
            raise InputError(name, f'array.array({data.typecode!r})', 'expected a uint8 array')
        return data.tobytes()
    if isinstance(data, np.ndarray):
        if data.dtype.itemsize != 1 or data.dtype.kind not in 'ub':
            raise InputError(name, f'ndarray({data.dtype})', 'expected a uint8 array')
        return np.ascontiguousarray(data).reshape(-1).view(np.uint8).tobytes()
    if isinstance(data, (list, tuple)):
        try:
            return bytes(data)
        except (TypeError, ValueError) as exc:
            raise InputError(name, f'{type(data).__name__} of {len(data)}', f'not bytes: {exc}') from None
    raise InputError(name, type(data).__name__, 'expected bytes or a uint8 array')


def _int_field(msg, name, path, low, high):
    value = _field(msg, name, path)
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)):
        raise InputError(path, value, 'expected an integer')
    value = int(value)
    if not low <= value <= high:
        raise InputError(path, value, f'must be in [{low}, {high}]')
    return value


def _vector(obj, names, path):
    """Finite float64 vector from attributes ``names`` of ``obj`` (a Vector3 or Quaternion)."""
    try:
        values = np.array([float(getattr(obj, n)) for n in names], dtype=np.float64)
    except (AttributeError, TypeError, ValueError) as exc:
        raise InputError(path, type(obj).__name__, f'expected fields {names}: {exc}') from None
    if not np.all(np.isfinite(values)):
        raise InputError(path, values.tolist(), 'must be finite (NaN or Inf received)')
    return values


def _covariance(msg, name, path, size):
    raw = _field(msg, name, path)
    try:
        cov = np.asarray(raw, dtype=np.float64).reshape(-1)
    except (TypeError, ValueError) as exc:
        raise InputError(path, type(raw).__name__, f'not numeric: {exc}') from None
    if cov.shape != (size,):
        raise InputError(path, cov.shape, f'expected {size} values')
    return cov


def _header(msg, path='header'):
    return _field(msg, 'header', path)


# ------------------------------------------------------------------------------------------------ time

def stamp_to_sec(stamp, name='stamp'):
    """builtin_interfaces/Time (rclpy or rosbags) -> float seconds. Validates sec and nanosec."""
    sec = _field(stamp, 'sec', f'{name}.sec')
    nanosec = _field(stamp, 'nanosec', f'{name}.nanosec')
    if isinstance(sec, bool) or not isinstance(sec, (int, np.integer)):
        raise InputError(f'{name}.sec', sec, 'expected an integer')
    if isinstance(nanosec, bool) or not isinstance(nanosec, (int, np.integer)):
        raise InputError(f'{name}.nanosec', nanosec, 'expected an integer')
    if not 0 <= int(nanosec) < 1_000_000_000:
        raise InputError(f'{name}.nanosec', nanosec, 'must be in [0, 1e9)')
    return int(sec) + int(nanosec) * 1e-9


def stamp_to_ns(stamp, name='stamp'):
    """builtin_interfaces/Time -> integer nanoseconds (exact; for bag time stamps)."""
    stamp_to_sec(stamp, name)  # validation
    return int(stamp.sec) * 1_000_000_000 + int(stamp.nanosec)


def _split_seconds(t, name):
    try:
        t = float(t)
    except (TypeError, ValueError):
        raise InputError(name, t, 'expected a number of seconds') from None
    if not math.isfinite(t):
        raise InputError(name, t, 'must be finite')
    total_ns = int(round(t * 1e9))
    sec, nanosec = divmod(total_ns, 1_000_000_000)
    if not -2**31 <= sec < 2**31:
        raise InputError(name, t, 'out of the int32 seconds range of builtin_interfaces/Time')
    return sec, nanosec


def sec_to_stamp(t, name='stamp'):
    """float seconds -> rclpy builtin_interfaces/Time (rounded to the nearest nanosecond)."""
    from builtin_interfaces.msg import Time
    sec, nanosec = _split_seconds(t, name)
    return Time(sec=sec, nanosec=nanosec)


def _make_header(stamp, frame_id):
    from std_msgs.msg import Header
    if not isinstance(frame_id, str):
        raise InputError('frame_id', frame_id, 'expected a string')
    return Header(stamp=sec_to_stamp(stamp), frame_id=frame_id)


# ------------------------------------------------------------------------------------------- decoders

def _bytes_per_pixel(encoding):
    if encoding in IMAGE_ENCODINGS:
        return IMAGE_ENCODINGS[encoding][0]
    if encoding in YUV422_ENCODINGS or encoding == 'mono16':
        return 2
    return 1  # Bayer


def decode_image(msg):
    """sensor_msgs/Image -> (H, W, 3) uint8 RGB array (a copy, C-contiguous).

    Encodings (the names of sensor_msgs/image_encodings, case-insensitive):

    - rgb8, bgr8, rgba8, bgra8 (alpha dropped), mono8 (replicated to 3 channels);
    - yuv422 (= UYVY) and uyvy, yuv422_yuy2 (= YUYV) and yuyv: BT.601 limited range, OpenCV's
      integer arithmetic (equal to ``cv2.cvtColor(..., COLOR_YUV2RGB_UYVY / _YUY2)``); width even;
    - bayer_rggb8, bayer_bggr8, bayer_gbrg8, bayer_grbg8: bilinear demosaicing, equal to OpenCV's
      default ``COLOR_Bayer*2RGB`` (see :func:`_demosaic_bilinear`); width and height at least 3;
    - mono16: scaled to 8 bit as round(value * 255 / 65535), byte order from ``is_bigendian``.

    ``step`` may include row padding; ``is_bigendian`` must be 0/1 (it matters for mono16 only).
    Anything wrong raises InputError naming the field (``encoding``, ``width``, ``step``, ``data``).
    """
    encoding = _field(msg, 'encoding')
    key = encoding.lower() if isinstance(encoding, str) else None
    if key not in SUPPORTED_ENCODINGS:
        raise InputError('encoding', encoding, f'unsupported; expected one of {list(SUPPORTED_ENCODINGS)}')
    height = _int_field(msg, 'height', 'height', 1, MAX_IMAGE_SIDE)
    width = _int_field(msg, 'width', 'width', 1, MAX_IMAGE_SIDE)
    if key in YUV422_ENCODINGS and width % 2:
        raise InputError('width', width, f'must be even for {encoding} (two pixels share U and V)')
    if key in BAYER_ENCODINGS and (width < 3 or height < 3):
        raise InputError('width' if width < 3 else 'height', min(width, height),
                         f'must be at least 3 for {encoding} (demosaicing needs neighbours)')
    bpp = _bytes_per_pixel(key)
    step = _int_field(msg, 'step', 'step', 0, 2**32 - 1)
    if step < width * bpp:
        raise InputError('step', step, f'smaller than width*bytes_per_pixel = {width * bpp} for {encoding}')
    big = _field(msg, 'is_bigendian')
    if isinstance(big, bool):
        big = int(big)
    if not isinstance(big, (int, np.integer)) or int(big) not in (0, 1):
        raise InputError('is_bigendian', big, 'must be 0 or 1')
    data = _as_bytes(_field(msg, 'data'), 'data')
    if len(data) == 0:
        raise InputError('data', 0, 'image data is empty')
    if len(data) != step * height:
        raise InputError('data', len(data), f'length must equal step*height = {step * height}')
    rows = np.frombuffer(data, dtype=np.uint8).reshape(height, step)[:, :width * bpp]
    if key in IMAGE_ENCODINGS:
        channels, order = IMAGE_ENCODINGS[key]
        pixels = rows.reshape(height, width, channels)
        return np.ascontiguousarray(pixels[:, :, list(order)])  # (H, W, 3) RGB
    if key in YUV422_ENCODINGS:
        return _yuv422_to_rgb(rows, YUV422_ENCODINGS[key] == 'uyvy')
    if key in BAYER_ENCODINGS:
        return _demosaic_bilinear(rows, BAYER_ENCODINGS[key])
    # mono16: round(v * 255 / 65535) = round(v / 257), never a tie for integers, so it is exact.
    values = np.ascontiguousarray(rows).view('>u2' if int(big) else '<u2').astype(np.uint32)
    gray = ((values * 2 + 257) // 514).astype(np.uint8)
    return np.ascontiguousarray(np.repeat(gray[:, :, None], 3, axis=2))


# BT.601 limited-range YUV -> RGB in OpenCV's fixed point (Q20), so the result equals cv2.cvtColor's
# bit for bit rather than to within a rounding step.
_YUV_SHIFT = 20
_YUV_CY, _YUV_CVR, _YUV_CVG, _YUV_CUG, _YUV_CUB = 1220542, 1673527, -852492, -409993, 2116026


def _yuv422_to_rgb(rows, uyvy):
    """(H, 2W) uint8 packed YUV 4:2:2 -> (H, W, 3) RGB. ``uyvy``: byte order U Y0 V Y1, else Y0 U Y1 V."""
    h = rows.shape[0]
    quads = rows.reshape(h, -1, 4).astype(np.int64)
    if uyvy:
        u, y0, v, y1 = (quads[..., i] for i in range(4))
    else:
        y0, u, y1, v = (quads[..., i] for i in range(4))
    y = np.stack([y0, y1], axis=-1).reshape(h, -1)
    u = np.repeat(u - 128, 2, axis=1)
    v = np.repeat(v - 128, 2, axis=1)
    yy = np.maximum(y - 16, 0) * _YUV_CY
    half = 1 << (_YUV_SHIFT - 1)
    r = (yy + _YUV_CVR * v + half) >> _YUV_SHIFT
    g = (yy + _YUV_CVG * v + _YUV_CUG * u + half) >> _YUV_SHIFT
    b = (yy + _YUV_CUB * u + half) >> _YUV_SHIFT
    return np.clip(np.stack([r, g, b], axis=-1), 0, 255).astype(np.uint8)


def _demosaic_bilinear(raw, pattern):
    """(H, W) uint8 Bayer mosaic -> (H, W, 3) RGB by bilinear interpolation, as OpenCV does it.

    ``pattern``: colours of the top-left 2x2 tile, row by row ('rggb', ...). A missing colour is the
    rounded mean of the nearest samples of that colour: 4 edge neighbours (green at red/blue sites),
    4 diagonal neighbours (blue at red sites and vice versa), or the 2 row / column neighbours (red and
    blue at green sites). Like OpenCV, the outermost rows and columns copy their inner neighbours.
    """
    h, w = raw.shape
    x = raw.astype(np.int32)
    p = np.pad(x, 1, mode='reflect')  # only interior results are kept; the padding value is irrelevant

    def shifted(dy, dx):
        return p[1 + dy:1 + dy + h, 1 + dx:1 + dx + w]

    cross = (shifted(-1, 0) + shifted(1, 0) + shifted(0, -1) + shifted(0, 1) + 2) >> 2
    diagonal = (shifted(-1, -1) + shifted(-1, 1) + shifted(1, -1) + shifted(1, 1) + 2) >> 2
    across = (shifted(0, -1) + shifted(0, 1) + 1) >> 1
    updown = (shifted(-1, 0) + shifted(1, 0) + 1) >> 1
    tile = np.array(list(pattern)).reshape(2, 2)
    rows, cols = np.arange(h)[:, None] % 2, np.arange(w)[None, :] % 2
    site = tile[rows, cols]                 # colour sampled at each pixel
    row_mate = tile[rows, 1 - cols]         # colour of the horizontal neighbours
    out = np.empty((h, w, 3), np.uint8)
    for index, colour in enumerate('rgb'):
        if colour == 'g':
            value = np.where(site == 'g', x, cross)
        else:
            value = np.where(site == colour, x, diagonal)
            value = np.where((site == 'g') & (row_mate == colour), across, value)
            value = np.where((site == 'g') & (row_mate != colour), updown, value)
        out[..., index] = value
    out[:, 0], out[:, -1] = out[:, 1], out[:, -2]
    out[0], out[-1] = out[1], out[-2]
    return out


def decode_compressed_image(msg):
    """sensor_msgs/CompressedImage (jpeg or png) -> (H, W, 3) uint8 RGB array."""
    from PIL import Image as PILImage, UnidentifiedImageError
    fmt = _field(msg, 'format')
    if not isinstance(fmt, str):
        raise InputError('format', fmt, 'expected a string')
    lowered = fmt.lower()
    # image_transport writes e.g. "rgb8; jpeg compressed bgr8"; the codec name is what matters here
    if not any(codec in lowered for codec in ('jpeg', 'jpg', 'png')):
        raise InputError('format', fmt, 'unsupported; expected a jpeg or png CompressedImage')
    data = _as_bytes(_field(msg, 'data'), 'data')
    if len(data) == 0:
        raise InputError('data', 0, 'compressed image data is empty')
    if len(data) > MAX_COMPRESSED_BYTES:
        raise InputError('data', len(data), f'larger than {MAX_COMPRESSED_BYTES} bytes')
    try:
        with PILImage.open(io.BytesIO(data)) as img:
            if img.format not in ('JPEG', 'PNG'):
                raise InputError('format', img.format, 'payload is neither JPEG nor PNG')
            if img.width > MAX_IMAGE_SIDE or img.height > MAX_IMAGE_SIDE:
                raise InputError('data', (img.height, img.width), f'side larger than {MAX_IMAGE_SIDE}')
            pixels = np.asarray(img.convert('RGB'), dtype=np.uint8)
    except InputError:
        raise
    except (UnidentifiedImageError, OSError, SyntaxError, ValueError) as exc:
        raise InputError('data', f'{len(data)} bytes', f'corrupt {fmt} image: {exc}') from None
    return np.ascontiguousarray(pixels)  # (H, W, 3)


class ImuReading:
    """One decoded sensor_msgs/Imu sample (float64 arrays; orientation xyzw or None)."""

    __slots__ = ('stamp', 'frame_id', 'angular_velocity', 'linear_acceleration', 'orientation')

    def __init__(self, stamp, frame_id, angular_velocity, linear_acceleration, orientation):
        self.stamp = stamp                                # float seconds
        self.frame_id = frame_id
        self.angular_velocity = angular_velocity          # (3,) rad/s
        self.linear_acceleration = linear_acceleration    # (3,) m/s^2
        self.orientation = orientation                    # (4,) xyzw, or None when not provided

    def __repr__(self):
        return (f'ImuReading(stamp={self.stamp!r}, angular_velocity={self.angular_velocity.tolist()}, '
                f'linear_acceleration={self.linear_acceleration.tolist()}, '
                f'orientation={None if self.orientation is None else self.orientation.tolist()})')


def decode_imu(msg):
    """sensor_msgs/Imu -> ImuReading. Orientation is None when orientation_covariance[0] == -1 (REP-145)
    or when the quaternion is all zeros (drivers that leave it unset)."""
    header = _header(msg)
    stamp = stamp_to_sec(_field(header, 'stamp', 'header.stamp'), 'header.stamp')
    frame_id = str(_field(header, 'frame_id', 'header.frame_id'))
    gyro = _vector(_field(msg, 'angular_velocity'), ('x', 'y', 'z'), 'angular_velocity')
    accel = _vector(_field(msg, 'linear_acceleration'), ('x', 'y', 'z'), 'linear_acceleration')
    cov = _covariance(msg, 'orientation_covariance', 'orientation_covariance', 9)
    if cov[0] == -1.0:
        orientation = None
    else:
        orientation = _vector(_field(msg, 'orientation'), ('x', 'y', 'z', 'w'), 'orientation')
        norm = float(np.linalg.norm(orientation))
        if norm == 0.0:
            # Many drivers without an orientation estimate leave the quaternion all zero and forget
            # the REP-145 flag: read it as "not provided" rather than refusing the whole sample.
            orientation = None
        elif abs(norm - 1.0) > 1e-3:
            raise InputError('orientation', orientation.tolist(),
                             f'not a unit quaternion (norm {norm:.6f}); set orientation_covariance[0]=-1 '
                             'when there is no orientation')
    return ImuReading(stamp, frame_id, gyro, accel, orientation)


class OdometryReading:
    """One decoded nav_msgs/Odometry message (planar: x, y, yaw; body-frame v, w)."""

    __slots__ = ('stamp', 'frame_id', 'child_frame_id', 'position', 'orientation', 'linear', 'angular')

    def __init__(self, stamp, frame_id, child_frame_id, position, orientation, linear, angular):
        self.stamp = stamp                    # float seconds
        self.frame_id = frame_id              # e.g. 'odom'
        self.child_frame_id = child_frame_id  # e.g. 'base_link'
        self.position = position              # (3,) m in frame_id
        self.orientation = orientation        # (4,) xyzw
        self.linear = linear                  # (3,) m/s in child_frame_id
        self.angular = angular                # (3,) rad/s in child_frame_id

    @property
    def yaw(self):
        """Heading about z (rad); reading a yaw out of a quaternion is unpacking, not estimation."""
        x, y, z, w = self.orientation
        return math.atan2(2.0 * (w * z + x * y), 1.0 - 2.0 * (y * y + z * z))

    def __repr__(self):
        return (f'OdometryReading(stamp={self.stamp!r}, position={self.position.tolist()}, '
                f'yaw={self.yaw:.4f}, linear={self.linear.tolist()}, angular={self.angular.tolist()})')


def decode_odometry(msg):
    """nav_msgs/Odometry -> OdometryReading (validated, finite, unit quaternion)."""
    header = _header(msg)
    stamp = stamp_to_sec(_field(header, 'stamp', 'header.stamp'), 'header.stamp')
    frame_id = str(_field(header, 'frame_id', 'header.frame_id'))
    child = str(_field(msg, 'child_frame_id'))
    pose = _field(_field(msg, 'pose'), 'pose', 'pose.pose')
    twist = _field(_field(msg, 'twist'), 'twist', 'twist.twist')
    position = _vector(_field(pose, 'position', 'pose.pose.position'), ('x', 'y', 'z'), 'pose.pose.position')
    orientation = _vector(_field(pose, 'orientation', 'pose.pose.orientation'), ('x', 'y', 'z', 'w'),
                          'pose.pose.orientation')
    norm = float(np.linalg.norm(orientation))
    if abs(norm - 1.0) > 1e-3:
        raise InputError('pose.pose.orientation', orientation.tolist(),
                         f'not a unit quaternion (norm {norm:.6f})')
    linear = _vector(_field(twist, 'linear', 'twist.twist.linear'), ('x', 'y', 'z'), 'twist.twist.linear')
    angular = _vector(_field(twist, 'angular', 'twist.twist.angular'), ('x', 'y', 'z'), 'twist.twist.angular')
    return OdometryReading(stamp, frame_id, child, position, orientation, linear, angular)


def decode_twist(msg):
    """geometry_msgs/TwistStamped or Twist -> (stamp float seconds or None, v m/s, w rad/s)."""
    stamp = None
    if hasattr(msg, 'header') and hasattr(msg, 'twist'):
        stamp = stamp_to_sec(_field(msg.header, 'stamp', 'header.stamp'), 'header.stamp')
        twist, prefix = msg.twist, 'twist.'
    else:
        twist, prefix = msg, ''
    linear = _vector(_field(twist, 'linear', prefix + 'linear'), ('x', 'y', 'z'), prefix + 'linear')
    angular = _vector(_field(twist, 'angular', prefix + 'angular'), ('x', 'y', 'z'), prefix + 'angular')
    return stamp, float(linear[0]), float(angular[2])


def decode_range(msg):
    """sensor_msgs/Range -> (stamp seconds, range m). Out-of-limits readings are returned as +inf
    (REP-117: nothing detected), NaN is an InputError."""
    header = _header(msg)
    stamp = stamp_to_sec(_field(header, 'stamp', 'header.stamp'), 'header.stamp')
    value = float(_field(msg, 'range'))
    if math.isnan(value):
        raise InputError('range', value, 'NaN range reading')
    lo, hi = float(_field(msg, 'min_range')), float(_field(msg, 'max_range'))
    if not (lo <= value <= hi):
        value = math.inf
    return stamp, value


# ------------------------------------------------------------------------------------------- encoders

def _finite_vector(values, size, name):
    try:
        arr = np.asarray(values, dtype=np.float64).reshape(-1)
    except (TypeError, ValueError):
        raise InputError(name, values, f'expected {size} numbers') from None
    if arr.shape != (size,):
        raise InputError(name, values, f'expected {size} numbers')
    if not np.all(np.isfinite(arr)):
        raise InputError(name, arr.tolist(), 'must be finite')
    return arr


def encode_image(image, stamp, frame_id='camera_link', encoding='rgb8'):
    """(H, W, 3) uint8 RGB array -> sensor_msgs/Image (rgb8 or bgr8, no row padding)."""
    from sensor_msgs.msg import Image
    image = np.asarray(image)
    if image.dtype != np.uint8 or image.ndim != 3 or image.shape[2] != 3:
        raise InputError('image', f'{image.dtype}{image.shape}', 'expected an (H, W, 3) uint8 RGB array')
    h, w = image.shape[:2]
    if not (1 <= h <= MAX_IMAGE_SIDE and 1 <= w <= MAX_IMAGE_SIDE):
        raise InputError('image', image.shape, f'sides must be in [1, {MAX_IMAGE_SIDE}]')
    if encoding == 'bgr8':
        image = image[:, :, ::-1]
    elif encoding != 'rgb8':
        raise InputError('encoding', encoding, "expected 'rgb8' or 'bgr8'")
    msg = Image(header=_make_header(stamp, frame_id), height=h, width=w, encoding=encoding,
                is_bigendian=0, step=w * 3)
    msg.data = array.array('B', np.ascontiguousarray(image).tobytes())
    return msg


def encode_camera_info(stamp, width, height, fx, fy, cx, cy, frame_id='camera_link'):
    """Pinhole sensor_msgs/CameraInfo without distortion (plumb_bob with zero coefficients)."""
    from sensor_msgs.msg import CameraInfo
    for name, value in (('width', width), ('height', height)):
        integer = isinstance(value, (int, np.integer)) and not isinstance(value, bool)
        if not integer or not 1 <= value <= MAX_IMAGE_SIDE:
            raise InputError(name, value, f'expected an integer in [1, {MAX_IMAGE_SIDE}]')
    fx, fy, cx, cy = _finite_vector((fx, fy, cx, cy), 4, 'intrinsics')
    if fx <= 0 or fy <= 0:
        raise InputError('intrinsics', (fx, fy), 'focal lengths must be positive')
    msg = CameraInfo(header=_make_header(stamp, frame_id), width=int(width), height=int(height),
                     distortion_model='plumb_bob')
    msg.d = [0.0] * 5
    msg.k = [fx, 0.0, cx, 0.0, fy, cy, 0.0, 0.0, 1.0]
    msg.r = [1.0, 0.0, 0.0, 0.0, 1.0, 0.0, 0.0, 0.0, 1.0]
    msg.p = [fx, 0.0, cx, 0.0, 0.0, fy, cy, 0.0, 0.0, 0.0, 1.0, 0.0]
    return msg


def encode_imu(stamp, angular_velocity, linear_acceleration, orientation=None, frame_id='imu_link',
               angular_velocity_variance=0.0, linear_acceleration_variance=0.0,
               orientation_variance=0.0):
    """One IMU sample -> sensor_msgs/Imu. ``orientation`` xyzw or None (covariance[0] = -1, REP-145).

    Variances fill the diagonals of the covariance matrices (0 = unknown, as REP-145 allows).
    """
    from sensor_msgs.msg import Imu
    msg = Imu(header=_make_header(stamp, frame_id))
    gyro = _finite_vector(angular_velocity, 3, 'angular_velocity')
    accel = _finite_vector(linear_acceleration, 3, 'linear_acceleration')
    msg.angular_velocity.x, msg.angular_velocity.y, msg.angular_velocity.z = gyro.tolist()
    msg.linear_acceleration.x, msg.linear_acceleration.y, msg.linear_acceleration.z = accel.tolist()
    msg.angular_velocity_covariance = _diagonal(angular_velocity_variance, 'angular_velocity_variance')
    msg.linear_acceleration_covariance = _diagonal(linear_acceleration_variance,
                                                   'linear_acceleration_variance')
    if orientation is None:
        cov = np.zeros(9)
        cov[0] = -1.0
        msg.orientation_covariance = cov
    else:
        q = _finite_vector(orientation, 4, 'orientation')
        if abs(np.linalg.norm(q) - 1.0) > 1e-3:
            raise InputError('orientation', q.tolist(), 'not a unit quaternion')
        msg.orientation.x, msg.orientation.y, msg.orientation.z, msg.orientation.w = q.tolist()
        msg.orientation_covariance = _diagonal(orientation_variance, 'orientation_variance')
    return msg


_ZERO_COVARIANCE = np.zeros(9)


def _diagonal(variance, name):
    """3x3 diagonal covariance (flattened, 9) with ``variance`` on the diagonal."""
    if variance == 0.0:  # the common case, on every IMU sample: skip validation and allocation
        return _ZERO_COVARIANCE.copy()  # a copy: rclpy keeps the array object it is given
    v = float(_finite_vector([variance], 1, name)[0])
    if v < 0:
        raise InputError(name, v, 'must be >= 0')
    return np.diag([v, v, v]).reshape(-1)


def yaw_to_quaternion(yaw):
    """Planar heading -> (x, y, z, w) quaternion about +z (unit packing for the 2-D rover)."""
    half = 0.5 * float(yaw)
    return (0.0, 0.0, math.sin(half), math.cos(half))


def encode_odometry(stamp, x, y, yaw, v, w, frame_id='odom', child_frame_id='base_link',
                    pose_variance=None, twist_variance=None):
    """Planar odometry -> nav_msgs/Odometry (pose in ``frame_id``, twist in ``child_frame_id``).

    ``pose_variance`` / ``twist_variance``: optional 6 diagonal variances (x, y, z, roll, pitch, yaw).
    """
    from nav_msgs.msg import Odometry
    x, y, yaw, v, w = _finite_vector((x, y, yaw, v, w), 5, 'odometry')
    msg = Odometry(header=_make_header(stamp, frame_id), child_frame_id=child_frame_id)
    msg.pose.pose.position.x, msg.pose.pose.position.y = float(x), float(y)
    q = yaw_to_quaternion(yaw)
    (msg.pose.pose.orientation.x, msg.pose.pose.orientation.y,
     msg.pose.pose.orientation.z, msg.pose.pose.orientation.w) = q
    msg.twist.twist.linear.x = float(v)
    msg.twist.twist.angular.z = float(w)
    if pose_variance is not None:
        msg.pose.covariance = np.diag(_finite_vector(pose_variance, 6, 'pose_variance')).reshape(-1)
    if twist_variance is not None:
        msg.twist.covariance = np.diag(_finite_vector(twist_variance, 6, 'twist_variance')).reshape(-1)
    return msg


def encode_twist(v, w, stamp=None, frame_id='base_link', stamped=True):
    """(v m/s, w rad/s) -> geometry_msgs/TwistStamped (``stamped``, needs ``stamp``) or Twist."""
    from geometry_msgs.msg import Twist, TwistStamped
    v, w = _finite_vector((v, w), 2, 'command')
    twist = Twist()
    twist.linear.x = float(v)
    twist.angular.z = float(w)
    if not stamped:
        return twist
    if stamp is None:
        raise InputError('stamp', stamp, 'a TwistStamped needs a stamp')
    return TwistStamped(header=_make_header(stamp, frame_id), twist=twist)


def encode_range(stamp, value, min_range, max_range, field_of_view=0.05, frame_id='range_link'):
    """A forward range reading -> sensor_msgs/Range (ULTRASOUND=0/INFRARED=1: we say INFRARED).

    ``value`` None or +inf means nothing in range: published as +inf (REP-117).
    """
    from sensor_msgs.msg import Range
    lo, hi, fov = _finite_vector((min_range, max_range, field_of_view), 3, 'range_limits')
    if value is None:
        value = math.inf
    value = float(value)
    if math.isnan(value):
        raise InputError('range', value, 'NaN range reading')
    return Range(header=_make_header(stamp, frame_id), radiation_type=Range.INFRARED,
                 field_of_view=float(fov), min_range=float(lo), max_range=float(hi), range=value)


def encode_clock(stamp):
    """Sim time (float seconds) -> rosgraph_msgs/Clock."""
    from rosgraph_msgs.msg import Clock
    return Clock(clock=sec_to_stamp(stamp, 'clock'))


def encode_float_array(values, labels):
    """Labelled vector -> std_msgs/Float64MultiArray with one dimension whose label lists the fields.

    layout.dim[0].label is the comma-separated field names, so a reader needs no out-of-band schema.
    """
    from std_msgs.msg import Float64MultiArray, MultiArrayDimension
    arr = np.asarray(values, dtype=np.float64).reshape(-1)
    labels = list(labels)
    if arr.shape[0] != len(labels):
        raise InputError('values', arr.shape, f'expected {len(labels)} values for labels {labels}')
    msg = Float64MultiArray()
    msg.layout.dim = [MultiArrayDimension(label=','.join(labels), size=len(labels), stride=len(labels))]
    msg.data = arr.tolist()
    return msg


def decode_float_array(msg):
    """std_msgs/Float64MultiArray written by encode_float_array -> {label: value}."""
    layout = _field(msg, 'layout')
    dims = list(_field(layout, 'dim', 'layout.dim'))
    if len(dims) != 1:
        raise InputError('layout.dim', len(dims), 'expected one labelled dimension')
    labels = str(dims[0].label).split(',')
    data = np.asarray(_field(msg, 'data'), dtype=np.float64).reshape(-1)
    if data.shape[0] != len(labels):
        raise InputError('data', data.shape[0], f'expected {len(labels)} values for labels {labels}')
    return dict(zip(labels, data.tolist()))


# ------------------------------------------------------------------------------------------------- TF

def encode_transform(stamp, transform):
    """A :class:`liquid_controller.sim.bridge.FrameTransform`-like object (``parent``, ``child``,
    ``translation`` xyz, ``rotation`` xyzw) -> geometry_msgs/TransformStamped."""
    from geometry_msgs.msg import TransformStamped
    parent = _field(transform, 'parent')
    child = _field(transform, 'child')
    if not isinstance(child, str) or not child:
        raise InputError('child_frame_id', child, 'expected a non-empty string')
    t = _finite_vector(_field(transform, 'translation'), 3, 'transform.translation')
    q = _finite_vector(_field(transform, 'rotation'), 4, 'transform.rotation')
    if abs(np.linalg.norm(q) - 1.0) > 1e-6:
        raise InputError('transform.rotation', q.tolist(), 'not a unit quaternion')
    msg = TransformStamped(header=_make_header(stamp, parent), child_frame_id=child)
    msg.transform.translation.x, msg.transform.translation.y, msg.transform.translation.z = t.tolist()
    (msg.transform.rotation.x, msg.transform.rotation.y,
     msg.transform.rotation.z, msg.transform.rotation.w) = q.tolist()
    return msg


def tf_message_type():
    """tf2_msgs/TFMessage, or None when tf2_msgs is not importable.

    tf2_msgs is not among the ROS 2 wheels on PyPI; a system ROS 2 (Jazzy, Kilted) has it. Callers
    publish TF only when this returns a class and say once that they do not otherwise.
    """
    try:
        from tf2_msgs.msg import TFMessage
    except ImportError:
        return None
    return TFMessage


def encode_tf(stamp, transforms, message_type=None):
    """Transforms -> tf2_msgs/TFMessage (``message_type`` overrides the class, e.g. for tests).

    Raises InputError naming ``tf2_msgs`` when the message package is missing.
    """
    cls = message_type or tf_message_type()
    if cls is None:
        raise InputError('tf2_msgs', None, 'tf2_msgs is not installed (not on PyPI; use a system ROS 2)')
    return cls(transforms=[encode_transform(stamp, t) for t in transforms])
