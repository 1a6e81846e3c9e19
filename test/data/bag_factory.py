"""Tiny real rosbag2 bags for the dataset and trainer tests (written with the package's BagWriter).

``write_drive_bag`` writes what a recorder would: camera frames (Image rgb8 or CompressedImage png) with
jittered intervals, an IMU at 5x the camera rate, commands (TwistStamped a little before each frame, or
unstamped Twist), and optionally the simulator's ground truth (Float64MultiArray), each with a bag time
slightly after its header stamp. Values encode their index so the tests can check alignment exactly.
"""
import io

import numpy as np

from liquid_controller.data.bag import BagWriter
from liquid_controller.messages import convert

SEC = 1_000_000_000


def frame_times(n, period=0.1, start=1.0, gap_after=None, gap=1.0, seed=0):
    """Camera stamps: ``period`` with +-20% jitter; a ``gap`` (s) inserted after frame ``gap_after``."""
    rng = np.random.default_rng(seed)
    dts = period * (1.0 + rng.uniform(-0.2, 0.2, n - 1))
    t = np.concatenate([[start], start + np.cumsum(dts)])
    if gap_after is not None:
        t[gap_after + 1:] += gap
    return t


def frame_image(i, height, width):
    """Frame i: a deterministic pattern whose mean brightness encodes i (and a left-right ramp)."""
    img = np.zeros((height, width, 3), dtype=np.uint8)
    img[:, :, 0] = (10 * i) % 256
    img[:, :, 1] = np.linspace(0, 255, width, dtype=np.uint8)[None, :]
    img[:, :, 2] = 255 - (10 * i) % 256
    return img


def command_for(i):
    """(v, w) recorded for frame i."""
    return 0.2 + 0.01 * i, 0.05 * np.sin(0.3 * i)


def truth_for(i):
    """(lateral offset, heading error) for frame i."""
    return 0.01 * i - 0.1, -0.02 * i


def write_drive_bag(path, n=20, period=0.1, start=1.0, gap_after=None, storage='mcap', compressed=False,
                    stamped=True, truth=True, height=8, width=16, seed=0, command_lead=0.03,
                    commands_until=None, imu_clock_offset=0.0,
                    topics=('/camera/image_raw', '/imu/data', '/cmd_vel', '/sim/ground_truth')):
    """Write a bag; returns dict(times=frame stamps, imu_times, imu_gyro_z, images)."""
    cam_topic, imu_topic, cmd_topic, truth_topic = topics
    t = frame_times(n, period, start, gap_after, seed=seed)
    imu_t = np.arange(start - period, t[-1] + 1e-9, period / 5.0)
    imu_gz = np.arange(imu_t.size) * 0.01
    events = []  # (bag time ns, topic, message)
    for k, ts in enumerate(imu_t):
        # imu_clock_offset: a driver whose header stamps run on another clock than the recorder's
        events.append((round(ts * SEC) + 1000, imu_topic,
                       convert.encode_imu(ts + imu_clock_offset, [0.0, 0.0, imu_gz[k]], [0.1, 0.0, 9.81])))
    images = []
    for i, ts in enumerate(t):
        img = frame_image(i, height, width)
        images.append(img)
        if compressed:
            from PIL import Image as PILImage
            from sensor_msgs.msg import CompressedImage
            buf = io.BytesIO()
            PILImage.fromarray(img).save(buf, format='PNG')
            msg = CompressedImage(header=convert.encode_image(img, ts).header, format='png')
            msg.data = buf.getvalue()
        else:
            msg = convert.encode_image(img, ts)
        events.append((round(ts * SEC) + 2000, cam_topic, msg))
        v, w = command_for(i)
        tc = ts - command_lead
        if commands_until is None or i <= commands_until:
            events.append((round(tc * SEC) + 3000, cmd_topic,
                           convert.encode_twist(v, w, stamp=tc, stamped=stamped)))
        if truth:
            events.append((round(ts * SEC) + 4000, truth_topic,
                           convert.encode_float_array(truth_for(i), ['lateral_offset', 'heading_error'])))
    events.sort(key=lambda e: e[0])
    with BagWriter(path, storage=storage) as bag:
        bag.add_topic(cam_topic, 'sensor_msgs/msg/CompressedImage' if compressed else 'sensor_msgs/msg/Image')
        bag.add_topic(imu_topic, 'sensor_msgs/msg/Imu')
        bag.add_topic(cmd_topic, 'geometry_msgs/msg/TwistStamped' if stamped else 'geometry_msgs/msg/Twist')
        if truth:
            bag.add_topic(truth_topic, 'std_msgs/msg/Float64MultiArray')
        for stamp, topic, msg in events:
            bag.write(topic, stamp, msg)
    return {'times': t, 'imu_times': imu_t, 'imu_gyro_z': imu_gz, 'images': images}
