"""rosbag2 writing and reading without a ROS installation (via ``rosbags``).

Bags are real rosbag2 directories: ``metadata.yaml`` plus an ``.mcap`` file (default) or an ``.db3``
(sqlite3) file, CDR-serialised messages, the ROS 2 Kilted message definitions and type hashes, and the
offered QoS profile of every topic (what ``ros2 bag play`` uses to publish them again).

- :class:`BagWriter` writes rclpy messages (serialised with ``rclpy.serialization``), messages built by
  ``rosbags``, or raw CDR bytes.
- :class:`BagReader` yields :class:`BagMessage` ``(topic, stamp_ns, msgtype, message)`` in time-stamp
  order. Messages are decoded by ``rosbags`` (no ROS needed; ``uint8[]`` fields come back as numpy
  arrays, which :mod:`liquid_controller.messages.convert` accepts) or, with ``decode='rclpy'``, into rclpy
  message classes.

Every failure (missing or truncated file, corrupt record, unknown topic or type) raises
:class:`liquid_controller.errors.BagError` naming the bag and, when known, the topic.
"""
import importlib
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from rosbags.interfaces import Qos, QosDurability, QosHistory, QosLiveliness, QosReliability, QosTime
from rosbags.rosbag2 import Reader, ReaderError, StoragePlugin, Writer, WriterError
from rosbags.typesys import Stores, get_typestore, get_types_from_msg

from liquid_controller.errors import BagError, InputError
from liquid_controller.validation import check_int

STORAGES = {'mcap': StoragePlugin.MCAP, 'sqlite3': StoragePlugin.SQLITE3}
# rosbag2's encoding of "infinite" durations in metadata.yaml (what ros2 bag record writes)
_INFINITE = QosTime(sec=9223372036, nsec=854775807)
_ZERO = QosTime(sec=0, nsec=0)


def _typestore():
    """The ROS 2 Kilted type store: its type hashes match the rclpy wheels used by the nodes."""
    return get_typestore(Stores.ROS2_KILTED)


def make_qos(reliable=True, depth=10):
    """An offered QoS profile for metadata.yaml: keep-last ``depth``, volatile, reliable or best effort."""
    depth = check_int('depth', depth, 1)
    return Qos(history=QosHistory.KEEP_LAST, depth=depth,
               reliability=QosReliability.RELIABLE if reliable else QosReliability.BEST_EFFORT,
               durability=QosDurability.VOLATILE, deadline=_INFINITE, lifespan=_INFINITE,
               liveliness=QosLiveliness.AUTOMATIC, liveliness_lease_duration=_INFINITE,
               avoid_ros_namespace_conventions=False)


# Offered QoS by role, mirroring liquid_controller.messages.qos (sensors best effort, state reliable).
QOS_PRESETS = {
    'image': make_qos(reliable=True, depth=1),      # see liquid_controller.messages.qos.image_qos
    'imu': make_qos(reliable=False, depth=200),
    'sensor': make_qos(reliable=False, depth=5),
    'command': make_qos(reliable=True, depth=1),
    'state': make_qos(reliable=True, depth=10),
    'clock': make_qos(reliable=True, depth=1),
}


def default_qos(msgtype):
    """Preset name for a message type when the caller gives none."""
    if msgtype in ('sensor_msgs/msg/Image', 'sensor_msgs/msg/CompressedImage'):
        return 'image'
    if msgtype == 'sensor_msgs/msg/Imu':
        return 'imu'
    if msgtype in ('sensor_msgs/msg/Range', 'sensor_msgs/msg/LaserScan'):
        return 'sensor'
    if msgtype in ('geometry_msgs/msg/Twist', 'geometry_msgs/msg/TwistStamped'):
        return 'command'
    if msgtype == 'rosgraph_msgs/msg/Clock':
        return 'clock'
    return 'state'


def _ros_msgtype(msg):
    """rclpy message instance -> 'pkg/msg/Name'."""
    module = type(msg).__module__.split('.')  # e.g. sensor_msgs.msg._image
    return f'{module[0]}/msg/{type(msg).__name__}'


def _is_rclpy_message(msg):
    return hasattr(type(msg), 'get_fields_and_field_types') and hasattr(type(msg), '_TYPE_SUPPORT')


class BagWriter:
    """Write a rosbag2 directory (which must not exist yet).

    Usage::

        with BagWriter(path) as bag:
            bag.add_topic('camera/image_raw', 'sensor_msgs/msg/Image')     # QoS preset from the type
            bag.write('camera/image_raw', stamp_ns, image_msg)              # rclpy message, or CDR bytes

    Args:
        path: the bag directory to create.
        storage: 'mcap' (default) or 'sqlite3'.
        version: rosbag2 metadata version (9 = Jazzy/Kilted, 8 = Humble/Iron).
    """

    def __init__(self, path, storage='mcap', version=9):
        if storage not in STORAGES:
            raise InputError('storage', storage, f'expected one of {sorted(STORAGES)}')
        if version not in (8, 9):
            raise InputError('version', version, 'expected 8 or 9')
        self.path = Path(path)
        self.storage = storage
        self._typestore = _typestore()
        self._connections = {}  # topic -> rosbags Connection
        self._counts = {}
        self._last_stamp = {}
        try:
            self._writer = Writer(self.path, version=version, storage_plugin=STORAGES[storage])
            self._writer.open()
        except (WriterError, OSError) as exc:
            raise BagError(f'{self.path}: cannot create bag: {exc}') from exc
        self._open = True

    def add_topic(self, topic, msgtype, qos=None):
        """Declare a topic. ``qos``: a preset name from QOS_PRESETS, a rosbags Qos, or None (by type)."""
        if topic in self._connections:
            raise BagError(f'{self.path}: topic {topic!r} declared twice')
        if qos is None:
            qos = default_qos(msgtype)
        if isinstance(qos, str):
            if qos not in QOS_PRESETS:
                raise InputError('qos', qos, f'expected one of {sorted(QOS_PRESETS)} or a rosbags Qos')
            qos = QOS_PRESETS[qos]
        try:
            self._typestore.get_msgdef(msgtype)
        except Exception as exc:  # rosbags raises TypesysError; the reason is what matters
            raise BagError(f'{self.path}: topic {topic!r}: unknown message type {msgtype!r}: {exc}') from None
        self._connections[topic] = self._writer.add_connection(
            topic, msgtype, typestore=self._typestore, offered_qos_profiles=[qos])
        self._counts[topic] = 0
        return self._connections[topic]

    def write(self, topic, stamp_ns, message):
        """Write one message at bag time ``stamp_ns`` (int nanoseconds).

        ``message``: an rclpy message (serialised by rclpy), a rosbags message object, or CDR bytes.
        """
        if topic not in self._connections:
            raise BagError(f'{self.path}: topic {topic!r} was not declared with add_topic')
        stamp_ns = check_int('stamp_ns', stamp_ns, 0)
        conn = self._connections[topic]
        if isinstance(message, (bytes, bytearray, memoryview)):
            data = bytes(message)
        elif _is_rclpy_message(message):
            if _ros_msgtype(message) != conn.msgtype:
                raise BagError(f'{self.path}: topic {topic!r} is {conn.msgtype}, got {_ros_msgtype(message)}')
            from rclpy.serialization import serialize_message
            data = serialize_message(message)
        else:
            try:
                data = self._typestore.serialize_cdr(message, conn.msgtype)
            except Exception as exc:
                raise BagError(f'{self.path}: topic {topic!r}: cannot serialise {type(message).__name__} '
                               f'as {conn.msgtype}: {exc}') from None
        self._writer.write(conn, stamp_ns, data)
        self._counts[topic] += 1

    def set_custom_data(self, key, value):
        """Store a provenance string (scene, seed, settings...) in metadata.yaml's custom_data."""
        if not isinstance(key, str) or not isinstance(value, str):
            raise InputError('custom_data', (key, value), 'key and value must be strings')
        self._writer.set_custom_data(key, value)

    @property
    def counts(self):
        """Messages written so far, by topic."""
        return dict(self._counts)

    def close(self):
        """Finish the bag (writes the MCAP summary / sqlite index and metadata.yaml)."""
        if self._open:
            self._open = False
            try:
                self._writer.close()
            except (WriterError, OSError) as exc:
                raise BagError(f'{self.path}: cannot finish bag: {exc}') from exc

    def __enter__(self):
        return self

    def __exit__(self, exc_type, exc, tb):
        self.close()
        return False


@dataclass(frozen=True)
class BagMessage:
    """One message read from a bag."""

    topic: str
    stamp_ns: int          # bag (log) time stamp, ns
    msgtype: str           # e.g. 'sensor_msgs/msg/Image'
    message: Any           # decoded message (rosbags or rclpy object), or CDR bytes when decode=False

    def __iter__(self):  # allows `for topic, stamp_ns, msgtype, msg in reader.messages()`
        return iter((self.topic, self.stamp_ns, self.msgtype, self.message))


BAG_FILE_SUFFIXES = ('.mcap', '.db3')


def is_bag_dir(path):
    """True when ``path`` is a folder that looks like one rosbag2 bag: it holds metadata.yaml or an
    .mcap / .db3 file (a bag whose metadata.yaml is missing is still a bag, maybe a damaged one)."""
    path = Path(path)
    if not path.is_dir():
        return False
    return (path / 'metadata.yaml').is_file() or any(
        f.suffix in BAG_FILE_SUFFIXES and f.is_file() for f in path.iterdir())


def bags_in_folder(path):
    """The bags (folders holding metadata.yaml) found recursively under the folder ``path`` that is not
    a bag itself, sorted; [] when there are none."""
    path = Path(path)
    return sorted(m.parent for m in path.rglob('metadata.yaml') if m.parent != path)


def _bag_names(root, bags, limit=5):
    names = [str(b.relative_to(root)) for b in bags[:limit]]
    if len(bags) > limit:
        names.append(f'... {len(bags) - limit} more')
    return ', '.join(names)


def check_bag_path(path):
    """Raise BagError with a one-line reason naming ``path`` when it cannot be a rosbag2 bag: missing,
    an empty folder, a folder of bags, or a folder that is no bag (no metadata.yaml, no .mcap/.db3
    file). A path that looks like a bag passes (it may still fail to open: corrupt or truncated)."""
    path = Path(path)
    if not path.exists():
        raise BagError(f'{path}: no such bag')
    if not path.is_dir() or is_bag_dir(path):
        return
    if not any(path.iterdir()):
        raise BagError(f'{path}: empty folder, not a rosbag2 bag')
    bags = bags_in_folder(path)
    if bags:
        raise BagError(f'{path}: a folder of {len(bags)} bag{"s" if len(bags) != 1 else ""}: pass one of '
                       f'them ({_bag_names(path, bags)})')
    raise BagError(f'{path}: not a rosbag2 bag (no metadata.yaml and no .mcap/.db3 file)')


class BagReader:
    """Read a rosbag2 directory (MCAP or sqlite3) written by any rosbag2 writer.

    Args:
        path: the bag directory (holding metadata.yaml).
        decode: 'rosbags' (default, no ROS needed), 'rclpy' (rclpy message classes) or False (raw CDR).
    """

    def __init__(self, path, decode='rosbags'):
        if decode not in ('rosbags', 'rclpy', False):
            raise InputError('decode', decode, "expected 'rosbags', 'rclpy' or False")
        self.path = Path(path)
        self.decode = decode
        check_bag_path(self.path)
        self._typestore = _typestore()
        try:
            self._reader = Reader(self.path)
            self._reader.open()
        except (ReaderError, OSError, KeyError, ValueError, TypeError) as exc:
            raise BagError(f'{self.path}: cannot open bag (corrupt or truncated?): {exc}') from exc
        self._register_unknown_types()
        self._rclpy_classes = {}

    def _register_unknown_types(self):
        """Types missing from the Kilted store are taken from the definitions stored in the bag."""
        known = self._typestore.fielddefs
        for conn in self._reader.connections:
            if conn.msgtype in known:
                continue
            msgdef = getattr(conn, 'msgdef', None)
            text = getattr(msgdef, 'data', None) if msgdef is not None else None
            if text:
                try:
                    self._typestore.register(get_types_from_msg(text, conn.msgtype))
                except Exception:  # a bad stored definition: reported when the topic is read
                    pass

    # --------------------------------------------------------------------------------------- summary

    def count(self, topic):
        """Number of messages on ``topic`` (relative names resolve as in messages())."""
        (name,) = self._resolve_topics([topic])
        return self.topics[name][1]

    @property
    def topics(self):
        """{topic: (msgtype, message count)} with the names as stored in the bag."""
        out = {}
        for conn in self._reader.connections:
            msgtype, count = out.get(conn.topic, (conn.msgtype, 0))
            out[conn.topic] = (msgtype, count + conn.msgcount)
        return out

    @property
    def custom_data(self):
        """metadata.yaml custom_data (dict of str; empty when none)."""
        metadata = getattr(self._reader.storage, 'metadata', None)
        return dict(getattr(metadata, 'custom', None) or {})

    @property
    def start_ns(self):
        return self._reader.start_time

    @property
    def end_ns(self):
        return self._reader.end_time

    @property
    def duration(self):
        """Seconds between the first and the last message."""
        return max(0, self._reader.duration - 1) * 1e-9  # rosbags adds 1 ns to the span

    @property
    def storage(self):
        """'mcap' or 'sqlite3' (from the storage files of the bag)."""
        suffixes = {f.suffix for f in self.path.iterdir()} if self.path.is_dir() else {self.path.suffix}
        return 'mcap' if '.mcap' in suffixes else 'sqlite3' if '.db3' in suffixes else 'unknown'

    def offered_qos(self, topic):
        """The offered QoS profiles stored for ``topic`` (list of rosbags Qos)."""
        (name,) = self._resolve_topics([topic])
        conns = [c for c in self._reader.connections if c.topic == name]
        return list(conns[0].ext.offered_qos_profiles)

    def _resolve_topics(self, topics):
        """Requested names -> names in the bag. 'camera/image_raw' also finds '/camera/image_raw'
        (ros2 bag record stores fully qualified names; the package's topic names are relative)."""
        available = self.topics
        resolved, missing = [], []
        for topic in topics:
            if topic in available:
                resolved.append(topic)
            elif not topic.startswith('/') and '/' + topic in available:
                resolved.append('/' + topic)
            else:
                missing.append(topic)
        if missing:
            raise BagError(f'{self.path}: topic(s) {missing} not in bag; it has {sorted(available)}')
        return resolved

    # -------------------------------------------------------------------------------------- messages

    def _decoder(self, conn):
        if self.decode is False:
            return lambda raw: raw
        if conn.msgtype not in self._typestore.fielddefs:
            raise BagError(f'{self.path}: topic {conn.topic!r}: unknown message type {conn.msgtype!r} '
                           '(not in the Kilted type store and no usable definition stored in the bag)')
        if self.decode == 'rosbags':
            return lambda raw: self._typestore.deserialize_cdr(raw, conn.msgtype)
        cls = self._rclpy_class(conn)
        from rclpy.serialization import deserialize_message
        return lambda raw: deserialize_message(raw, cls)

    def _rclpy_class(self, conn):
        if conn.msgtype not in self._rclpy_classes:
            try:
                pkg, kind, name = conn.msgtype.split('/')
                self._rclpy_classes[conn.msgtype] = getattr(importlib.import_module(f'{pkg}.{kind}'), name)
            except (ValueError, ImportError, AttributeError) as exc:
                raise BagError(f'{self.path}: topic {conn.topic!r}: no rclpy class for {conn.msgtype!r}: '
                               f'{exc}') from None
        return self._rclpy_classes[conn.msgtype]

    def messages(self, topics=None, start_ns=None, stop_ns=None):
        """Iterator of :class:`BagMessage` in time-stamp order, for ``topics`` (all when None).

        A topic that is not in the bag or a message type that cannot be decoded raises BagError at
        once; a corrupt record raises BagError when it is reached. Errors name the bag and the topic.
        """
        if topics is not None:
            topics = self._resolve_topics(list(topics))
            conns = [c for c in self._reader.connections if c.topic in topics]
        else:
            conns = list(self._reader.connections)
        decoders = {c.id: self._decoder(c) for c in conns}  # unknown types fail here, before reading
        return self._iterate(conns, decoders, start_ns, stop_ns)

    def _iterate(self, conns, decoders, start_ns, stop_ns):
        iterator = self._reader.messages(connections=conns, start=start_ns, stop=stop_ns)
        while True:
            try:
                conn, stamp, raw = next(iterator)
            except StopIteration:
                return
            except (ReaderError, OSError, EOFError, ValueError, KeyError, IndexError) as exc:
                raise BagError(f'{self.path}: corrupt or truncated bag while reading: {exc}') from exc
            except Exception as exc:  # zstd/lz4/sqlite errors have their own types
                raise BagError(f'{self.path}: cannot read bag: {type(exc).__name__}: {exc}') from exc
            try:
                message = decoders[conn.id](raw)
            except BagError:
                raise
            except Exception as exc:  # a decoder meets arbitrary bytes: any failure means corrupt data
                raise BagError(f'{self.path}: topic {conn.topic!r}: cannot decode {conn.msgtype} message '
                               f'at {stamp} ns: {type(exc).__name__}: {exc}') from exc
            yield BagMessage(conn.topic, stamp, conn.msgtype, message)

    def close(self):
        self._reader.close()

    def __enter__(self):
        return self

    def __exit__(self, exc_type, exc, tb):
        self.close()
        return False
