"""Raw, time-ordered message streams from a rosbag2 bag, with salvage of truncated MCAP files.

Replay and the DDS player read bags through :func:`open_bag_source`. Normally that is
:class:`liquid_controller.data.bag.BagReader` with ``decode=False`` (raw CDR; MCAP or sqlite3). When an
MCAP file cannot be opened because its end is missing (a recorder killed mid-write, a copy cut short),
the file is parsed record by record from the start instead (also inside a chunk that is cut short,
when it is uncompressed, which is rosbag2's default), so every message before the damage is still
delivered; reaching the damage raises
:class:`~liquid_controller.errors.BagError` naming the file and the last topic read.
"""
from __future__ import annotations

import struct
from dataclasses import dataclass
from pathlib import Path

import yaml

from liquid_controller.data.bag import BagReader
from liquid_controller.errors import BagError


@dataclass(frozen=True)
class TopicInfo:
    """A topic stored in a bag: name as stored, type, message count, offered QoS (rosbags Qos list)."""
    name: str
    msgtype: str
    count: int
    offered_qos: tuple = ()


def resolve_topic(name, available):
    """Bag topic for a requested name: exact, or '/'+name for relative names (ros2 bag record stores
    fully qualified names, the package's topic names are relative). None when absent."""
    if name in available:
        return name
    if not name.startswith('/') and '/' + name in available:
        return '/' + name
    return None


class BagSource:
    """Time-ordered raw messages of a readable bag (rosbags reader)."""

    salvaged = False

    def __init__(self, path):
        self.path = Path(path)
        self._reader = BagReader(self.path, decode=False)
        self.storage = self._reader.storage
        self.topics = {}
        for name, (msgtype, count) in self._reader.topics.items():
            try:
                qos = tuple(self._reader.offered_qos(name))
            except Exception:  # a bag without QoS metadata (old rosbag2): publishers use defaults
                qos = ()
            self.topics[name] = TopicInfo(name, msgtype, count, qos)

    @property
    def start_ns(self):
        return self._reader.start_ns

    def messages(self, topics=None):
        """Yield (topic, bag stamp ns, msgtype, raw CDR bytes) in bag-time order."""
        for m in self._reader.messages(topics):
            yield m.topic, m.stamp_ns, m.msgtype, bytes(m.message)

    def close(self):
        self._reader.close()


class SalvagedMcapSource:
    """Streams a damaged MCAP file from its start (file order) until the damage.

    Topic types, counts and QoS come from metadata.yaml when it is readable, else from the channels
    seen while streaming (counts then unknown: -1).
    """

    salvaged = True
    storage = 'mcap'

    def __init__(self, path, cause):
        self.path = Path(path)
        self.cause = cause
        files = sorted(self.path.glob('*.mcap')) if self.path.is_dir() else [self.path]
        if len(files) != 1:
            raise BagError(f'{self.path}: cannot open bag and cannot salvage it ({len(files)} .mcap '
                           f'files): {cause}')
        self.file = files[0]
        self.topics = self._topics_from_metadata()
        self.start_ns = None

    def _topics_from_metadata(self):
        meta = self.path / 'metadata.yaml'
        topics = {}
        try:
            info = yaml.safe_load(meta.read_text())['rosbag2_bagfile_information']
            for entry in info.get('topics_with_message_count', []):
                md = entry['topic_metadata']
                topics[md['name']] = TopicInfo(md['name'], md['type'], int(entry['message_count']), ())
        except (OSError, KeyError, TypeError, yaml.YAMLError):
            pass  # filled from the MCAP channels while streaming
        return topics

    def messages(self, topics=None):
        """Yield (topic, bag stamp ns, msgtype, raw CDR) in file order until the damage, then raise
        BagError naming the file and the last topic read."""
        wanted = None if topics is None else set(topics)
        schemas, channels = {}, {}
        state = {'last_topic': None, 'n': 0}
        data = self.file.read_bytes()
        try:
            for opcode, body in _records(data, len(MAGIC), state):
                for topic, stamp, msgtype, raw in self._handle(opcode, body, schemas, channels, state):
                    if wanted is None or topic in wanted:
                        yield topic, stamp, msgtype, raw
        except _Damage as exc:
            raise BagError(f'{self.file}: truncated or corrupt MCAP after {state["n"]} messages (last topic '
                           f'read: {state["last_topic"]!r}): {exc}') from None
        raise BagError(f'{self.file}: MCAP file is damaged ({self.cause}); all {state["n"]} readable '
                       f'messages were read (last topic: {state["last_topic"]!r})')

    def _handle(self, opcode, body, schemas, channels, state):
        if opcode == OP_SCHEMA:
            sid = struct.unpack_from('<H', body, 0)[0]
            name, _ = _string(body, 2)
            schemas[sid] = name
        elif opcode == OP_CHANNEL:
            cid, sid = struct.unpack_from('<HH', body, 0)
            topic, _ = _string(body, 4)
            channels[cid] = (topic, schemas.get(sid, ''))
            if topic not in self.topics:
                self.topics[topic] = TopicInfo(topic, schemas.get(sid, ''), -1, ())
        elif opcode == OP_MESSAGE:
            cid, _seq, log_time = struct.unpack_from('<HIQ', body, 0)
            if cid not in channels:
                raise _Damage(f'message on unknown channel {cid}')
            topic, msgtype = channels[cid]
            state['last_topic'] = topic
            state['n'] += 1
            yield topic, int(log_time), msgtype, bytes(body[22:])
        elif opcode == OP_CHUNK:
            offset = 8 + 8 + 8 + 4
            compression, offset = _string(body, offset)
            (size,) = struct.unpack_from('<Q', body, offset)
            offset += 8
            records = body[offset:offset + size]
            if compression:
                records = _decompress(compression, records)
            for inner_op, inner in _records(records, 0, state, inner=True):
                yield from self._handle(inner_op, inner, schemas, channels, state)

    def close(self):
        pass


MAGIC = b'\x89MCAP0\r\n'
OP_SCHEMA, OP_CHANNEL, OP_MESSAGE, OP_CHUNK = 0x03, 0x04, 0x05, 0x06


class _Damage(Exception):
    """Where a damaged MCAP stream stops being readable."""


def _string(buf, offset):
    (n,) = struct.unpack_from('<I', buf, offset)
    return bytes(buf[offset + 4:offset + 4 + n]).decode('utf-8', 'replace'), offset + 4 + n


def _records(buf, offset, state, inner=False):
    """(opcode, body) of the MCAP records in ``buf`` from ``offset``. A record cut short ends the
    iteration with _Damage (inside a chunk: the complete records before the cut are still given)."""
    view = memoryview(buf)
    end = len(buf)
    while offset < end:
        if offset + 9 > end:
            raise _Damage('record header cut short')
        opcode = view[offset]
        (length,) = struct.unpack_from('<Q', view, offset + 1)
        body_start = offset + 9
        if body_start + length > end:
            if opcode == OP_CHUNK and not inner:
                # a chunk cut short: its complete inner records are still readable (uncompressed chunks)
                yield opcode, _CutChunk(view[body_start:end])
                raise _Damage('chunk cut short')
            raise _Damage(f'record (opcode 0x{opcode:02x}) cut short')
        yield opcode, view[body_start:body_start + length]
        offset = body_start + length


class _CutChunk(bytes):
    """Marker type for the body of a chunk whose end is missing."""


def _decompress(compression, data):
    try:
        if compression == 'zstd':
            import zstandard
            return zstandard.ZstdDecompressor().decompress(bytes(data))
        if compression == 'lz4':
            import lz4.frame
            return lz4.frame.decompress(bytes(data))
    except ImportError as exc:
        raise _Damage(f'cannot decompress {compression} chunk: {exc}') from None
    except Exception as exc:
        raise _Damage(f'{compression} chunk cannot be decompressed: {exc}') from None
    raise _Damage(f'unknown chunk compression {compression!r}')


def open_bag_source(path, salvage=True):
    """A :class:`BagSource`, or a :class:`SalvagedMcapSource` for an MCAP bag whose end is damaged
    (when ``salvage``). Raises BagError naming the path when neither works."""
    try:
        return BagSource(path)
    except BagError as exc:
        p = Path(path)
        is_mcap = p.suffix == '.mcap' or (p.is_dir() and any(p.glob('*.mcap')))
        if not salvage or not is_mcap:
            raise
        return SalvagedMcapSource(p, exc)
