"""Expert recording: a real simulator run written as a real rosbag2, read back by two readers."""
import json

import numpy as np
import pytest
import yaml

from liquid_controller.data.bag import BagReader
from liquid_controller.data.recording import record_expert
from liquid_controller.errors import InputError
from liquid_controller.sim.bridge import GROUND_TRUTH_FIELDS

convert = pytest.importorskip('liquid_controller.messages.convert')
pytest.importorskip('rclpy.serialization')

SECONDS = 3.0
CAMERA_HZ = 30
IMU_HZ = 200
FRAMES = int(SECONDS * CAMERA_HZ)
# the first frame carries the IMU sample at t = 0, every later frame those since the previous frame
IMU_SAMPLES = 1 + round(IMU_HZ * (FRAMES - 1) / CAMERA_HZ)
PER_FRAME_TOPICS = ('/camera/image_raw', '/camera/camera_info', '/odom', '/cmd_vel',
                    '/sim/executed_cmd_vel', '/sim/ground_truth')


@pytest.fixture(scope='module')
def recording(tmp_path_factory):
    path = tmp_path_factory.mktemp('rec') / 'expert'
    summary = record_expert('summer', minutes=SECONDS / 60, out=path, seed=4, progress=False)
    return path, summary


def test_summary_counts(recording):
    path, summary = recording
    assert summary.frames == FRAMES and summary.sim_seconds == pytest.approx(SECONDS)
    for topic in PER_FRAME_TOPICS:
        assert summary.counts[topic] == FRAMES, topic
    assert abs(summary.counts['/imu/data'] - IMU_SAMPLES) <= 1
    assert summary.metrics['frames'] == FRAMES and summary.metrics['collisions'] == 0


def test_bag_reads_back_with_rosbags(recording):
    path, summary = recording
    with BagReader(path) as reader:
        assert reader.storage == 'mcap'
        topics = reader.topics
        assert set(topics) == set(PER_FRAME_TOPICS) | {'/imu/data'}
        assert topics['/cmd_vel'][0] == 'geometry_msgs/msg/TwistStamped'
        for topic in PER_FRAME_TOPICS:
            assert topics[topic][1] == FRAMES
        assert topics['/imu/data'][1] == summary.counts['/imu/data']
        stamps = {}
        last = -1
        for msg in reader.messages():
            assert msg.stamp_ns >= last  # bag order is time order
            last = msg.stamp_ns
            stamps.setdefault(msg.topic, []).append(msg.stamp_ns)
            if hasattr(msg.message, 'header'):  # bag time is the message's own sim-time stamp
                assert convert.stamp_to_ns(msg.message.header.stamp) == msg.stamp_ns
        for topic, values in stamps.items():
            assert np.all(np.diff(values) > 0), f'{topic} stamps not strictly increasing'
        frame_dt = np.diff(stamps['/camera/image_raw']) * 1e-9
        np.testing.assert_allclose(frame_dt, 1 / CAMERA_HZ, atol=2e-3)
        # the IMU is sampled at the physics step nearest each tick (2 ms grid): mean rate exact
        imu = np.array(stamps['/imu/data']) * 1e-9
        assert (imu[-1] - imu[0]) / (len(imu) - 1) == pytest.approx(1 / IMU_HZ, rel=0.01)
        assert np.diff(imu).max() <= 1 / IMU_HZ + 1.5e-3
        assert stamps['/camera/image_raw'][0] == 0
        meta = json.loads(reader.custom_data['liquid_controller.recording'])
        assert meta['scene'] == 'summer' and meta['seed'] == 4
        assert meta['ground_truth_fields'] == list(GROUND_TRUTH_FIELDS)


def test_bag_contents_make_sense(recording):
    path, _ = recording
    with BagReader(path) as reader:
        images = [convert.decode_image(m.message) for m in reader.messages(['camera/image_raw'])]
        odom = [convert.decode_odometry(m.message) for m in reader.messages(['odom'])]
        cmds = [convert.decode_twist(m.message) for m in reader.messages(['cmd_vel'])]
        truth = [convert.decode_float_array(m.message) for m in reader.messages(['/sim/ground_truth'])]
        imu = [convert.decode_imu(m.message) for m in reader.messages(['imu/data'])]
        info = next(iter(reader.messages(['camera/camera_info']))).message
    assert images[0].shape == (64, 128, 3) and images[0].std() > 5  # a rendered scene, not a blank
    assert not np.array_equal(images[0], images[-1])                # the view changes as it drives
    assert (info.width, info.height) == (128, 64) and info.k[0] > 0
    # REP-103: camera data is stamped in the optical frame, as the simulator node does
    with BagReader(path) as reader:
        first = next(iter(reader.messages(['camera/image_raw']))).message
    assert first.header.frame_id == info.header.frame_id == 'camera_optical_frame'
    # the expert accelerates forward and the rover follows: odometry x grows, v matches commands
    assert all(c[1] >= 0 for c in cmds) and cmds[-1][1] > 0.3
    assert odom[-1].position[0] > 0.5 and odom[-1].linear[0] == pytest.approx(cmds[-2][1], abs=0.1)
    assert all(t['in_lane'] == 1.0 for t in truth)
    assert truth[-1]['progress_laps'] > 0
    # IMU at near-rest start reads gravity up; orientation present (a unit quaternion)
    assert imu[0].linear_acceleration[2] == pytest.approx(9.81, abs=0.3)
    assert imu[0].orientation is not None and np.linalg.norm(imu[0].orientation) == pytest.approx(1.0)
    assert imu[0].frame_id == 'imu_link'


def test_bag_reads_back_with_mcap_ros2(recording):
    """An independent reader (mcap + mcap-ros2-support) decodes the same file from its stored schemas."""
    from mcap_ros2.reader import read_ros2_messages
    path, summary = recording
    (mcap_file,) = path.glob('*.mcap')
    counts = {}
    previous = {}
    for m in read_ros2_messages(str(mcap_file)):
        topic = m.channel.topic
        counts[topic] = counts.get(topic, 0) + 1
        assert m.log_time_ns > previous.get(topic, -1)
        previous[topic] = m.log_time_ns
        if topic == '/camera/image_raw':
            assert (m.ros_msg.encoding, m.ros_msg.width, m.ros_msg.height) == ('rgb8', 128, 64)
            assert len(m.ros_msg.data) == 64 * 128 * 3
    assert counts == summary.counts
    meta = yaml.safe_load((path / 'metadata.yaml').read_text())['rosbag2_bagfile_information']
    qos = {t['topic_metadata']['name']: t['topic_metadata']['offered_qos_profiles'][0]['reliability']
           for t in meta['topics_with_message_count']}
    assert qos['/camera/image_raw'] == 'reliable' and qos['/imu/data'] == 'best_effort' and qos['/cmd_vel'] == 'reliable'


def test_sqlite3_range_sensor_and_determinism(tmp_path):
    from liquid_controller.sim import WorldConfig
    config = WorldConfig(range_sensor=True)
    a = record_expert('summer', minutes=0.5 / 60, out=tmp_path / 'a', seed=2, storage='sqlite3',
                      world_config=config, progress=False)
    b = record_expert('summer', minutes=0.5 / 60, out=tmp_path / 'b', seed=2, storage='sqlite3',
                      world_config=config, progress=False)
    assert a.counts['/range'] == 15 and a.counts == b.counts
    with BagReader(tmp_path / 'a') as ra, BagReader(tmp_path / 'b') as rb:
        assert ra.storage == 'sqlite3'
        ranges = [convert.decode_range(m.message)[1] for m in ra.messages(['/range'])]
        assert all(r > 0 for r in ranges)
        for ma, mb in zip(ra.messages(['/camera/image_raw', '/cmd_vel']),
                          rb.messages(['/camera/image_raw', '/cmd_vel']), strict=True):
            assert ma.stamp_ns == mb.stamp_ns
            if ma.topic == '/cmd_vel':
                assert convert.decode_twist(ma.message) == convert.decode_twist(mb.message)
            else:
                np.testing.assert_array_equal(convert.decode_image(ma.message), convert.decode_image(mb.message))


def test_bad_arguments_name_the_argument(tmp_path):
    (tmp_path / 'exists').mkdir()
    for kwargs, name in ((dict(out=tmp_path / 'exists'), 'out'), (dict(minutes=0), 'minutes'),
                         (dict(minutes='long'), 'minutes'), (dict(seed=-3), 'seed'),
                         (dict(perturbation='strong'), 'perturbation'),
                         (dict(perturbation={'rate_hz': -1.0}), 'rate_hz')):
        kwargs.setdefault('out', tmp_path / 'new')
        with pytest.raises(InputError) as exc_info:
            record_expert('summer', progress=False, **kwargs)
        assert exc_info.value.name == name
    assert not (tmp_path / 'new').exists()


def test_record_command(tmp_path, capsys):
    from liquid_controller.cli import main
    out = tmp_path / 'cli_bag'
    rc = main(['record', '--scene', 'summer', '--minutes', str(0.4 / 60), '--out', str(out), '--seed', '1',
               '--storage', 'sqlite3', '--no-perturb', '--quiet', '--summary-json', str(tmp_path / 's.json')])
    assert rc == 0
    assert 'wrote' in capsys.readouterr().out
    summary = json.loads((tmp_path / 's.json').read_text())
    assert summary['frames'] == 12 and summary['counts']['/camera/image_raw'] == 12
    with BagReader(out) as reader:
        assert reader.storage == 'sqlite3' and reader.count('/cmd_vel') == 12
        meta = json.loads(reader.custom_data['liquid_controller.recording'])
        assert meta['perturbation'] is None and meta['seed'] == 1
    # an existing output and an unknown scene are refused with one line each and exit code 1
    assert main(['record', '--out', str(out), '--quiet']) == 1
    assert main(['record', '--out', str(tmp_path / 'x'), '--scene', 'atlantis', '--quiet']) == 1
    err = capsys.readouterr().err
    assert 'already exists' in err and 'atlantis' in err
    assert err.count('liquid-controller record: error: ') == 2 and len(err.splitlines()) == 2


def test_record_several_scenes_writes_a_bag_per_scene_with_its_own_seed(tmp_path, capsys):
    from liquid_controller.cli import main
    from liquid_controller.sim.scene import SCENES_DIR
    folder = tmp_path / 'scenes'
    folder.mkdir()
    for name in ('summer', 'night'):
        (folder / f'{name}.yaml').write_text((SCENES_DIR / f'{name}.yaml').read_text())
    out = tmp_path / 'bags'
    rc = main(['record', '--scenes', str(folder), 'fall', '--minutes', str(0.2 / 60), '--out', str(out),
               '--seed', '5', '--no-perturb', '--quiet', '--summary-json', str(tmp_path / 's.json')])
    assert rc == 0
    summaries = json.loads((tmp_path / 's.json').read_text())
    # folder entries sorted by file name, then the named scene; seeds count up from --seed
    assert [(s['scene'], s['seed']) for s in summaries] == [('night', 5), ('summer', 6), ('fall', 7)]
    assert sorted(p.name for p in out.iterdir()) == ['0_night', '1_summer', '2_fall']
    for bag, summary in zip(sorted(out.iterdir()), summaries):
        with BagReader(bag) as reader:
            meta = json.loads(reader.custom_data['liquid_controller.recording'])
            assert (meta['scene'], meta['seed']) == (summary['scene'], summary['seed'])
            assert reader.count('/camera/image_raw') == 6
    assert capsys.readouterr().out.count('wrote ') == 3
    # an empty folder, an unknown entry and a non-empty output are one-line errors naming the cause
    (tmp_path / 'empty').mkdir()
    assert main(['record', '--scenes', str(tmp_path / 'empty'), '--out', str(tmp_path / 'o1'), '--quiet']) == 1
    assert main(['record', '--scenes', 'atlantis', '--out', str(tmp_path / 'o2'), '--quiet']) == 1
    assert main(['record', '--scenes', 'summer', '--out', str(out), '--quiet']) == 1
    err = capsys.readouterr().err
    assert 'no scene *.yaml' in err and 'atlantis' in err and 'not empty' in err
    assert err.count('liquid-controller record: error: ') == 3


def test_held_out_benchmark_scenes_are_refused_before_anything_is_recorded(tmp_path, capsys):
    from pathlib import Path

    from liquid_controller.cli import main
    from liquid_controller.evaluation.benchmark import load_suite
    suite_scene = load_suite().scenes[0][0]
    # a copy outside the suite folder is still held out: its name carries a held-out generator seed
    copy = tmp_path / 'renamed_folder' / Path(suite_scene).name
    copy.parent.mkdir()
    copy.write_text(Path(suite_scene).read_text())
    for entry in (suite_scene, str(copy)):
        with pytest.raises(InputError, match='held-out benchmark'):
            record_expert(entry, minutes=0.01, out=tmp_path / 'one', progress=False)
    out = tmp_path / 'bags'
    assert main(['record', '--scenes', 'summer', str(copy), '--minutes', '0.01', '--out', str(out),
                 '--quiet']) == 1
    assert 'held-out benchmark' in capsys.readouterr().err
    assert not (tmp_path / 'one').exists() and not out.exists()   # summer, listed first, was not recorded
