"""controller_node on the onnx backend in a process where torch cannot be imported, against the node
on the torch backend: same inputs over real DDS, same ~/nominal_cmd_vel within 1e-5."""
import os
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

rclpy = pytest.importorskip('rclpy')
from geometry_msgs.msg import TwistStamped  # noqa: E402
from rclpy.executors import SingleThreadedExecutor  # noqa: E402
from sensor_msgs.msg import Image, Imu  # noqa: E402

from liquid_controller.messages import convert, qos  # noqa: E402
from liquid_controller.ros.lifecycle_client import LifecycleClient  # noqa: E402
from liquid_controller.runtime.model_file import load_model  # noqa: E402
from liquid_controller.runtime.onnx_export_folder import export_onnx_folder  # noqa: E402

pytestmark = pytest.mark.ros
HERE = Path(__file__).resolve().parent
REPO = HERE.parents[1]
PERIOD = 1.0 / 30.0
FRAMES = 40
BLOCKER = '''import importlib.abc, sys
class _BlockTorch(importlib.abc.MetaPathFinder):
    def find_spec(self, name, path=None, target=None):
        if name == 'torch' or name.startswith('torch.'):
            raise ImportError('torch is blocked in this process')
        return None
sys.meta_path.insert(0, _BlockTorch())
'''


def _env(extra_path=None):
    env = dict(os.environ)
    env.setdefault('AMENT_PREFIX_PATH', str(Path(sys.executable).resolve().parent.parent))
    env['PYTHONUNBUFFERED'] = '1'
    paths = [p for p in (extra_path, str(REPO), env.get('PYTHONPATH', '')) if p]
    env['PYTHONPATH'] = os.pathsep.join(paths)
    return env


def _drive_node(context, env, params, tag):
    """Start controller_node with ``params``, bring it up, feed FRAMES frames with IMU; return the
    nominal commands received (v, w) and the node's output."""
    ns = f'/onnx{os.getpid()}_{tag}'
    args = [sys.executable, '-m', 'liquid_controller.ros.controller_node', '--ros-args',
            '-r', f'__ns:={ns}'] + [a for k, v in params.items() for a in ('-p', f'{k}:={v}')]
    proc = subprocess.Popen(args, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                            text=True)
    node = rclpy.create_node(f'tester_{tag}', namespace=ns, context=context)
    executor = SingleThreadedExecutor(context=context)
    executor.add_node(node)
    nominal = []
    node.create_subscription(TwistStamped, 'controller/nominal_cmd_vel', nominal.append,
                             qos.command_qos(1000))
    pub_image = node.create_publisher(Image, 'camera/image_raw', qos.image_qos(10))
    pub_imu = node.create_publisher(Imu, 'imu/data', qos.imu_qos())

    def spin(seconds):
        end = time.monotonic() + seconds
        while time.monotonic() < end:
            executor.spin_once(timeout_sec=0.005)
    try:
        assert LifecycleClient(node, f'{ns}/controller', executor).bring_up(60.0) == 'active'
        end = time.monotonic() + 10
        while pub_image.get_subscription_count() == 0 and time.monotonic() < end:
            spin(0.05)
        rng = np.random.default_rng(0)
        t = 100.0
        for i in range(FRAMES):
            t += PERIOD
            for k in range(4):
                s = t - PERIOD + (k + 1) * PERIOD / 4
                pub_imu.publish(convert.encode_imu(s, tuple(rng.normal(0, 0.2, 3)),
                                                   (0.0, 0.0, 9.81)))
            spin(0.01)
            frame = np.roll(np.tile(np.linspace(0, 255, 128, dtype=np.uint8), (64, 1)), 5 * i, 1)
            pub_image.publish(convert.encode_image(np.stack([frame] * 3, -1), t))
            spin(PERIOD)
        spin(0.5)
    finally:
        proc.terminate()
        output = proc.communicate(timeout=20)[0]
        executor.remove_node(node)
        node.destroy_node()
    return np.array([convert.decode_twist(m)[1:] for m in nominal]), output


def test_torch_free_node_publishes_the_torch_commands(rclpy_context, tmp_path):
    export = tmp_path / 'cfc'
    export_onnx_folder(load_model('cfc'), export)
    blocker = tmp_path / 'block_torch'
    blocker.mkdir()
    (blocker / 'sitecustomize.py').write_text(BLOCKER)
    common = {'use_odometry': 'false', 'attention_rate_hz': 5.0}
    want, _ = _drive_node(rclpy_context, _env(), {**common, 'model': 'cfc', 'backend': 'torch'},
                          'torch')
    got, log = _drive_node(rclpy_context, _env(str(blocker)),
                           {**common, 'model': str(export), 'backend': 'auto'}, 'onnx')
    assert "backend onnx" in log and '~/attention is off' in log, log[-2000:]
    assert len(want) >= FRAMES - 5 and len(got) == len(want), (len(want), len(got), log[-2000:])
    np.testing.assert_allclose(got, want, rtol=0, atol=1e-5)
    assert np.abs(want).max() > 0.05
