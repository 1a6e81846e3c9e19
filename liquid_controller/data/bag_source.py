"""Raw, time-ordered message streams from a rosbag2 bag, with salvage of truncated MCAP files.

Replay and the DDS player read bags through :func:`open_bag_source`. Normally that is
:class:`liquid_controller.data.bag.BagReader` with ``decode=False`` (raw CDR; MCAP or sqlite3). When an
MCAP file cannot be opened because its end is missing (a recorder killed mid-write, a copy cut short),
the file is read from its start with ``mcap``'s stream reader instead (and the complete records of a
chunk that is cut short are recovered when it is uncompressed, which is rosbag2's default), so every
message before the damage is still delivered; reaching the damage raises
:class:`~liquid_controller.errors.BagError` naming the file and the last topic read.
"""
from __future__ import annotations

import io
import os
import struct
from dataclasses import dataclass
from pathlib import Path

import yaml
from mcap.data_stream import ReadDataStream
from mcap.exceptions import McapError, UnsupportedCompressionError
from mcap.opcode import Opcode
from mcap.records import Channel, Chunk, Message, Schema
from mcap.stream_reader import StreamReader, breakup_chunk

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
        try:
            for record in _salvage_records(self.file):
                for topic, stamp, msgtype, raw in self._handle(record, schemas, channels, state):
                    if wanted is None or topic in wanted:
                        yield topic, stamp, msgtype, raw
        except _Damage as exc:
            raise BagError(f'{self.file}: truncated or corrupt MCAP after {state["n"]} messages (last topic '
                           f'read: {state["last_topic"]!r}): {exc}') from None
        raise BagError(f'{self.file}: MCAP file is damaged ({self.cause}); all {state["n"]} readable '
                       f'messages were read (last topic: {state["last_topic"]!r})')

    def _handle(self, record, schemas, channels, state):
        if isinstance(record, Schema):
            schemas[record.id] = record.name
        elif isinstance(record, Channel):
            msgtype = schemas.get(record.schema_id, '')
            channels[record.id] = (record.topic, msgtype)
            if record.topic not in self.topics:
                self.topics[record.topic] = TopicInfo(record.topic, msgtype, -1, ())
        elif isinstance(record, Message):
            if record.channel_id not in channels:
                raise _Damage(f'message on unknown channel {record.channel_id}')
            topic, msgtype = channels[record.channel_id]
            state['last_topic'] = topic
            state['n'] += 1
            yield topic, int(record.log_time), msgtype, bytes(record.data)

    def close(self):
        pass


class _Damage(Exception):
    """Where a damaged MCAP stream stops being readable."""


def _salvage_records(file):
    """The MCAP records of ``file`` in file order (chunks broken up), read with ``mcap``'s stream
    reader, until the damage; then raise _Damage. A chunk cut short is not given by the stream reader
    at all, so its complete inner records are recovered here (possible for uncompressed chunks,
    rosbag2's default): every message written before the cut is delivered."""
    with open(file, 'rb') as f:
        size = os.fstat(f.fileno()).st_size
        # record_size_limit: a corrupt length must not make the reader allocate more than the file
        reader = StreamReader(f, emit_chunks=True, record_size_limit=size)
        good_end = f.tell()
        try:
            for record in reader.records:
                if isinstance(record, Chunk):
                    yield from _chunk_records(record)
                else:
                    yield record
                good_end = f.tell()
            return
        except (McapError, ValueError, struct.error, UnicodeDecodeError) as exc:
            cause = exc
        f.seek(good_end)
        tail = f.read()
    if tail[:1] == bytes([Opcode.CHUNK]):
        # the record after the last complete one is a chunk cut short: mcap's Chunk.read keeps the
        # bytes that are there (a short read), so the chunk's complete records can still be read
        try:
            chunk = Chunk.read(ReadDataStream(io.BytesIO(tail[9:])))
        except (McapError, struct.error, UnicodeDecodeError):
            chunk = None
        if chunk is not None:
            yield from _chunk_records(chunk, cut=True)
            raise _Damage('chunk cut short')
    raise _Damage(f'{type(cause).__name__}: {cause}' if str(cause) else type(cause).__name__)


def _chunk_records(chunk, cut=False):
    """Schema/Channel/Message records inside a chunk (``cut``: its data ends early; the complete
    records before the cut are given, then the iteration ends)."""
    if not cut:
        try:
            records = breakup_chunk(chunk)
        except UnsupportedCompressionError as exc:
            raise _Damage(f'cannot decompress {chunk.compression} chunk: {exc}') from None
        except Exception as exc:  # zstd/lz4 errors have no common base class
            raise _Damage(f'corrupt {chunk.compression or "uncompressed"} chunk: '
                          f'{type(exc).__name__} {exc}') from None
        yield from (r for r in records if isinstance(r, (Schema, Channel, Message)))
        return
    if chunk.compression:
        raise _Damage(f'{chunk.compression}-compressed chunk cut short: its records cannot be recovered')
    # an uncompressed chunk's records are a plain record stream without magic: the same reader reads
    # them one by one; it stops with EndOfFile at the record the cut went through
    inner = StreamReader(io.BytesIO(chunk.data), skip_magic=True, record_size_limit=len(chunk.data))
    try:
        for record in inner.records:
            if isinstance(record, (Schema, Channel, Message)):
                yield record
    except (McapError, ValueError, struct.error, UnicodeDecodeError):
        return


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
