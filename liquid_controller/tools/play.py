"""`liquid-controller play`: publish a rosbag2 over DDS (``ros2 bag play`` where rosbag2 is not installed).

    liquid-controller play BAG [--clock] [--rate R] [--topics T ...] [--loop] [--remap FROM:=TO ...]
                           [--record OUT --record-topics T:pkg/msg/Type ...] [--wait-subscribers S]

Messages go out with the recorded QoS and header stamps; ``--clock`` publishes /clock for nodes with
use_sim_time. ``--record`` records topics (e.g. the controller's cmd_vel) into an MCAP bag while playing.
Thin wrapper over :class:`liquid_controller.ros.bag_player.BagPlayer` and
:class:`liquid_controller.ros.topic_recorder.TopicRecorder`. Exit codes: 0 ok, 1 an error (one line
``liquid-controller play: error: ...`` on stderr), 2 an argparse usage error.
"""
import sys
import threading
import time

from liquid_controller.errors import InputError, LiquidControllerError
from liquid_controller.tools import fail


def register(sub):
    """Add the `play` subcommand."""
    p = sub.add_parser('play', help='publish a rosbag2 over DDS with recorded QoS and /clock',
                       description='Publish the messages of a rosbag2 bag over DDS with their recorded QoS '
                                   '(ros2 bag play where rosbag2 is not installed), optionally publishing '
                                   '/clock and recording topics into a new bag while playing.')
    p.add_argument('bag', help='rosbag2 directory (MCAP or sqlite3)')
    p.add_argument('--clock', action='store_true', help='publish /clock (bag time) for use_sim_time')
    p.add_argument('--clock-hz', type=float, default=40.0, help='/clock rate between messages')
    p.add_argument('--rate', type=float, default=1.0, help='playback rate factor (1 = real time)')
    p.add_argument('--topics', nargs='+', help='topics to play (default: all with installed types)')
    p.add_argument('--loop', action='store_true', help='play again from the start until interrupted')
    p.add_argument('--remap', nargs='+', default=[], metavar='FROM:=TO', help='rename played topics')
    p.add_argument('--record', metavar='OUT', help='record --record-topics into this new MCAP bag')
    p.add_argument('--record-topics', nargs='+', default=[], metavar='TOPIC:TYPE',
                   help='topics to record, e.g. /cmd_vel:geometry_msgs/msg/TwistStamped')
    p.add_argument('--drain', type=float, default=0.5, metavar='S',
                   help='with --record: keep recording S seconds after the last message')
    p.add_argument('--wait-subscribers', type=float, default=0.0, metavar='S',
                   help='wait up to S seconds for a subscriber on every played topic before starting '
                        '(0: do not wait)')
    p.add_argument('--quiet', action='store_true', help='no progress bar')
    p.set_defaults(func=run)


def _pairs(items, sep, what):
    out = {}
    for item in items:
        if sep not in item:
            raise InputError(what, item, f'expected the form A{sep}B')
        a, b = item.split(sep, 1)
        out[a] = b
    return out


def run(args):
    """Play (and optionally record); Ctrl-C stops and finishes the recording. An error: one line
    ``liquid-controller play: error: ...`` on stderr, exit code 1."""
    from liquid_controller.data.bag import check_bag_path
    try:
        remap = _pairs(args.remap, ':=', 'remap')
        record_topics = _pairs(args.record_topics, ':', 'record-topics')
        if args.record and not record_topics:
            raise InputError('record-topics', [], '--record needs at least one TOPIC:TYPE')
        check_bag_path(args.bag)                 # before ROS starts: a wrong path is named at once
    except LiquidControllerError as exc:
        return fail('play', exc)
    import rclpy
    from rclpy.executors import SingleThreadedExecutor
    from rclpy.parameter import Parameter

    from liquid_controller.ros.bag_player import BagPlayer
    from liquid_controller.ros.topic_recorder import TopicRecorder
    rclpy.init()
    node = rclpy.create_node('bag_player')
    rec_node = recorder = executor = None
    stop = threading.Event()
    error = None
    try:
        player = BagPlayer(node, args.bag, topics=args.topics, rate=args.rate, clock=args.clock,
                           clock_hz=args.clock_hz, loop=args.loop, remap=remap)
        for topic, reason in player.stats.skipped:
            print(f'not playing {topic}: {reason}', file=sys.stderr)
        if args.record:
            rec_node = rclpy.create_node('bag_recorder', parameter_overrides=[
                Parameter('use_sim_time', value=bool(args.clock))])
            recorder = TopicRecorder(rec_node, args.record, record_topics)
            executor = SingleThreadedExecutor()
            executor.add_node(rec_node)
            threading.Thread(target=_spin, args=(executor, stop), daemon=True).start()
        if args.wait_subscribers > 0 and not player.wait_for_subscribers(timeout=args.wait_subscribers):
            print('liquid-controller play: warning: not every topic has a subscriber; playing anyway',
                  file=sys.stderr)
        stats = player.play(stop=stop, progress=not args.quiet)
        if recorder is not None and args.drain > 0:
            time.sleep(args.drain)  # answers to the last messages are still in flight
        print(f'played {stats.messages} messages ({stats.bag_s:.2f} s of bag) in {stats.wall_s:.2f} s, '
              f'{stats.loops} loop(s), {stats.clock_messages} /clock messages')
    except KeyboardInterrupt:
        pass
    except (LiquidControllerError, ValueError, OSError) as exc:
        error = exc
    finally:
        stop.set()
        if recorder is not None:
            recorder.close()
            print(f'recorded {recorder.counts} into {recorder.path}')
        if executor is not None:
            executor.shutdown()
        for n in (node, rec_node):
            if n is not None:
                n.destroy_node()
        if rclpy.ok():
            rclpy.shutdown()
    if error is not None:   # after the shutdown output: the error is the last line
        return fail('play', error)
    return 0


def _spin(executor, stop):
    while not stop.is_set():
        try:
            executor.spin_once(timeout_sec=0.05)
        except Exception:  # shutdown while spinning
            return
