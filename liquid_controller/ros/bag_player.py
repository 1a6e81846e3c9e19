"""A DDS bag player (``ros2 bag play`` for machines without rosbag2): bag messages -> rclpy publishers.

- Messages are published as their recorded CDR bytes (no re-serialisation; header stamps unchanged) on
  publishers created with the QoS the recorder offered (metadata.yaml ``offered_qos_profiles``), in
  bag-time order, paced at ``rate`` times real time.
- ``clock=True`` publishes ``/clock`` (rosgraph_msgs/Clock, bag time) before every message and at
  ``clock_hz`` while waiting, so nodes with ``use_sim_time`` follow the bag.
- ``topics`` selects topics (relative names also match '/'-prefixed bag topics); ``remap`` renames
  them on the way out; ``loop`` restarts at the end (time jumps back, as with ros2 bag play --loop).

Publishing needs no spinning, so :meth:`BagPlayer.play` runs in the caller's thread while an executor
spins the nodes under test elsewhere.
"""
from __future__ import annotations

import importlib
import threading
import time
from dataclasses import dataclass, field

from liquid_controller.data.bag_source import open_bag_source, resolve_topic
from liquid_controller.errors import BagError
from liquid_controller.validation import check_number


def qos_from_bag(profiles, default_depth=10):
    """rosbags Qos list (metadata offered_qos_profiles) -> rclpy QoSProfile (first profile; reliable
    keep-last ``default_depth`` when the bag stored none)."""
    from rclpy.qos import DurabilityPolicy, HistoryPolicy, QoSProfile, ReliabilityPolicy
    if not profiles:
        return QoSProfile(depth=default_depth)
    q = profiles[0]
    history = HistoryPolicy.KEEP_ALL if _enum(q.history) == 2 else HistoryPolicy.KEEP_LAST
    reliability = ReliabilityPolicy.BEST_EFFORT if _enum(q.reliability) == 2 else ReliabilityPolicy.RELIABLE
    durability = DurabilityPolicy.TRANSIENT_LOCAL if _enum(q.durability) == 1 else DurabilityPolicy.VOLATILE
    depth = int(q.depth) if int(q.depth) > 0 else default_depth
    return QoSProfile(history=history, depth=depth, reliability=reliability, durability=durability)


def _enum(value):
    """rosbags QoS enums (plain Enum, not IntEnum) or ints -> int."""
    return int(getattr(value, 'value', value))


def message_class(msgtype):
    """'pkg/msg/Name' -> the rclpy message class; BagError when the package is not installed."""
    try:
        pkg, kind, name = msgtype.split('/')
        return getattr(importlib.import_module(f'{pkg}.{kind}'), name)
    except (ValueError, ImportError, AttributeError) as exc:
        raise BagError(f'no rclpy message class for {msgtype!r}: {exc}') from None


@dataclass
class PlayStats:
    """What a play() call did."""
    messages: int = 0
    clock_messages: int = 0
    loops: int = 0
    wall_s: float = 0.0
    bag_s: float = 0.0
    per_topic: dict = field(default_factory=dict)
    skipped: list = field(default_factory=list)  # (topic, reason) not published


class BagPlayer:
    """Publish a bag's messages over DDS from ``node`` (see module docstring).

    Args:
        node: an rclpy Node that owns the publishers.
        bag: rosbag2 directory (MCAP or sqlite3).
        topics: topic names to play (None: all whose message type is installed).
        rate: playback speed factor (> 0; 1 = real time).
        clock: publish /clock with the bag time.
        clock_hz: /clock rate while waiting between messages.
        loop: play again from the start when the end is reached, until ``stop`` is set.
        remap: {bag topic: published topic}.
    """

    def __init__(self, node, bag, topics=None, rate=1.0, clock=False, clock_hz=40.0, loop=False,
                 remap=None):
        check_number('rate', rate, 0.0, low_open=True)
        check_number('clock_hz', clock_hz, 0.0, low_open=True)
        self.node = node
        self.bag = bag
        self.rate = float(rate)
        self.clock = bool(clock)
        self.clock_period = 1.0 / float(clock_hz)
        self.loop = bool(loop)
        self.remap = dict(remap or {})
        source = open_bag_source(bag)
        try:
            self.topic_info = dict(source.topics)
        finally:
            source.close()
        self.stats = PlayStats()
        self._publishers = {}
        selected = self._select(topics)
        for name in selected:
            info = self.topic_info[name]
            try:
                cls = message_class(info.msgtype)
            except BagError as exc:
                if topics is not None:
                    raise BagError(f'{bag}: topic {name!r}: {exc}') from None
                self.stats.skipped.append((name, str(exc)))
                continue
            out_name = self.remap.get(name, name)
            self._publishers[name] = node.create_publisher(cls, out_name, qos_from_bag(info.offered_qos))
        self._clock_pub = None
        if self.clock:
            from rosgraph_msgs.msg import Clock

            from liquid_controller.messages import qos
            self._clock_pub = node.create_publisher(Clock, '/clock', qos.clock_qos())

    def _select(self, topics):
        if topics is None:
            return list(self.topic_info)
        chosen, missing = [], []
        for t in topics:
            found = resolve_topic(t, self.topic_info)
            (chosen if found else missing).append(found or t)
        if missing:
            raise BagError(f'{self.bag}: topic(s) {missing} not in bag; it has {sorted(self.topic_info)}')
        return chosen

    @property
    def publishers(self):
        """{bag topic: rclpy Publisher}."""
        return dict(self._publishers)

    def wait_for_subscribers(self, topics=None, timeout=10.0):
        """Block until each (given or every) played topic has a matched subscription. Returns True when
        all matched within ``timeout`` seconds (discovery takes a moment in DDS)."""
        names = [resolve_topic(t, self._publishers) or t for t in (topics or self._publishers)]
        end = time.monotonic() + timeout
        while time.monotonic() < end:
            if all(self._publishers[n].get_subscription_count() > 0 for n in names if n in self._publishers):
                return True
            time.sleep(0.02)
        return False

    def _publish_clock(self, bag_ns):
        from builtin_interfaces.msg import Time
        from rosgraph_msgs.msg import Clock
        sec, nanosec = divmod(int(bag_ns), 1_000_000_000)
        self._clock_pub.publish(Clock(clock=Time(sec=sec, nanosec=nanosec)))
        self.stats.clock_messages += 1

    def _wait_until(self, target, bag_ns_at, stop):
        """Sleep until wall time ``target``, publishing /clock (bag time advancing with the wall) at
        clock_hz meanwhile. Returns False when stopped."""
        while True:
            if stop is not None and stop.is_set():
                return False
            now = time.monotonic()
            if now >= target:
                return True
            step = min(target - now, self.clock_period)
            if self._clock_pub is not None and step >= self.clock_period:
                self._publish_clock(bag_ns_at(now))
            time.sleep(step)

    def play(self, stop=None, progress=False, after_publish=None, before_publish=None):
        """Publish the bag (blocking; loops until ``stop`` (a threading.Event) is set when ``loop``).
        Returns :class:`PlayStats`. A damaged bag raises BagError after publishing what was readable.

        ``before_publish(topic, bag_ns)`` / ``after_publish(topic, bag_ns)``, when given, are called
        before / after each message is published; the time they block is added to the schedule (playback pauses instead of bursting to catch up). Tests use it for
        lock-step playback: wait until the node under test has answered a camera frame, so a slow
        executor never builds a backlog that would reorder its inputs.
        """
        from tqdm import tqdm
        stop = stop if stop is not None else threading.Event()
        wall0 = time.monotonic()
        names = list(self._publishers)
        while not stop.is_set():
            source = open_bag_source(self.bag)
            total = sum(max(self.topic_info[n].count, 0) for n in names)
            bar = tqdm(total=total, unit='msg', desc='play', disable=not progress)
            first_ns, start = None, None
            try:
                for topic, bag_ns, _msgtype, raw in source.messages(names):
                    if first_ns is None:
                        first_ns, start = bag_ns, time.monotonic()

                    def bag_ns_at(wall, first_ns=first_ns, start=start):
                        return min(bag_ns, first_ns + int((wall - start) * self.rate * 1e9))
                    target = start + (bag_ns - first_ns) * 1e-9 / self.rate
                    if not self._wait_until(target, bag_ns_at, stop):
                        break
                    if self._clock_pub is not None:
                        self._publish_clock(bag_ns)
                    if before_publish is not None:
                        t_hook = time.monotonic()
                        before_publish(topic, bag_ns)
                        start += time.monotonic() - t_hook
                    self._publishers[topic].publish(raw)
                    if after_publish is not None:
                        t_hook = time.monotonic()
                        after_publish(topic, bag_ns)
                        start += time.monotonic() - t_hook  # pause, do not burst afterwards
                    self.stats.messages += 1
                    self.stats.per_topic[topic] = self.stats.per_topic.get(topic, 0) + 1
                    self.stats.bag_s = max(self.stats.bag_s, (bag_ns - first_ns) * 1e-9)
                    bar.update(1)
            finally:
                bar.close()
                source.close()
            self.stats.loops += 1
            if not self.loop:
                break
        self.stats.wall_s = time.monotonic() - wall0
        return self.stats
