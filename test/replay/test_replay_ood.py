"""The out-of-distribution monitor end to end: calibrated on simulator driving of the training scene
(a recording made here, not the replayed bag), then replaying the committed summer_lane bag as it is
(in distribution), with every camera frame upside down (a view the network never saw: its commands go
wrong) and with every frame colour-inverted. The flagship is trained with colour mixing and normalises
each image, so an inverted scene is not new to it: it drives as before and the monitor must stay quiet
(a monitor that fires on every colour change would cry wolf on every new road).
The flagship model is used: the scenario's own model is untrained, whose states mean nothing."""
import io
import shutil
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

import bag_edit
from liquid_controller.data.bag import BagReader
from liquid_controller.data.replay import replay_bag
from liquid_controller.errors import ModelFileError
from liquid_controller.runtime.model_file import load_model, read_card, set_ood_statistics

FLAGSHIP = Path(__file__).resolve().parents[2] / 'models' / 'cfc.json'


@pytest.fixture(scope='module')
def calibrated(tmp_path_factory):
    from liquid_controller.data.recording import record_expert
    from liquid_controller.train.ood_calibration import calibrate_model
    root = tmp_path_factory.mktemp('ood')
    record_expert('summer', minutes=40 / 60, out=root / 'bags' / 'summer', seed=11, progress=False)
    for suffix in ('.json', '.safetensors'):
        shutil.copy(FLAGSHIP.with_suffix(suffix), root / f'cfc{suffix}')
    stats = calibrate_model(root / 'cfc.json', [root / 'bags'], root / 'cache', progress=False)
    return root / 'cfc.json', stats


def _edited_bag(src, dst, change):
    """``src`` with ``change`` (an HxWx3 uint8 image -> image) applied to every camera frame."""
    def edit(i, topic, ns, msgtype, raw):
        if msgtype != 'sensor_msgs/msg/CompressedImage':
            return topic, ns, msgtype, raw
        msg = bag_edit.STORE.deserialize_cdr(raw, msgtype)
        image = np.asarray(Image.open(io.BytesIO(bytes(msg.data))).convert('RGB'))
        buf = io.BytesIO()
        Image.fromarray(np.ascontiguousarray(change(image))).save(buf, format='JPEG', quality=95)
        msg.data = np.frombuffer(buf.getvalue(), dtype=np.uint8)
        return topic, ns, msgtype, msg
    bag_edit.rewrite(src, dst, edit=edit)
    return dst


def test_calibration_is_stored_in_the_card_and_covered_by_its_hash(calibrated):
    path, stats = calibrated
    card = read_card(path)
    assert card.ood['source'] == 'neurons' and len(card.ood['mean']) == 19
    assert card.ood['frames'] == stats.frames >= 1000 and card.ood['threshold'] == pytest.approx(stats.threshold)
    data = path.read_text()
    edited = path.with_name('edited.json')
    edited.write_text(data.replace(f'"threshold": {card.ood["threshold"]!r}', '"threshold": 1e9'))
    shutil.copy(path.with_suffix('.safetensors'), edited.with_suffix('.safetensors'))
    with pytest.raises(ModelFileError, match='card_sha256'):
        read_card(edited)


def test_in_distribution_replay_stays_under_the_threshold_and_is_deterministic(calibrated, scenario, tmp_path):
    path, _ = calibrated
    model = load_model(path)
    first = replay_bag(scenario.bag, model, out=tmp_path / 'out', config=scenario.replay_config())
    again = replay_bag(scenario.bag, model, config=scenario.replay_config())
    assert np.array_equal(first.ood, again.ood)                        # deterministic
    summary = first.metrics()['ood']
    assert summary['available'] and summary['mean'] < 0.5
    assert summary['fraction_over'] <= 0.05, summary
    with BagReader(tmp_path / 'out') as reader:                        # written to the output bag
        assert reader.count('/replay/ood') == first.frames


def test_an_upside_down_camera_goes_over_the_threshold(calibrated, scenario, tmp_path):
    path, _ = calibrated
    model = load_model(path)
    bag = _edited_bag(scenario.bag, tmp_path / 'flipped', lambda image: image[::-1])
    flipped = replay_bag(bag, model, config=scenario.replay_config())
    summary = flipped.metrics()['ood']
    assert summary['fraction_over'] >= 0.9 and summary['mean'] > 1.2, summary
    # ... and rightly: the network's turn commands are no longer those it gives on the real view
    original = replay_bag(scenario.bag, model, config=scenario.replay_config())
    assert np.abs(flipped.nominal[:, 1] - original.nominal[:, 1]).mean() > 0.2


def test_a_colour_inverted_scene_the_network_still_drives_stays_quiet(calibrated, scenario, tmp_path):
    path, _ = calibrated
    model = load_model(path)
    bag = _edited_bag(scenario.bag, tmp_path / 'inverted', lambda image: 255 - image)
    inverted = replay_bag(bag, model, config=scenario.replay_config())
    original = replay_bag(scenario.bag, model, config=scenario.replay_config())
    assert np.abs(inverted.nominal[:, 1] - original.nominal[:, 1]).mean() < 0.1     # it drives as before
    assert inverted.metrics()['ood']['fraction_over'] <= 0.05, inverted.metrics()['ood']


def test_a_card_without_statistics_reports_the_score_unavailable(scenario, loaded_model, tmp_path):
    result = replay_bag(scenario.bag, loaded_model, out=tmp_path / 'out', config=scenario.replay_config())
    assert np.isnan(result.ood).all() and not result.metrics()['ood']['available']
    assert 'OOD score: unavailable' in result.format_metrics()
    with BagReader(tmp_path / 'out') as reader:
        assert '/replay/ood' not in reader.topics


def test_statistics_of_the_wrong_size_are_refused_naming_the_field(calibrated, tmp_path):
    path, stats = calibrated
    for suffix in ('.json', '.safetensors'):
        shutil.copy(path.with_suffix(suffix), tmp_path / f'cfc{suffix}')
    bad = stats.to_dict()
    bad['mean'], bad['precision'] = bad['mean'][:5], np.eye(5).tolist()
    with pytest.raises(ModelFileError, match=r'ood\.mean=5: the cfc core has 19 state values'):
        set_ood_statistics(tmp_path / 'cfc.json', bad)
    set_ood_statistics(tmp_path / 'cfc.json', None)                     # removing them is allowed
    assert read_card(tmp_path / 'cfc.json').ood == {}
