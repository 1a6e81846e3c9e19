"""Message conversion: round trips through real CDR (rclpy serialisation, rosbags deserialisation) and
every kind of garbage raising InputError that names the field."""
import array
import io
import math

import numpy as np
import pytest
from hypothesis import given, settings, strategies as st

from liquid_controller.errors import InputError
from liquid_controller.messages import convert

pytestmark = pytest.mark.ros

rclpy_serialization = pytest.importorskip('rclpy.serialization')
from builtin_interfaces.msg import Time  # noqa: E402
from geometry_msgs.msg import Twist, TwistStamped  # noqa: E402
from rosbags.typesys import Stores, get_typestore  # noqa: E402
from rosgraph_msgs.msg import Clock  # noqa: E402
from sensor_msgs.msg import CameraInfo, CompressedImage, Image, Range  # noqa: E402
from std_msgs.msg import Float64MultiArray  # noqa: E402

TYPESTORE = get_typestore(Stores.ROS2_KILTED)


def through_rclpy(msg):
    """Serialise to CDR and back with rclpy (what a subscriber receives)."""
    return rclpy_serialization.deserialize_message(rclpy_serialization.serialize_message(msg), type(msg))


def through_rosbags(msg, msgtype):
    """Serialise with rclpy, deserialise with rosbags (what a bag reader yields)."""
    return TYPESTORE.deserialize_cdr(rclpy_serialization.serialize_message(msg), msgtype)


def raw_image(encoding, height, width, step, data, is_bigendian=0):
    msg = Image(height=height, width=width, encoding=encoding, step=step, is_bigendian=is_bigendian)
    msg.data = array.array('B', bytes(data))
    return msg


def assert_field(exc_info, field):
    assert exc_info.value.name == field, str(exc_info.value)


# ------------------------------------------------------------------------------------------- images

def test_image_round_trip_rclpy_and_rosbags():
    rng = np.random.default_rng(0)
    img = rng.integers(0, 256, (64, 128, 3), dtype=np.uint8)
    msg = convert.encode_image(img, 12.25, frame_id='camera_link')
    assert (msg.encoding, msg.step, msg.header.frame_id) == ('rgb8', 384, 'camera_link')
    via_rclpy = through_rclpy(msg)
    via_rosbags = through_rosbags(msg, 'sensor_msgs/msg/Image')
    assert isinstance(via_rosbags.data, np.ndarray)  # the duck typing is exercised for real
    for decoded in (convert.decode_image(via_rclpy), convert.decode_image(via_rosbags)):
        np.testing.assert_array_equal(decoded, img)
    assert convert.stamp_to_sec(via_rosbags.header.stamp) == 12.25


def test_bgr8_encoding_round_trip_gives_rgb():
    img = np.zeros((2, 3, 3), np.uint8)
    img[..., 0] = 200  # red
    msg = convert.encode_image(img, 0.0, encoding='bgr8')
    assert bytes(msg.data[:3]) == bytes([0, 0, 200])  # stored blue, green, red
    np.testing.assert_array_equal(convert.decode_image(through_rclpy(msg)), img)


@pytest.mark.parametrize('encoding,pixel,expected', [
    ('rgb8', [10, 20, 30], [10, 20, 30]),
    ('bgr8', [10, 20, 30], [30, 20, 10]),
    ('rgba8', [10, 20, 30, 99], [10, 20, 30]),
    ('bgra8', [10, 20, 30, 99], [30, 20, 10]),
    ('mono8', [77], [77, 77, 77]),
])
def test_decode_encodings_with_row_padding(encoding, pixel, expected):
    height, width, pad = 3, 4, 5
    row = bytes(pixel) * width + bytes([255]) * pad  # padding bytes must be ignored
    msg = raw_image(encoding, height, width, len(row), row * height)
    out = convert.decode_image(through_rosbags(msg, 'sensor_msgs/msg/Image'))
    assert out.shape == (height, width, 3) and out.dtype == np.uint8
    assert (out == np.array(expected, np.uint8)).all()


def test_decode_image_accepts_bytes_and_ndarray_data():
    class Duck:  # a plain object with the Image fields: decoders are duck-typed
        encoding, height, width, step, is_bigendian = 'rgb8', 1, 2, 6, 0
    duck = Duck()
    for data in (bytes(range(6)), np.arange(6, dtype=np.uint8), bytearray(range(6))):
        duck.data = data
        np.testing.assert_array_equal(convert.decode_image(duck).reshape(-1), np.arange(6))


@pytest.mark.parametrize('kwargs,field', [
    (dict(encoding='16UC1', height=2, width=2, step=4, data=bytes(8)), 'encoding'),
    (dict(encoding='', height=2, width=2, step=6, data=bytes(12)), 'encoding'),
    (dict(encoding='rgb8', height=2, width=2, step=5, data=bytes(10)), 'step'),
    (dict(encoding='rgb8', height=2, width=2, step=6, data=bytes(11)), 'data'),
    (dict(encoding='rgb8', height=2, width=2, step=6, data=bytes(13)), 'data'),
    (dict(encoding='rgb8', height=2, width=2, step=6, data=b''), 'data'),
    (dict(encoding='rgb8', height=0, width=2, step=6, data=b''), 'height'),
    (dict(encoding='rgb8', height=2, width=0, step=6, data=bytes(12)), 'width'),
    (dict(encoding='rgb8', height=100000, width=2, step=6, data=bytes(12)), 'height'),
    (dict(encoding='rgb8', height=2, width=5000, step=15000, data=bytes(12)), 'width'),
    (dict(encoding='rgb8', height=1, width=1, step=3, data=bytes(3), is_bigendian=2), 'is_bigendian'),
])
def test_decode_image_garbage_names_field(kwargs, field):
    msg = raw_image(**kwargs)
    with pytest.raises(InputError) as exc_info:
        convert.decode_image(msg)
    assert_field(exc_info, field)
    # the same garbage read back from a bag gives the same error
    with pytest.raises(InputError) as exc_info:
        convert.decode_image(through_rosbags(msg, 'sensor_msgs/msg/Image'))
    assert_field(exc_info, field)


def test_decode_image_rejects_non_uint8_arrays_and_missing_fields():
    class Duck:
        encoding, height, width, step, is_bigendian = 'rgb8', 1, 1, 3, 0
        data = np.zeros(3, np.float32)
    with pytest.raises(InputError) as exc_info:
        convert.decode_image(Duck())
    assert_field(exc_info, 'data')
    with pytest.raises(InputError) as exc_info:
        convert.decode_image(object())
    assert_field(exc_info, 'encoding')


def test_encode_image_rejects_wrong_arrays():
    for bad in (np.zeros((4, 4), np.uint8), np.zeros((4, 4, 3), np.float32), np.zeros((0, 4, 3), np.uint8)):
        with pytest.raises(InputError) as exc_info:
            convert.encode_image(bad, 0.0)
        assert_field(exc_info, 'image')
    with pytest.raises(InputError) as exc_info:
        convert.encode_image(np.zeros((2, 2, 3), np.uint8), 0.0, encoding='yuv422')
    assert_field(exc_info, 'encoding')


def _compressed(img, fmt):
    from PIL import Image as PILImage
    buf = io.BytesIO()
    PILImage.fromarray(img).save(buf, format=fmt.upper())
    msg = CompressedImage(format=fmt)
    msg.data = array.array('B', buf.getvalue())
    return msg


def test_compressed_png_exact_and_jpeg_close():
    rng = np.random.default_rng(1)
    img = rng.integers(0, 256, (16, 24, 3), dtype=np.uint8)
    png = through_rosbags(_compressed(img, 'png'), 'sensor_msgs/msg/CompressedImage')
    np.testing.assert_array_equal(convert.decode_compressed_image(png), img)
    smooth = np.tile(np.linspace(0, 255, 24, dtype=np.uint8)[None, :, None], (16, 1, 3))
    jpeg = through_rclpy(_compressed(smooth, 'jpeg'))
    out = convert.decode_compressed_image(jpeg)
    assert out.shape == (16, 24, 3)
    assert np.abs(out.astype(int) - smooth.astype(int)).mean() < 4


def test_compressed_garbage_names_field():
    good = _compressed(np.zeros((4, 4, 3), np.uint8), 'png')
    corrupt = CompressedImage(format='png')
    corrupt.data = array.array('B', bytes(good.data)[:20])  # truncated PNG
    random = CompressedImage(format='jpeg')
    random.data = array.array('B', bytes(range(256)) * 4)
    empty = CompressedImage(format='png')
    wrong = CompressedImage(format='tiff')
    wrong.data = good.data
    for msg, field in ((corrupt, 'data'), (random, 'data'), (empty, 'data'), (wrong, 'format')):
        with pytest.raises(InputError) as exc_info:
            convert.decode_compressed_image(msg)
        assert_field(exc_info, field)


# --------------------------------------------------------------------------------------------- IMU

def test_imu_round_trip_with_and_without_orientation():
    q = np.array([0.0, 0.0, math.sin(0.3), math.cos(0.3)])
    with_q = convert.encode_imu(3.5, [0.1, -0.2, 0.5], [0.3, 0.0, 9.81], orientation=q,
                                angular_velocity_variance=1e-4)
    without = convert.encode_imu(3.5, [0.1, -0.2, 0.5], [0.3, 0.0, 9.81])
    assert with_q.header.frame_id == 'imu_link'
    assert without.orientation_covariance[0] == -1.0  # REP-145: no orientation estimate
    for via in (through_rclpy(with_q), through_rosbags(with_q, 'sensor_msgs/msg/Imu')):
        r = convert.decode_imu(via)
        assert r.stamp == 3.5 and r.frame_id == 'imu_link'
        np.testing.assert_allclose(r.angular_velocity, [0.1, -0.2, 0.5])
        np.testing.assert_allclose(r.linear_acceleration, [0.3, 0.0, 9.81])
        np.testing.assert_allclose(r.orientation, q)
    assert convert.decode_imu(through_rosbags(without, 'sensor_msgs/msg/Imu')).orientation is None
    unset = convert.encode_imu(3.5, [0, 0, 0], [0, 0, 9.81], orientation=[0, 0, 0, 1])
    unset.orientation.w = 0.0  # all-zero quaternion, flag not set: a driver that has no orientation
    assert convert.decode_imu(through_rclpy(unset)).orientation is None


@pytest.mark.parametrize('field,attr,value', [
    ('angular_velocity', 'x', float('nan')),
    ('angular_velocity', 'z', float('inf')),
    ('linear_acceleration', 'y', float('-inf')),
    ('orientation', 'w', float('nan')),
])
def test_imu_non_finite_names_field(field, attr, value):
    msg = convert.encode_imu(1.0, [0, 0, 0], [0, 0, 9.8], orientation=[0, 0, 0, 1])
    setattr(getattr(msg, field), attr, value)
    with pytest.raises(InputError) as exc_info:
        convert.decode_imu(through_rclpy(msg))
    assert_field(exc_info, field)


def test_imu_garbage_names_field():
    msg = convert.encode_imu(1.0, [0, 0, 0], [0, 0, 9.8], orientation=[0, 0, 0, 1])
    msg.orientation.w = 2.0
    with pytest.raises(InputError) as exc_info:
        convert.decode_imu(msg)
    assert_field(exc_info, 'orientation')
    ts = TYPESTORE.deserialize_cdr(rclpy_serialization.serialize_message(msg), 'sensor_msgs/msg/Imu')
    ts.header.stamp.nanosec = 2_000_000_000  # rosbags objects are mutable; rclpy would refuse this value
    with pytest.raises(InputError) as exc_info:
        convert.decode_imu(ts)
    assert_field(exc_info, 'header.stamp.nanosec')
    with pytest.raises(InputError) as exc_info:
        convert.encode_imu(0.0, [0, 0], [0, 0, 9.8])
    assert_field(exc_info, 'angular_velocity')
    with pytest.raises(InputError) as exc_info:
        convert.encode_imu(0.0, [0, 0, 0], [0, math.nan, 9.8])
    assert_field(exc_info, 'linear_acceleration')


# ---------------------------------------------------------------------------------------- odometry

def test_odometry_round_trip():
    msg = convert.encode_odometry(7.0, 1.5, -2.0, 2.5, 0.8, -0.3)
    assert (msg.header.frame_id, msg.child_frame_id) == ('odom', 'base_link')
    for via in (through_rclpy(msg), through_rosbags(msg, 'nav_msgs/msg/Odometry')):
        r = convert.decode_odometry(via)
        assert r.stamp == 7.0 and (r.frame_id, r.child_frame_id) == ('odom', 'base_link')
        np.testing.assert_allclose(r.position, [1.5, -2.0, 0.0])
        assert r.yaw == pytest.approx(2.5)
        np.testing.assert_allclose(r.linear, [0.8, 0, 0])
        np.testing.assert_allclose(r.angular, [0, 0, -0.3])


def test_odometry_garbage_names_field():
    msg = convert.encode_odometry(7.0, 1.5, -2.0, 2.5, 0.8, -0.3)
    msg.twist.twist.linear.x = math.nan
    with pytest.raises(InputError) as exc_info:
        convert.decode_odometry(msg)
    assert_field(exc_info, 'twist.twist.linear')
    msg = convert.encode_odometry(7.0, 1.5, -2.0, 2.5, 0.8, -0.3)
    msg.pose.pose.orientation.w = 0.0
    msg.pose.pose.orientation.z = 0.0
    with pytest.raises(InputError) as exc_info:
        convert.decode_odometry(msg)
    assert_field(exc_info, 'pose.pose.orientation')
    with pytest.raises(InputError) as exc_info:
        convert.encode_odometry(0.0, 0, 0, math.inf, 0, 0)
    assert_field(exc_info, 'odometry')


# -------------------------------------------------------------------------------- commands and misc

def test_twist_stamped_and_plain_round_trip():
    stamped = convert.encode_twist(0.7, -0.25, stamp=4.0)
    assert isinstance(stamped, TwistStamped) and stamped.header.frame_id == 'base_link'
    assert convert.decode_twist(through_rosbags(stamped, 'geometry_msgs/msg/TwistStamped')) == (4.0, 0.7, -0.25)
    plain = convert.encode_twist(0.7, -0.25, stamped=False)
    assert isinstance(plain, Twist)
    assert convert.decode_twist(through_rclpy(plain)) == (None, 0.7, -0.25)
    with pytest.raises(InputError) as exc_info:
        convert.encode_twist(math.nan, 0.0, stamp=0.0)
    assert_field(exc_info, 'command')
    with pytest.raises(InputError) as exc_info:
        convert.encode_twist(0.0, 0.0)
    assert_field(exc_info, 'stamp')


def test_camera_info_clock_range_and_float_array():
    info = through_rclpy(convert.encode_camera_info(1.0, 128, 64, 100.0, 100.0, 64.0, 32.0))
    assert isinstance(info, CameraInfo) and (info.width, info.height) == (128, 64)
    assert list(info.k) == [100.0, 0.0, 64.0, 0.0, 100.0, 32.0, 0.0, 0.0, 1.0]
    assert info.p[0] == 100.0 and info.p[2] == 64.0 and info.header.frame_id == 'camera_link'
    with pytest.raises(InputError) as exc_info:
        convert.encode_camera_info(1.0, 0, 64, 100.0, 100.0, 64.0, 32.0)
    assert_field(exc_info, 'width')
    clock = through_rclpy(convert.encode_clock(12.5))
    assert isinstance(clock, Clock) and convert.stamp_to_sec(clock.clock) == 12.5
    rng = through_rosbags(convert.encode_range(2.0, 1.25, 0.05, 4.0), 'sensor_msgs/msg/Range')
    assert convert.decode_range(rng) == (2.0, 1.25)
    assert convert.decode_range(through_rclpy(convert.encode_range(2.0, None, 0.05, 4.0)))[1] == math.inf
    assert isinstance(through_rclpy(convert.encode_range(0.0, 1.0, 0.05, 4.0)), Range)
    arr = through_rosbags(convert.encode_float_array([1.0, -2.0], ['a', 'b']), 'std_msgs/msg/Float64MultiArray')
    assert convert.decode_float_array(arr) == {'a': 1.0, 'b': -2.0}
    assert isinstance(through_rclpy(convert.encode_float_array([1.0], ['a'])), Float64MultiArray)
    with pytest.raises(InputError) as exc_info:
        convert.encode_float_array([1.0, 2.0], ['a'])
    assert_field(exc_info, 'values')


@settings(max_examples=200, deadline=None)
@given(st.floats(min_value=-2e9, max_value=2e9, allow_nan=False))
def test_stamp_round_trip(t):
    stamp = convert.sec_to_stamp(t)
    assert 0 <= stamp.nanosec < 1_000_000_000
    assert convert.stamp_to_sec(stamp) == pytest.approx(t, abs=1e-9 + abs(t) * 1e-15)
    assert convert.stamp_to_ns(stamp) == round(t * 1e9)


def test_stamp_garbage_names_field():
    for bad in (math.nan, math.inf, 'soon', 3e9):
        with pytest.raises(InputError) as exc_info:
            convert.sec_to_stamp(bad)
        assert_field(exc_info, 'stamp')

    class BadStamp:
        sec, nanosec = 1.5, 0
    with pytest.raises(InputError) as exc_info:
        convert.stamp_to_sec(BadStamp())
    assert_field(exc_info, 'stamp.sec')
    assert convert.stamp_to_sec(Time(sec=3, nanosec=500_000_000)) == 3.5


# ---------------------------------------------------------------------------------------------- TF

def test_encode_transform_and_tf_message():
    from liquid_controller.sim.bridge import odom_transform
    msg = through_rclpy(convert.encode_transform(3.5, odom_transform(1.0, 2.0, 0.5)))
    assert (msg.header.frame_id, msg.child_frame_id) == ('odom', 'base_link')
    assert convert.stamp_to_sec(msg.header.stamp) == 3.5
    assert (msg.transform.translation.x, msg.transform.translation.y) == (1.0, 2.0)
    assert msg.transform.rotation.z == pytest.approx(math.sin(0.25))

    class FakeTFMessage:  # stands in for tf2_msgs/TFMessage where tf2_msgs is not installed
        def __init__(self, transforms):
            self.transforms = transforms
    tf = convert.encode_tf(1.0, [odom_transform(0.0, 0.0, 0.0)] * 2, FakeTFMessage)
    assert len(tf.transforms) == 2 and tf.transforms[0].child_frame_id == 'base_link'
    if convert.tf_message_type() is None:
        with pytest.raises(InputError) as exc_info:
            convert.encode_tf(1.0, [])
        assert_field(exc_info, 'tf2_msgs')


def test_encode_transform_rejects_bad_transforms():
    class Bad:
        parent, child, translation, rotation = 'base_link', 'camera_link', (0.0, 0.0, 0.0), (0, 0, 0, 3)
    with pytest.raises(InputError) as exc_info:
        convert.encode_transform(0.0, Bad())
    assert_field(exc_info, 'transform.rotation')
    Bad.rotation, Bad.translation = (0, 0, 0, 1), (0.0, float('nan'), 0.0)
    with pytest.raises(InputError) as exc_info:
        convert.encode_transform(0.0, Bad())
    assert_field(exc_info, 'transform.translation')
