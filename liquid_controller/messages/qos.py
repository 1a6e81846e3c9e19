"""QoS profiles shared by the package's nodes (and written into bags as offered QoS).

- Camera: reliable, keep last 1 by default. Measured on one host (30 Hz for 3 s), best effort
  delivered 20 of 90 frames at 640x480 and 4 of 90 at 1280x720, reliable every one; keep-last 1 still
  never queues a stale frame. A reliable publisher matches reliable and best-effort subscribers; a
  reliable subscriber does not match a best-effort publisher (the controller's default
  ``image_reliability: auto`` then subscribes again best effort).
- Other sensor inputs (IMU, odometry, range, scan): best effort, keep last with a shallow queue, so a
  slow consumer drops old samples instead of processing a backlog (the ROS sensor-data convention); a
  best-effort subscription matches reliable and best-effort publishers alike.
- Commands and state (cmd_vel, odom, ground truth): reliable, keep last, small depth.
- /clock: published reliable keep-last 1, so it matches both rclpy's use_sim_time subscription
  (best effort, depth 1) and reliable subscribers (a best-effort publisher would not match those).
- camera_info: reliable, depth 1 (image_transport subscribers use default reliable QoS).
- /tf: reliable keep-last 100, /tf_static: reliable, transient local, keep-last 1 (the profiles of
  tf2_ros's TransformBroadcaster and StaticTransformBroadcaster, so tf2 listeners match them).
"""
from rclpy.qos import (DurabilityPolicy, HistoryPolicy, QoSProfile, ReliabilityPolicy)


def _keep_last(depth, reliability):
    """Volatile keep-last profile of the given depth and reliability."""
    return QoSProfile(history=HistoryPolicy.KEEP_LAST, depth=depth, reliability=reliability,
                      durability=DurabilityPolicy.VOLATILE)


RELIABILITY = {'reliable': ReliabilityPolicy.RELIABLE, 'best_effort': ReliabilityPolicy.BEST_EFFORT}


def image_qos(depth=1, reliability='reliable'):
    """Camera frames: keep last ``depth`` (default 1: never queue stale frames); ``reliability``
    'reliable' (default, see the module docstring) or 'best_effort'."""
    if reliability not in RELIABILITY:
        raise ValueError(f'image reliability {reliability!r}: one of {sorted(RELIABILITY)}')
    return _keep_last(depth, RELIABILITY[reliability])


def imu_qos(depth=200):
    """IMU samples: best effort, keep last 200 (1 s at 200 Hz): several samples arrive per frame, and
    a burst that waits behind a camera frame must not overflow the queue and be lost."""
    return _keep_last(depth, ReliabilityPolicy.BEST_EFFORT)


def sensor_qos(depth=5):
    """Other sensors (odometry and range/scan subscriptions): best effort, shallow."""
    return _keep_last(depth, ReliabilityPolicy.BEST_EFFORT)


def command_qos(depth=1):
    """cmd_vel: reliable keep-last 1 (only the newest command matters; a lost one is not retried late)."""
    return _keep_last(depth, ReliabilityPolicy.RELIABLE)


def state_qos(depth=10):
    """odom, camera_info, ground truth, diagnostics: reliable, keep last ``depth``."""
    return _keep_last(depth, ReliabilityPolicy.RELIABLE)


def clock_qos():
    """/clock: reliable keep-last 1 (matches best-effort and reliable subscribers alike)."""
    return _keep_last(1, ReliabilityPolicy.RELIABLE)


def tf_qos():
    """/tf: reliable keep-last 100 (tf2_ros TransformBroadcaster's profile)."""
    return _keep_last(100, ReliabilityPolicy.RELIABLE)


def tf_static_qos():
    """/tf_static: reliable, transient local, keep-last 1 (tf2_ros StaticTransformBroadcaster's
    profile): a listener that starts later still receives the latched static transforms."""
    return QoSProfile(history=HistoryPolicy.KEEP_LAST, depth=1, reliability=ReliabilityPolicy.RELIABLE,
                      durability=DurabilityPolicy.TRANSIENT_LOCAL)
