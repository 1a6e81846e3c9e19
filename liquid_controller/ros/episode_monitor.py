"""A passive observer node for closed-loop runs over DDS: records sim_node's ground truth, the command
on cmd_vel and (optionally) camera frames, feeding C1's EpisodeMetrics. Used by the demo.
"""
from __future__ import annotations

from collections import deque

import numpy as np
from rclpy.node import Node
from rclpy.parameter import Parameter

from liquid_controller.messages import convert, qos
from liquid_controller.sim.bridge import GROUND_TRUTH_FIELDS


class EpisodeMonitor(Node):
    """Subscribes ``<sim>/ground_truth``, ``odom``, ``cmd_vel`` and ``camera/image_raw``.

    The ground-truth vector has no stamp; sim_node publishes one odometry message (stamped with sim
    time) and one ground-truth message per step, both reliable and in that order, so the n-th truth
    gets the stamp of the n-th odometry message (FIFO pairing; a reading of /clock at receipt could
    give two frames the same time).
    """

    def __init__(self, metrics, sim_node='sim_node', keep_frames_every=0, max_frames=300,
                 stamped=True):
        super().__init__('liquid_controller_episode_monitor',
                         parameter_overrides=[Parameter('use_sim_time', value=True)])
        from geometry_msgs.msg import Twist, TwistStamped
        from sensor_msgs.msg import Image
        from std_msgs.msg import Float64MultiArray
        self.metrics = metrics
        self.command = (0.0, 0.0)
        self.commands_received = 0
        self.truth_received = 0
        self.last_truth = None
        self.frames = deque(maxlen=max_frames)  # (frame (H,W,3), (v, w), truth dict)
        self._every = int(keep_frames_every)
        self._image_count = 0
        from nav_msgs.msg import Odometry
        self._odom_stamps = deque(maxlen=1000)
        self._pending_truth = deque(maxlen=1000)
        self.create_subscription(Odometry, 'odom', self._on_odom, qos.state_qos(100))
        self.create_subscription(Float64MultiArray, f'/{sim_node.strip("/")}/ground_truth',
                                 self._on_truth, qos.state_qos(100))
        self.create_subscription(TwistStamped if stamped else Twist, 'cmd_vel', self._on_cmd,
                                 qos.command_qos(10))
        if self._every > 0:
            self.create_subscription(Image, 'camera/image_raw', self._on_image, qos.image_qos(1))

    def restart(self, metrics):
        """Start counting a new episode (after a world reset): fresh metrics, no pending pairs."""
        self.metrics = metrics
        self._odom_stamps.clear()
        self._pending_truth.clear()
        self.last_truth = None
        self.frames.clear()

    def _on_cmd(self, msg):
        _, v, w = convert.decode_twist(msg)
        self.command = (v, w)
        self.commands_received += 1

    def _on_odom(self, msg):
        self._odom_stamps.append(convert.stamp_to_sec(msg.header.stamp))
        self._pair()

    def _on_truth(self, msg):
        self._pending_truth.append(convert.decode_float_array(msg))
        self._pair()

    def _pair(self):
        from liquid_controller.sim import GroundTruth
        while self._pending_truth and self._odom_stamps:
            values = self._pending_truth.popleft()
            stamp = self._odom_stamps.popleft()
            kwargs = {k: values[k] for k in GROUND_TRUTH_FIELDS}
            kwargs['in_lane'] = bool(kwargs['in_lane'] > 0.5)
            kwargs['collision'] = bool(kwargs['collision'] > 0.5)
            truth = GroundTruth(**kwargs, stamp=stamp)
            self.last_truth = truth
            self.truth_received += 1
            self.metrics.update(truth, self.command)

    def _on_image(self, msg):
        self._image_count += 1
        if self._image_count % self._every:
            return
        try:
            frame = convert.decode_image(msg)
        except Exception:  # the demo only records; a bad frame is the controller's business
            return
        truth = self.last_truth.to_dict() if self.last_truth is not None else {}
        self.frames.append((np.array(frame), self.command, truth))


def overlay_command(frame, command, truth=None, scale=3):
    """Upscale an RGB frame and draw the command (v, w) as text plus a steering arrow."""
    from PIL import Image, ImageDraw
    h, w = frame.shape[:2]
    img = Image.fromarray(frame).resize((w * scale, h * scale), Image.NEAREST)
    draw = ImageDraw.Draw(img)
    v, wz = float(command[0]), float(command[1])
    text = f'v={v:+.2f} m/s  w={wz:+.2f} rad/s'
    if truth:
        text += f"  off={truth.get('lateral_offset', 0.0):+.2f} m"
    draw.rectangle([0, 0, img.width, 16], fill=(0, 0, 0))
    draw.text((4, 2), text, fill=(255, 255, 0))
    cx, cy = img.width // 2, img.height - 10
    # arrow: length ~ speed, angle ~ yaw rate (left positive, drawn to the left)
    length = 20 + 40 * min(abs(v), 2.0) / 2.0
    angle = max(-1.2, min(1.2, 0.6 * wz))
    import math
    tip = (cx - length * math.sin(angle), cy - length * math.cos(angle))
    draw.line([cx, cy, tip[0], tip[1]], fill=(255, 0, 0), width=4)
    return np.asarray(img)


def write_overlay_gif(frames, path, fps=15):
    """frames: list of (frame (H,W,3) uint8, (v, w), truth dict). Writes an animated GIF."""
    import imageio.v2 as imageio
    images = [overlay_command(f, c, t) for f, c, t in frames]
    imageio.mimsave(str(path), images, duration=1.0 / fps, loop=0)
    return path
