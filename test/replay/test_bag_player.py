"""The DDS bag player and topic recorder over real rclpy + Fast DDS (no controller involved):
recorded QoS, unchanged stamps and payloads, /clock for use_sim_time, topic selection, remapping, loop,
and the `play --record` command."""
import threading
import time

import numpy as np
import pytest

rclpy = pytest.importorskip('rclpy')
from rclpy.executors import SingleThreadedExecutor  # noqa: E402
from rclpy.parameter import Parameter  # noqa: E402
from rclpy.qos import ReliabilityPolicy  # noqa: E402

from liquid_controller import cli  # noqa: E402
from liquid_controller.data.bag import BagReader  # noqa: E402
from liquid_controller.errors import BagError, InputError  # noqa: E402
from liquid_controller.messages import convert  # noqa: E402
from liquid_controller.ros.bag_player import BagPlayer  # noqa: E402
from liquid_controller.ros.topic_recorder import TopicRecorder  # noqa: E402

pytestmark = pytest.mark.ros


class Spinner:
    """Spin nodes in a background thread while the player publishes from the test thread."""

    def __init__(self, context, *nodes):
        self.executor = SingleThreadedExecutor(context=context)
        for n in nodes:
            self.executor.add_node(n)
        self.stop = threading.Event()
        self.thread = threading.Thread(target=self._run, daemon=True)
        self.thread.start()

    def _run(self):
        while not self.stop.is_set():
            self.executor.spin_once(timeout_sec=0.01)

    def close(self):
        self.stop.set()
        self.thread.join(5.0)
        self.executor.shutdown()


def _odom(bag, topic='odom'):
    with BagReader(bag) as reader:
        return [(m.stamp_ns, convert.decode_odometry(m.message)) for m in reader.messages([topic])]


def test_player_publishes_with_recorded_qos_stamps_and_clock(scenario, rclpy_context, tmp_path):
    ctx = rclpy_context
    play_node = rclpy.create_node('player', context=ctx)
    rec_node = rclpy.create_node('rec', context=ctx, parameter_overrides=[Parameter('use_sim_time', value=True)])
    recorder = TopicRecorder(rec_node, tmp_path / 'rec', {'/robot/odom': 'nav_msgs/msg/Odometry',
                                                          '/clock': 'rosgraph_msgs/msg/Clock'})
    player = BagPlayer(play_node, scenario.bag, topics=['odom', 'camera/image_raw/compressed'], rate=4.0,
                       clock=True, remap={'/odom': '/robot/odom'})
    pubs = player.publishers
    assert set(pubs) == {'/odom', '/camera/image_raw/compressed'}
    # QoS offered in the bag's metadata: camera best effort depth 1, odometry reliable
    assert pubs['/camera/image_raw/compressed'].qos_profile.reliability == ReliabilityPolicy.BEST_EFFORT
    assert pubs['/camera/image_raw/compressed'].qos_profile.depth == 1
    assert pubs['/odom'].qos_profile.reliability == ReliabilityPolicy.RELIABLE
    spinner = Spinner(ctx, rec_node)
    try:
        assert player.wait_for_subscribers(['odom'], timeout=20.0)
        end = time.monotonic() + 20.0
        while recorder.publisher_count('/clock') == 0 and time.monotonic() < end:
            time.sleep(0.02)
        stats = player.play()
        time.sleep(0.3)
    finally:
        spinner.close()
        recorder.close()
        play_node.destroy_node()
        rec_node.destroy_node()
    assert stats.per_topic == {'/odom': 60, '/camera/image_raw/compressed': 60}
    assert stats.clock_messages >= stats.messages
    original = _odom(scenario.bag)
    played = _odom(tmp_path / 'rec', '/robot/odom')
    assert len(played) == 60  # reliable topic: nothing lost
    for (_, a), (bag_ns, b) in zip(original, played):
        assert a.stamp == b.stamp  # header stamps unchanged
        np.testing.assert_array_equal(a.position, b.position)
        np.testing.assert_array_equal(a.linear, b.linear)
        # recorded with use_sim_time: bag time is the /clock the player published (bag time)
        assert abs(bag_ns * 1e-9 - b.stamp) < 0.05
    with BagReader(tmp_path / 'rec') as reader:
        clock = [convert.stamp_to_sec(m.message.clock) for m in reader.messages(['/clock'])]
    assert clock == sorted(clock) and clock[-1] == pytest.approx(original[-1][1].stamp, abs=1e-9)


def test_player_loops_and_validates(scenario, rclpy_context):
    node = rclpy.create_node('looper', context=rclpy_context)
    try:
        with pytest.raises(InputError, match='rate'):
            BagPlayer(node, scenario.bag, rate=0.0)
        with pytest.raises(BagError, match='no_such_topic'):
            BagPlayer(node, scenario.bag, topics=['no_such_topic'])
        player = BagPlayer(node, scenario.bag, topics=['odom'], rate=50.0, loop=True)
        stop = threading.Event()

        def after(topic, bag_ns):
            if player.stats.messages >= 89:  # a pass and a half
                stop.set()
        stats = player.play(stop=stop, after_publish=after)
        assert stats.loops == 2 and stats.messages == 90
    finally:
        node.destroy_node()


def test_play_command_records_while_playing(scenario, tmp_path, capsys):
    out = tmp_path / 'rec'
    code = cli.main(['play', str(scenario.bag), '--rate', '8', '--topics', 'odom', '--clock', '--quiet',
                     '--record', str(out), '--record-topics', '/odom:nav_msgs/msg/Odometry',
                     '--wait-subscribers', '20'])
    assert code == 0
    assert 'played 60 messages' in capsys.readouterr().out
    assert len(_odom(out)) == 60
