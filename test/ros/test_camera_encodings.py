"""Camera encodings real drivers publish, each checked against OpenCV on random frames.

The oracle is ``cv2.cvtColor`` (opencv-python-headless, a test dependency only; the package decodes
with numpy). Tolerance: exact equality for every encoding. YUV 4:2:2 uses OpenCV's own fixed-point
BT.601 coefficients, Bayer uses the same bilinear rule and rounding as OpenCV's default
``COLOR_Bayer*2RGB`` (the edge-aware ``_EA`` and ``_VNG`` variants are different algorithms and are
not what is matched), and mono16 -> 8 bit is ``convertScaleAbs(alpha=255/65535)``.
Also: row padding is ignored, frames go through real CDR (rosbags deserialisation), and invalid
messages raise InputError naming the field.
"""
import array
import zlib

import numpy as np
import pytest

from liquid_controller.errors import InputError
from liquid_controller.messages import convert

pytestmark = pytest.mark.ros
cv2 = pytest.importorskip('cv2')
from sensor_msgs.msg import Image  # noqa: E402
from rclpy.serialization import serialize_message  # noqa: E402
from rosbags.typesys import Stores, get_typestore  # noqa: E402

TYPESTORE = get_typestore(Stores.ROS2_KILTED)
SHAPES = [(64, 128), (37, 50), (3, 4)]  # (height, width); odd heights, the smallest legal size


def rng(*key):
    """Random generator seeded from the test case (stable across runs, unlike hash())."""
    return np.random.default_rng(zlib.crc32(repr(key).encode()))


def image_msg(encoding, raw, pad=0, is_bigendian=0):
    """Image with ``raw`` (H, row bytes) as data plus ``pad`` junk bytes per row, through CDR."""
    raw = np.asarray(raw, np.uint8)
    rows = np.concatenate([raw, np.full((raw.shape[0], pad), 0xAB, np.uint8)], axis=1)
    msg = Image(height=raw.shape[0], width=0, encoding=encoding, step=rows.shape[1],
                is_bigendian=is_bigendian)
    msg.data = array.array('B', rows.tobytes())
    return msg


def decode(msg, width):
    msg.width = width
    return convert.decode_image(TYPESTORE.deserialize_cdr(serialize_message(msg), 'sensor_msgs/msg/Image'))


@pytest.mark.parametrize('shape', SHAPES)
@pytest.mark.parametrize('encoding,code', [
    ('yuv422', 'COLOR_YUV2RGB_UYVY'), ('uyvy', 'COLOR_YUV2RGB_UYVY'),
    ('yuv422_yuy2', 'COLOR_YUV2RGB_YUY2'), ('yuyv', 'COLOR_YUV2RGB_YUY2'),
])
def test_yuv422_equals_opencv(encoding, code, shape):
    h, w = shape
    raw = rng(encoding, shape).integers(0, 256, (h, 2 * w), np.uint8)
    expected = cv2.cvtColor(raw.reshape(h, w, 2), getattr(cv2, code))
    np.testing.assert_array_equal(decode(image_msg(encoding, raw, pad=6), w), expected)


@pytest.mark.parametrize('shape', SHAPES + [(5, 7)])
@pytest.mark.parametrize('encoding,code', [
    ('bayer_rggb8', 'COLOR_BayerRGGB2RGB'), ('bayer_bggr8', 'COLOR_BayerBGGR2RGB'),
    ('bayer_gbrg8', 'COLOR_BayerGBRG2RGB'), ('bayer_grbg8', 'COLOR_BayerGRBG2RGB'),
])
def test_bayer_equals_opencv_bilinear(encoding, code, shape):
    raw = rng(encoding, shape).integers(0, 256, shape, np.uint8)
    expected = cv2.cvtColor(raw, getattr(cv2, code))
    np.testing.assert_array_equal(decode(image_msg(encoding, raw, pad=3), shape[1]), expected)


def test_bayer_pattern_names_put_red_where_the_name_says():
    # A flat scene (R, G, B) = (200, 100, 50) seen through each mosaic is decoded back to that colour.
    for encoding, tile in convert.BAYER_ENCODINGS.items():
        value = {'r': 200, 'g': 100, 'b': 50}
        raw = np.array([[value[tile[(y % 2) * 2 + (x % 2)]] for x in range(8)] for y in range(6)], np.uint8)
        out = decode(image_msg(encoding, raw), 8)
        assert (out == [200, 100, 50]).all(), encoding


@pytest.mark.parametrize('big', [0, 1])
@pytest.mark.parametrize('shape', SHAPES)
def test_mono16_equals_opencv(shape, big):
    values = rng('mono16', shape, big).integers(0, 65536, shape, np.uint16)
    values[0, :2] = (0, 65535)
    raw = values.astype('>u2' if big else '<u2').view(np.uint8).reshape(shape[0], -1)
    expected = cv2.cvtColor(cv2.convertScaleAbs(values, alpha=255.0 / 65535.0), cv2.COLOR_GRAY2RGB)
    out = decode(image_msg('mono16', raw, pad=2, is_bigendian=big), shape[1])
    np.testing.assert_array_equal(out, expected)
    assert tuple(out[0, 0]) == (0, 0, 0) and tuple(out[0, 1]) == (255, 255, 255)


@pytest.mark.parametrize('encoding,width,height,step,size,field', [
    ('yuv422', 5, 2, 10, 20, 'width'),            # odd width: a pixel pair would be cut in half
    ('yuv422_yuy2', 4, 2, 7, 14, 'step'),         # step < 2 * width
    ('bayer_rggb8', 2, 4, 2, 8, 'width'),         # too small to demosaic
    ('bayer_grbg8', 4, 2, 4, 8, 'height'),
    ('mono16', 4, 2, 6, 12, 'step'),              # 16-bit pixels need 2 bytes each
    ('mono16', 4, 2, 8, 15, 'data'),
    ('16UC3', 4, 2, 24, 48, 'encoding'),
    ('yuv420', 4, 2, 8, 16, 'encoding'),
])
def test_invalid_messages_name_the_field(encoding, width, height, step, size, field):
    msg = Image(height=height, width=width, encoding=encoding, step=step, is_bigendian=0)
    msg.data = array.array('B', bytes(size))
    with pytest.raises(InputError) as exc_info:
        convert.decode_image(msg)
    assert exc_info.value.name == field, str(exc_info.value)
    assert encoding in str(exc_info.value) or field != 'encoding'
