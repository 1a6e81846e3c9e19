"""Record DDS topics into a rosbag2 bag (MCAP by default) from an rclpy node: ``ros2 bag record`` for
machines without rosbag2.

Subscriptions take the serialised CDR bytes (``raw=True``), so nothing is decoded or re-encoded. The bag
time of a message is the recording node's clock at reception (sim time under ``use_sim_time``, as with
``ros2 bag record --use-sim-time``). Subscriptions use the QoS presets of
:mod:`liquid_controller.data.bag` by message type (sensor data best effort, commands and state reliable)
with a deep queue, and the same profile is stored as the offered QoS in metadata.yaml.
"""
from __future__ import annotations

import threading

from liquid_controller.data.bag import QOS_PRESETS, BagWriter, default_qos
from liquid_controller.errors import InputError
from liquid_controller.ros.bag_player import message_class, qos_from_bag
from liquid_controller.validation import check_int


class TopicRecorder:
    """Record ``topics`` ({topic name: 'pkg/msg/Type'}) seen by ``node`` into the new bag ``out``.

    Spin ``node`` (any executor) while recording; call :meth:`close` to finish the bag (safe to call
    from another thread than the executor's: writes and close share a lock).
    """

    def __init__(self, node, out, topics, storage='mcap', depth=1000):
        if not isinstance(topics, dict) or not topics:
            raise InputError('topics', topics, "expected a non-empty {topic: 'pkg/msg/Type'} dict")
        depth = check_int('depth', depth, 1)
        self.node = node
        self._lock = threading.Lock()
        self._writer = BagWriter(out, storage=storage)
        self.path = self._writer.path
        self._subs = []
        self._names = {}
        for topic, msgtype in topics.items():
            cls = message_class(msgtype)
            preset = QOS_PRESETS[default_qos(msgtype)]
            self._writer.add_topic(topic, msgtype, qos=preset)
            qos = qos_from_bag([preset])
            qos.depth = depth
            sub = node.create_subscription(cls, topic, self._callback(topic), qos, raw=True)
            self._subs.append(sub)
            self._names[topic] = sub.topic_name  # fully qualified (namespace resolved)
        self._open = True

    def _callback(self, topic):
        def on_message(data):
            stamp_ns = max(0, int(self.node.get_clock().now().nanoseconds))
            with self._lock:
                if self._open:
                    self._writer.write(topic, stamp_ns, bytes(data))
        return on_message

    @property
    def counts(self):
        """Messages recorded so far, by topic."""
        with self._lock:
            return self._writer.counts

    def publisher_count(self, topic):
        """Publishers matched on a recorded topic (for waiting on discovery)."""
        return self.node.count_publishers(self._names[topic])

    def close(self):
        """Stop recording and finish the bag. The subscriptions stay until the node is destroyed (they
        then drop messages): destroying them here could race an executor spinning in another thread."""
        with self._lock:
            if not self._open:
                return
            self._open = False
            self._writer.close()
