"""Test-session environment: isolate ROS 2 (domain, localhost discovery, log dir) and rendering.

Set before any test imports rclpy or mujoco. The domain id is derived from the process id so two
concurrent test runs on one machine do not hear each other.
"""
import os
import tempfile

import pytest

os.environ.setdefault('ROS_DOMAIN_ID', str(1 + os.getpid() % 100))
os.environ['ROS_AUTOMATIC_DISCOVERY_RANGE'] = 'LOCALHOST'
os.environ.setdefault('ROS_LOG_DIR', tempfile.mkdtemp(prefix='lc-roslog-'))
os.environ.setdefault('RMW_IMPLEMENTATION', 'rmw_fastrtps_cpp')


@pytest.fixture(scope='module')
def rclpy_context():
    """An initialised rclpy Context of its own (not the global one); shut down after the module, even
    when a test fails. Skips where rclpy is not installed."""
    rclpy = pytest.importorskip('rclpy')
    from rclpy.context import Context
    context = Context()
    rclpy.init(context=context)
    try:
        yield context
    finally:
        if context.ok():
            rclpy.shutdown(context=context)


@pytest.fixture
def edited_params_file(tmp_path):
    """``edit(old, new) -> path``: a copy of config/controller.yaml with ``old`` replaced by ``new``."""
    from liquid_controller.paths import config_file

    def edit(old, new):
        text = config_file('controller.yaml').read_text()
        assert old in text, old
        path = tmp_path / 'params.yaml'
        path.write_text(text.replace(old, new))
        return path
    return edit
