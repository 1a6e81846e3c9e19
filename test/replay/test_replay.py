"""Offline replay on the committed summer_lane scenario: golden outputs, determinism, output bag,
transports (Image / CompressedImage), storages (MCAP / sqlite3), configurable topic names, metrics.

The committed golden.npz is compared through thresholds.yaml's tolerances only (``assert_golden``):
float32 results move by an ulp on another CPU. Results of this run are compared bit for bit
(``assert_reference``: an edited bag's replay vs the committed bag's; the output bag vs the arrays of the
same replay)."""
import json

import numpy as np
import pytest

from liquid_controller import cli
from liquid_controller.data.bag import BagReader
from liquid_controller.data.replay import ReplayConfig, ReplayTopics, replay_bag
from liquid_controller.errors import InputError
from liquid_controller.messages import convert, diagnostics

import bag_edit  # noqa: E402  (test/replay is on sys.path: rootdir-relative test helpers)


def test_scenario_matches_golden_and_expectations(scenario):
    result = scenario.check()  # thresholds.yaml tolerances and behaviour limits
    assert result.frames == 60
    assert result.status[0] == 'reset' and set(result.status[1:]) == {'ok'}


def test_replay_is_deterministic(scenario, loaded_model, reference, assert_reference, assert_golden):
    again = replay_bag(scenario.bag, loaded_model, config=scenario.replay_config())
    assert_reference(again)  # same process, same kernels: equal to the last bit
    assert_golden(reference)


def test_cli_writes_output_bag_with_inputs_and_computed_topics(scenario, assert_golden, tmp_path, capsys):
    out, npz, js = tmp_path / 'out', tmp_path / 'g.npz', tmp_path / 'm.json'
    code = cli.main(['replay', str(scenario.bag), '--model', str(scenario.model), '--out', str(out),
                     '--quiet', '--golden-out', str(npz), '--metrics-json', str(js)])
    assert code == 0
    printed = capsys.readouterr().out
    assert 'MAE v' in printed and 'filter interventions' in printed and 'policy' in printed
    with np.load(npz) as data:
        saved = {k: data[k] for k in data.files}  # the arrays of this replay
    assert_golden(saved)
    metrics = json.loads(js.read_text())
    assert metrics['frames'] == 60 and metrics['compared'] == 60
    assert set(metrics['stages']) == {'decode', 'preprocess', 'policy', 'filter', 'write'}

    with BagReader(scenario.bag) as src, BagReader(out, decode='rclpy') as bag:
        topics = bag.topics
        for name, (msgtype, count) in src.topics.items():  # inputs copied unchanged
            assert topics[name] == (msgtype, count)
            assert bag.offered_qos(name)[0].reliability == src.offered_qos(name)[0].reliability
        assert topics['/replay/cmd_vel'] == ('geometry_msgs/msg/TwistStamped', 60)
        assert topics['/replay/nominal_cmd_vel'] == ('geometry_msgs/msg/TwistStamped', 60)
        assert topics['/replay/safety'] == ('diagnostic_msgs/msg/DiagnosticStatus', 60)
        assert topics['/replay/neurons'] == ('std_msgs/msg/Float32MultiArray', 60)
        cmds, stamps, safety, neurons = [], [], [], []
        for m in bag.messages(['/replay/cmd_vel', '/replay/safety', '/replay/neurons']):
            if m.topic == '/replay/cmd_vel':
                stamp, v, w = convert.decode_twist(m.message)
                cmds.append((v, w))
                stamps.append(stamp)
                assert m.message.header.frame_id == 'base_link'
            elif m.topic == '/replay/safety':
                safety.append(diagnostics.parse_key_values(m.message))
            else:
                neurons.append(diagnostics.parse_neurons_message(m.message))
    # the output bag holds exactly what this replay computed (--golden-out of the same run)
    np.testing.assert_array_equal(np.asarray(cmds), saved['command'])
    np.testing.assert_allclose(stamps, saved['stamps'], rtol=0, atol=1e-9)  # via int sec + nanosec
    assert [s['status'] for s in safety] == [str(s) for s in saved['status']]
    np.testing.assert_array_equal(np.asarray([s['command'] for s in safety]), saved['command'])
    assert all('certificate.status' in s for s in safety)
    assert list(neurons[0])[0].startswith('motor')
    np.testing.assert_array_equal(np.asarray([list(n.values()) for n in neurons], dtype=np.float32),
                                  saved['neurons'])


def test_independent_mcap_reader_reads_output(scenario, tmp_path, loaded_model):
    """The output bag is plain rosbag2 MCAP: the mcap-ros2 reader (not rosbags) decodes it."""
    from mcap.reader import make_reader
    from mcap_ros2.decoder import DecoderFactory
    out = tmp_path / 'out'
    result = replay_bag(scenario.bag, loaded_model, out=out,
                        config=ReplayConfig(topics=ReplayTopics(range=''), max_frames=10, copy_inputs=False))
    with open(next(out.glob('*.mcap')), 'rb') as f:
        v = [msg.twist.linear.x for _, _, _, msg in
             make_reader(f, decoder_factories=[DecoderFactory()]).iter_decoded_messages(topics=['/replay/cmd_vel'])]
    np.testing.assert_array_equal(v, result.command[:, 0])


@pytest.mark.parametrize('storage,transport', [('mcap', 'Image'), ('sqlite3', 'CompressedImage')])
def test_transports_and_storages_give_golden(scenario, loaded_model, assert_reference, tmp_path, storage,
                                             transport):
    bag = tmp_path / 'bag'
    bag_edit.rewrite(scenario.bag, bag, storage=storage,
                     edit=bag_edit.to_raw_image if transport == 'Image' else None)
    with BagReader(bag) as reader:
        assert reader.storage == storage
        camera = [t for t, (mt, _) in reader.topics.items() if mt.endswith(transport)]
        assert camera
    result = replay_bag(bag, loaded_model, config=scenario.replay_config())
    assert result.frames == 60
    assert_reference(result)  # same pixels, same model, same maths: bit-identical to the committed bag's


def test_topic_names_are_configurable(scenario, loaded_model, assert_reference, tmp_path):
    names = {'/camera/image_raw/compressed': '/robot1/front/jpeg', '/imu/data': '/robot1/imu',
             '/odom': '/robot1/wheel_odom', '/cmd_vel': '/teleop/cmd'}
    bag = tmp_path / 'renamed'
    bag_edit.rewrite(scenario.bag, bag, edit=lambda i, t, ns, mt, raw: (names.get(t, t), ns, mt, raw))
    topics = ReplayTopics(image='robot1/front/jpeg', imu='/robot1/imu', odom='robot1/wheel_odom',
                          range='', command='teleop/cmd')
    result = replay_bag(bag, loaded_model, config=ReplayConfig(topics=topics))
    assert result.frames == 60
    assert_reference(result)
    assert result.metrics()['compared'] == 60
    # default names do not exist in this bag: a clear error naming the topic
    with pytest.raises(Exception, match='camera/image_raw'):
        replay_bag(bag, loaded_model)


def test_metrics_against_recorded_command(scenario, loaded_model):
    result = replay_bag(scenario.bag, loaded_model, config=scenario.replay_config())
    recorded = {}
    with BagReader(scenario.bag) as bag:
        for m in bag.messages(['cmd_vel']):
            stamp, v, w = convert.decode_twist(m.message)
            recorded[round(stamp, 6)] = (v, w)
    expected = np.asarray([recorded[round(s, 6)] for s in result.stamps])  # same stamps in the sim bag
    np.testing.assert_array_equal(result.recorded, expected)
    m = result.metrics()
    assert m['mae_v'] == pytest.approx(np.abs(result.command[:, 0] - expected[:, 0]).mean(), rel=1e-12)
    assert m['mae_w'] == pytest.approx(np.abs(result.command[:, 1] - expected[:, 1]).mean(), rel=1e-12)
    assert m['corr_v'] == pytest.approx(np.corrcoef(result.command[:, 0], expected[:, 0])[0, 1], rel=1e-9)
    assert m['interventions'] == int(result.intervened.sum())
    assert m['realtime_factor'] > 0 and m['stages']['policy']['mean_ms'] > 0


def test_config_round_trip_and_validation():
    config = ReplayConfig(topics=ReplayTopics(image='cam', range=''), output_prefix='/r', storage='sqlite3',
                          max_frames=5)
    assert ReplayConfig.from_dict(config.to_dict()) == config
    assert ReplayConfig.from_dict(json.loads(json.dumps(config.to_dict()))) == config
    for kwargs, field in [({'storage': 'zip'}, 'storage'), ({'output_prefix': 'replay'}, 'output_prefix'),
                          ({'max_frames': -1}, 'max_frames'), ({'command_max_age': 0}, 'command_max_age')]:
        with pytest.raises(InputError, match=field):
            ReplayConfig(**kwargs)
    with pytest.raises(InputError, match='topics.image'):
        ReplayTopics(image='')
    with pytest.raises(InputError, match='unknown keys'):
        ReplayConfig.from_dict({'topic': {}})


def test_sqlite3_output_bag(scenario, loaded_model, tmp_path):
    out = tmp_path / 'out_db3'
    result = replay_bag(scenario.bag, loaded_model, out=out,
                        config=ReplayConfig(topics=ReplayTopics(range=''), storage='sqlite3', max_frames=5))
    with BagReader(out) as bag:
        assert bag.storage == 'sqlite3'
        assert bag.topics['/replay/cmd_vel'] == ('geometry_msgs/msg/TwistStamped', 5)
        v = [convert.decode_twist(m.message)[1] for m in bag.messages(['/replay/cmd_vel'])]
    np.testing.assert_array_equal(v, result.command[:, 0])
