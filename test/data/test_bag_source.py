"""Salvage of damaged MCAP files (data/bag_source.py) on files written by the ``mcap`` library itself,
with chunk sizes and compressions chosen so that the cut falls inside a chunk."""
import pytest
from mcap.writer import CompressionType, Writer

from liquid_controller.data.bag_source import SalvagedMcapSource, open_bag_source
from liquid_controller.errors import BagError

N_MESSAGES = 200
PAYLOAD = 100  # bytes per message: equal sizes make the expected salvage count predictable


def _write_mcap(path, compression, chunk_size):
    with open(path, 'wb') as f:
        writer = Writer(f, chunk_size=chunk_size, compression=compression)
        writer.start()
        schema = writer.register_schema(name='std_msgs/msg/String', encoding='ros2msg', data=b'string data')
        channel = writer.register_channel(topic='/chatter', message_encoding='cdr', schema_id=schema)
        for i in range(N_MESSAGES):
            writer.add_message(channel, log_time=1000 + i, publish_time=1000 + i, sequence=i,
                               data=_payload(i))
        writer.finish()


def _complete_before(path, cut):
    """How many messages of an uncompressed file lie wholly before byte ``cut`` (found by their
    payloads, which are unique)."""
    data = path.read_bytes()
    ends = [data.index(_payload(i)) + PAYLOAD for i in range(N_MESSAGES)]
    return sum(end <= cut for end in ends)


def _payload(i):
    return i.to_bytes(4, 'little') * (PAYLOAD // 4)


def _salvage(path, cut):
    data = path.read_bytes()
    path.write_bytes(data[:cut])
    source = open_bag_source(path)
    assert isinstance(source, SalvagedMcapSource)
    got = []
    with pytest.raises(BagError) as info:
        for topic, stamp, msgtype, raw in source.messages():
            got.append((topic, stamp, msgtype, raw))
    return got, str(info.value)


def _check_prefix(got):
    for i, (topic, stamp, msgtype, raw) in enumerate(got):
        assert (topic, stamp, msgtype) == ('/chatter', 1000 + i, 'std_msgs/msg/String')
        assert raw == _payload(i)


def test_cut_inside_one_uncompressed_chunk_keeps_the_messages_before_the_cut(tmp_path):
    path = tmp_path / 'one_chunk.mcap'
    _write_mcap(path, CompressionType.NONE, chunk_size=1 << 30)  # everything in one chunk
    cut = path.stat().st_size * 6 // 10
    expected = _complete_before(path, cut)
    assert 0 < expected < N_MESSAGES
    got, err = _salvage(path, cut)
    _check_prefix(got)
    assert len(got) == expected  # every message written before the cut, none after
    assert str(path) in err and 'truncated or corrupt' in err and "'/chatter'" in err


def test_cut_between_chunks_keeps_every_complete_chunk(tmp_path):
    path = tmp_path / 'many_chunks.mcap'
    _write_mcap(path, CompressionType.NONE, chunk_size=2000)
    for cut in range(path.stat().st_size // 4, path.stat().st_size // 2, 397):  # cuts anywhere
        _write_mcap(path, CompressionType.NONE, chunk_size=2000)
        expected = _complete_before(path, cut)
        got, _ = _salvage(path, cut)
        _check_prefix(got)
        assert len(got) == expected, cut


@pytest.mark.parametrize('compression', [CompressionType.ZSTD, CompressionType.LZ4])
def test_compressed_chunks_are_read_up_to_the_cut_chunk(tmp_path, compression):
    pytest.importorskip('zstandard' if compression == CompressionType.ZSTD else 'lz4')
    path = tmp_path / 'compressed.mcap'
    _write_mcap(path, compression, chunk_size=2000)
    got, err = _salvage(path, path.stat().st_size * 6 // 10)
    _check_prefix(got)
    assert len(got) > 0.3 * N_MESSAGES  # complete compressed chunks; the cut one cannot be read
    assert 'truncated or corrupt' in err


def test_garbage_file_is_a_bag_error_naming_the_file(tmp_path):
    path = tmp_path / 'garbage.mcap'
    path.write_bytes(b'\x89MCAP0\r\n' + b'\xff' * 64)
    with pytest.raises(BagError) as info:
        list(open_bag_source(path).messages())
    assert str(path) in str(info.value)
