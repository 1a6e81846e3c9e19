"""QoS profiles shared by the package's nodes (and written into bags as offered QoS).

- Sensor inputs (camera, IMU, range): best effort, keep last with a shallow queue, so a slow consumer
  drops old frames instead of processing a backlog (the ROS sensor-data convention).
- Commands and state (cmd_vel, odom, ground truth): reliable, keep last, small depth.
- /clock: published reliable keep-last 1, so it matches both rclpy's use_sim_time subscription
  (best effort, depth 1) and reliable subscribers (a best-effort publisher would not match those).
- camera_info: reliable, depth 1 (image_transport subscribers use default reliable QoS).
"""
from rclpy.qos import (DurabilityPolicy, HistoryPolicy, QoSProfile, ReliabilityPolicy)


def _keep_last(depth, reliability):
    """Volatile keep-last profile of the given depth and reliability."""
    return QoSProfile(history=HistoryPolicy.KEEP_LAST, depth=depth, reliability=reliability,
                      durability=DurabilityPolicy.VOLATILE)


def image_qos(depth=1):
    """Camera frames: best effort, keep last ``depth`` (default 1: never queue stale frames)."""
    return _keep_last(depth, ReliabilityPolicy.BEST_EFFORT)


def imu_qos(depth=50):
    """IMU samples: best effort; deeper than images because several samples arrive per frame."""
    return _keep_last(depth, ReliabilityPolicy.BEST_EFFORT)


def sensor_qos(depth=5):
    """Other sensors (range): best effort, shallow."""
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
