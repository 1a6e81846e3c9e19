"""Test-session environment: isolate ROS 2 (domain, localhost discovery, log dir) and rendering.

Set before any test imports rclpy or mujoco. The domain id is derived from the process id so two
concurrent test runs on one machine do not hear each other.
"""
import os
import tempfile

os.environ.setdefault('ROS_DOMAIN_ID', str(1 + os.getpid() % 100))
os.environ['ROS_AUTOMATIC_DISCOVERY_RANGE'] = 'LOCALHOST'
os.environ.setdefault('ROS_LOG_DIR', tempfile.mkdtemp(prefix='lc-roslog-'))
os.environ.setdefault('RMW_IMPLEMENTATION', 'rmw_fastrtps_cpp')
