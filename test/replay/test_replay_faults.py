"""Bad input to the offline replay: each fault gives an error naming the file and the topic, and what
was computed before the fault is kept (attached to the error and written to the output bag).

What was kept is compared bit for bit with ``reference`` (the intact bag replayed in this run, same
kernels), never with the stored golden.npz, which another CPU reproduces only to an ulp."""
import shutil

import numpy as np
import pytest

from liquid_controller import cli
from liquid_controller.data.bag import BagReader
from liquid_controller.data.replay import ReplayConfig, ReplayError, ReplayTopics, replay_bag
from liquid_controller.errors import BagError

import bag_edit  # noqa: E402

CAMERA = bag_edit.CAMERA


def _out_frames(out):
    with BagReader(out) as bag:
        return bag.topics['/replay/cmd_vel'][1]


def test_truncated_mcap_keeps_results_up_to_the_cut(scenario, loaded_model, assert_reference, tmp_path):
    bag = tmp_path / 'cut'
    shutil.copytree(scenario.bag, bag)
    mcap = next(bag.glob('*.mcap'))
    data = mcap.read_bytes()
    mcap.write_bytes(data[:len(data) * 6 // 10])  # a recorder killed mid-write
    out = tmp_path / 'out'
    with pytest.raises(ReplayError) as info:
        replay_bag(bag, loaded_model, out=out, config=scenario.replay_config())
    err = info.value
    assert str(mcap) in str(err) and 'truncated or corrupt' in str(err)
    assert 'last topic read' in str(err)
    result = err.result
    assert 10 < result.frames < 60
    assert_reference(result, result.frames)
    assert result.error and any('damaged' in n for n in result.notes)
    assert _out_frames(out) == result.frames  # the partial output bag is finished and readable


def test_corrupt_record_names_topic(scenario, loaded_model, assert_reference, tmp_path):
    bag = tmp_path / 'corrupt'
    imu_index = []

    def edit(i, topic, ns, mt, raw):
        if topic == '/imu/data':
            imu_index.append(i)
            if len(imu_index) == 200:  # about a third in: a record with garbage bytes
                return topic, ns, mt, raw[:12]
        return topic, ns, mt, raw
    bag_edit.rewrite(scenario.bag, bag, edit=edit)
    out = tmp_path / 'out'
    with pytest.raises(ReplayError) as info:
        replay_bag(bag, loaded_model, out=out, config=scenario.replay_config())
    err = info.value
    assert err.topic == '/imu/data' and str(bag) in str(err) and "'/imu/data'" in str(err)
    assert 20 < err.result.frames < 40
    assert_reference(err.result, err.result.frames)
    assert _out_frames(out) == err.result.frames


def test_stamps_out_of_order_name_topic_and_keep_prefix(scenario, loaded_model, assert_reference, tmp_path):
    messages, _ = bag_edit.read_all(scenario.bag)
    frames = [i for i, m in enumerate(messages) if m[0] == CAMERA]
    i30, i31 = frames[30], frames[31]
    stamp30, stamp31 = messages[i30][1], messages[i31][1]  # bag time == header stamp in this bag

    def edit(i, topic, ns, mt, raw):
        if i == i31:  # frame 31 claims to be older than frame 30
            return topic, ns, mt, bag_edit.with_header_stamp(raw, mt, stamp30 - 1_000_000)
        return topic, ns, mt, raw
    bag = tmp_path / 'disorder'
    bag_edit.rewrite(scenario.bag, bag, edit=edit)
    out = tmp_path / 'out'
    with pytest.raises(ReplayError, match='out of order') as info:
        replay_bag(bag, loaded_model, out=out, config=scenario.replay_config())
    err = info.value
    assert err.topic == CAMERA and str(bag) in str(err) and stamp31 > stamp30
    assert err.result.frames == 31
    assert_reference(err.result, 31)
    assert _out_frames(out) == 31


def test_missing_required_topic(scenario, loaded_model, tmp_path):
    bag = tmp_path / 'no_imu'
    bag_edit.rewrite(scenario.bag, bag, edit=lambda i, t, ns, mt, raw: None if t == '/imu/data' else
                     (t, ns, mt, raw))
    with pytest.raises(ReplayError) as info:
        replay_bag(bag, loaded_model, out=tmp_path / 'out', config=scenario.replay_config())
    assert info.value.topic == 'imu/data' and str(bag) in str(info.value)
    assert info.value.result.frames == 0


def test_missing_optional_topics_are_noted(scenario, loaded_model, tmp_path):
    bag = tmp_path / 'no_odom'
    bag_edit.rewrite(scenario.bag, bag, edit=lambda i, t, ns, mt, raw: None if t in ('/odom', '/cmd_vel')
                     else (t, ns, mt, raw))
    result = replay_bag(bag, loaded_model, config=ReplayConfig(max_frames=5))
    assert result.frames == 5
    assert any("odom topic 'odom'" in n for n in result.notes)
    assert result.metrics()['compared'] == 0 and np.isnan(result.recorded).all()


def test_wrong_type_on_camera_topic_names_topic_and_type(scenario, loaded_model, tmp_path):
    bag = tmp_path / 'wrong_type'
    String = bag_edit.STORE.types['std_msgs/msg/String']

    def edit(i, topic, ns, mt, raw):
        if topic == CAMERA:
            return '/camera/image_raw', ns, 'std_msgs/msg/String', String(data='not an image')
        return topic, ns, mt, raw
    bag_edit.rewrite(scenario.bag, bag, edit=edit)
    with pytest.raises(ReplayError, match="'/camera/image_raw'.*std_msgs/msg/String"):
        replay_bag(bag, loaded_model, config=scenario.replay_config())


def test_unknown_message_type(scenario, loaded_model, tmp_path):
    """A type that is in no type store (its definition only in the bag): used as the camera topic it
    is an error naming topic and type; on another topic it is skipped with a note."""
    from rosbags.rosbag2 import StoragePlugin, Writer
    from rosbags.typesys import Stores, get_typestore, get_types_from_msg
    store = get_typestore(Stores.ROS2_KILTED)
    store.register(get_types_from_msg('uint32 seq\nstring text', 'acme_msgs/msg/Note'))
    messages, topics = bag_edit.read_all(scenario.bag)
    bag = tmp_path / 'unknown'
    with Writer(bag, version=9, storage_plugin=StoragePlugin.MCAP) as w:
        conns = {t: w.add_connection(t, info.msgtype, typestore=store) for t, info in topics.items()}
        note = w.add_connection('/acme/notes', 'acme_msgs/msg/Note', typestore=store)
        Note = store.types['acme_msgs/msg/Note']
        for k, (t, ns, mt, raw) in enumerate(messages):
            w.write(conns[t], ns, raw)
            if t == CAMERA:
                w.write(note, ns, store.serialize_cdr(Note(seq=k, text='hello'), 'acme_msgs/msg/Note'))
    out = tmp_path / 'out'
    result = replay_bag(bag, loaded_model, out=out, config=ReplayConfig(max_frames=5))
    assert result.frames == 5
    assert any("'/acme/notes'" in n and 'acme_msgs/msg/Note' in n for n in result.notes)
    with BagReader(out) as reader:
        assert '/acme/notes' not in reader.topics and '/imu/data' in reader.topics
    with pytest.raises(ReplayError, match="'/acme/notes'.*acme_msgs/msg/Note") as info:
        replay_bag(bag, loaded_model, config=ReplayConfig(topics=ReplayTopics(image='acme/notes')))
    assert info.value.topic == '/acme/notes'


def test_cli_exit_codes_on_faults(scenario, tmp_path, capsys):
    assert cli.main(['replay', str(tmp_path / 'nope'), '--model', str(scenario.model), '--quiet']) == 1
    err = capsys.readouterr().err
    assert 'no such bag' in err and err.startswith('liquid-controller replay: error: ')
    bag = tmp_path / 'cut'
    shutil.copytree(scenario.bag, bag)
    mcap = next(bag.glob('*.mcap'))
    mcap.write_bytes(mcap.read_bytes()[:mcap.stat().st_size // 3])
    code = cli.main(['replay', str(bag), '--model', str(scenario.model), '--quiet', '--max-frames', '0',
                     '--out', str(tmp_path / 'out')])
    captured = capsys.readouterr()
    assert code == 1
    assert 'frames' in captured.out and 'ERROR (results up to the fault kept)' in captured.out
    assert str(mcap) in captured.err and 'liquid-controller replay: error: ' in captured.err
    assert isinstance(ReplayError('x'), BagError)


def test_imu_stamp_disorder_is_a_fault_unless_tolerated(scenario, loaded_model, assert_reference, tmp_path):
    messages, _ = bag_edit.read_all(scenario.bag)
    imu = [i for i, m in enumerate(messages) if m[0] == '/imu/data']
    a, b = imu[18], imu[19]  # neighbours inside one frame window swap their stamps (a jittery driver)

    def edit(i, topic, ns, mt, raw):
        if i in (a, b):
            other = messages[b if i == a else a][1]
            return topic, ns, mt, bag_edit.with_header_stamp(raw, mt, other)
        return topic, ns, mt, raw
    bag = tmp_path / 'imu_jitter'
    bag_edit.rewrite(scenario.bag, bag, edit=edit)
    with pytest.raises(ReplayError, match='out of order') as info:
        replay_bag(bag, loaded_model, config=ReplayConfig(max_frames=10))
    assert info.value.topic == '/imu/data'
    result = replay_bag(bag, loaded_model, config=ReplayConfig(max_frames=10, max_stamp_disorder=0.01))
    assert result.frames == 10  # sorted by stamp as the node does: same windows, same commands
    assert_reference(result, 10)


def test_undecodable_frame_brakes_and_replay_continues(scenario, loaded_model, assert_reference, tmp_path):
    """A bad message (not a bad bag) is handled as the node handles it: brake with a reason, go on."""
    messages, _ = bag_edit.read_all(scenario.bag)
    bad = [i for i, m in enumerate(messages) if m[0] == CAMERA][10]

    def edit(i, topic, ns, mt, raw):
        if i == bad:
            msg = bag_edit.STORE.deserialize_cdr(raw, mt)
            msg.data = np.frombuffer(b'\xff\xd8 not a jpeg', dtype=np.uint8)
            return topic, ns, mt, msg
        return topic, ns, mt, raw
    bag = tmp_path / 'bad_jpeg'
    bag_edit.rewrite(scenario.bag, bag, edit=edit)
    result = replay_bag(bag, loaded_model, config=scenario.replay_config())
    assert result.frames == 60
    assert result.status[10] == 'bad_input' and result.status.count('bad_input') == 1
    assert result.status[11] == 'ok'
    assert_reference(result, 10)
    assert abs(result.command[10, 0]) <= abs(result.command[9, 0])  # braking, never speeding up


def test_truncated_sqlite3_bag_is_a_clear_error(scenario, loaded_model, tmp_path):
    """sqlite3 cannot open a cut database at all: an error naming the bag (no partial results)."""
    bag = tmp_path / 'db'
    bag_edit.rewrite(scenario.bag, bag, storage='sqlite3')
    db3 = next(bag.glob('*.db3'))
    db3.write_bytes(db3.read_bytes()[:db3.stat().st_size // 2])
    with pytest.raises(BagError, match=str(bag)):
        replay_bag(bag, loaded_model)
