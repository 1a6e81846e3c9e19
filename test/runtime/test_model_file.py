"""Model files: round trip (identical outputs), validation of card vs weights vs configuration,
range and unknown-key checks of every card field, and the card hash."""
import hashlib
import json

import numpy as np
import pytest
import torch
from safetensors.torch import save_file

from liquid_controller.errors import ModelFileError
from liquid_controller.paths import models_dir
from liquid_controller.policy import driving_policy
from liquid_controller.policy.driving_policy import DrivingPolicy, PolicyConfig
from liquid_controller.runtime import model_file
from liquid_controller.runtime.model_file import (ModelCard, best_available_model, card_digest,
                                                  create_random_model, list_models, load_model,
                                                  read_card, resolve_model_paths, save_model,
                                                  sha256_file, upgrade_model_file)


@pytest.fixture()
def model_path(tmp_path):
    create_random_model(tmp_path / 'rand', PolicyConfig(seed=3))
    return tmp_path / 'rand.json'


def _edit_card(path, change, rehash=True):
    """Apply ``change(card_dict)`` to the card at ``path``. ``rehash``: recompute card_sha256 as a
    writer would, so the check under test is not pre-empted by the hash check."""
    card = json.loads(path.read_text())
    change(card)
    if rehash:
        card['card_sha256'] = card_digest(card)
    path.write_text(json.dumps(card, indent=2))


def _set(path_in_card, value):
    """A ``change`` for _edit_card: set the value at a dotted path, or a tuple of keys (tensor names
    hold dots), creating the last key."""
    def change(card):
        keys = path_in_card.split('.') if isinstance(path_in_card, str) else path_in_card
        *parents, last = keys
        for key in parents:
            card = card[key]
        card[last] = value
    return change


@pytest.fixture()
def nothing_allocated(monkeypatch):
    """Fail the test if the loader reads tensor data or builds the network on the CPU: a card error
    must be found before either (the network may still be built on the meta device)."""
    def no_tensors(path):
        raise AssertionError('tensor data read before the card was checked')
    real_init = DrivingPolicy.__init__

    def meta_only(self, config):
        if torch.empty(0).device.type != 'meta':
            raise AssertionError('network built before the card was checked')
        real_init(self, config)
    monkeypatch.setattr(model_file, '_read_tensors', no_tensors)
    monkeypatch.setattr(driving_policy.DrivingPolicy, '__init__', meta_only)


def _run(policy, steps=5, seed=0):
    g = torch.Generator().manual_seed(seed)
    state = policy.initial_state(1)
    outs = []
    with torch.no_grad():
        for _ in range(steps):
            img = torch.rand(1, 3, 64, 128, generator=g)
            imu = torch.randn(1, 6, generator=g)
            out, state = policy.step(img, imu, torch.tensor([1 / 30]), state)
            outs.append(torch.cat([out.command, out.barrier_params, out.aux], dim=1))
    return torch.cat(outs), state


def test_round_trip_gives_identical_outputs(tmp_path):
    torch.manual_seed(0)
    policy = DrivingPolicy(PolicyConfig(seed=7))
    # perturb the weights so they differ from a freshly built policy with the same seed
    with torch.no_grad():
        for p in policy.parameters():
            p.add_(0.01 * torch.randn_like(p))
    card = save_model(policy, tmp_path / 'trained', metrics={'val_loss': 0.5})
    loaded = load_model(tmp_path / 'trained.json')
    a, sa = _run(policy.eval())
    b, sb = _run(loaded.policy)
    assert torch.equal(a, b) and torch.equal(sa, sb)
    assert loaded.card.to_dict() == card.to_dict()
    assert loaded.card.weights.sha256 == sha256_file(tmp_path / 'trained.safetensors')
    assert not loaded.card.untrained


def test_card_round_trip_and_untrained_label(model_path):
    card = read_card(model_path)
    assert card.untrained and 'UNTRAINED' in card.description
    assert ModelCard.from_dict(json.loads(json.dumps(card.to_dict()))) == card
    assert card.policy == PolicyConfig(seed=3).to_dict()
    assert card.wiring['neuron_groups']['motor'] == [0, 1]
    assert set(card.weights.tensors)  # every tensor is listed with its shape


def test_missing_files(tmp_path, model_path):
    with pytest.raises(ModelFileError, match='not found'):
        load_model(tmp_path / 'nope.json')
    (tmp_path / 'rand.safetensors').unlink()
    with pytest.raises(ModelFileError, match='weights file not found'):
        load_model(model_path)


def test_corrupt_weights_detected_by_sha(model_path):
    w = model_path.with_suffix('.safetensors')
    data = bytearray(w.read_bytes())
    data[-1] ^= 0xFF
    w.write_bytes(bytes(data))
    with pytest.raises(ModelFileError, match='sha256'):
        load_model(model_path)


def test_truncated_weights_with_matching_sha_rejected(model_path):
    w = model_path.with_suffix('.safetensors')
    w.write_bytes(w.read_bytes()[:100])
    _edit_card(model_path, _set('weights.sha256', sha256_file(w)))
    with pytest.raises(ModelFileError, match='safetensors'):
        load_model(model_path)


def test_corrupt_card(model_path):
    model_path.write_text('{not json')
    with pytest.raises(ModelFileError, match='not valid JSON'):
        load_model(model_path)
    model_path.write_text('[1, 2]')
    with pytest.raises(ModelFileError, match='JSON object'):
        load_model(model_path)


def test_card_policy_mismatch_with_weights(model_path, nothing_allocated):
    # the network rebuilt from the card no longer fits the tensors: found on the meta device
    _edit_card(model_path, _set('policy.units', 24))
    with pytest.raises(ModelFileError, match='do not fit'):
        load_model(model_path)
    # every field in range, but together a network of ~10^12 parameters: costs nothing to refuse
    huge = dict(image_height=1024, image_width=1024, conv_channels=[1024], conv_squeeze_channels=1024,
                feature_size=4096)

    def grow(card):
        card['policy'].update(huge)
        card['input'].update(image_height=1024, image_width=1024)
    _edit_card(model_path, grow)
    with pytest.raises(ModelFileError, match='do not fit'):
        load_model(model_path)


def test_tensor_list_mismatch(model_path):
    name = sorted(json.loads(model_path.read_text())['weights']['tensors'])[0]
    _edit_card(model_path, _set(('weights', 'tensors', name, 'shape'), [1, 2, 3]))
    with pytest.raises(ModelFileError, match=f'tensor {name!r} has shape'):
        load_model(model_path)
    # the card's tensor list is bounded before anything is read
    _edit_card(model_path, _set(('weights', 'tensors', name, 'shape'), [100000, 100000]))
    with pytest.raises(ModelFileError, match='more than 50000000 elements'):
        read_card(model_path)


def test_swapped_weights_same_names_different_values_rejected(tmp_path, model_path):
    # a valid safetensors file with other values but the card's old sha -> rejected
    w = model_path.with_suffix('.safetensors')
    from safetensors.torch import load_file
    tensors = {k: v + 1 for k, v in load_file(str(w)).items()}
    save_file(tensors, str(w))
    with pytest.raises(ModelFileError, match='sha256'):
        load_model(model_path)


def test_nan_weights_rejected(model_path):
    w = model_path.with_suffix('.safetensors')
    from safetensors.torch import load_file
    tensors = load_file(str(w))
    k = next(k for k, v in tensors.items() if v.is_floating_point())
    tensors[k] = tensors[k].clone()
    tensors[k].view(-1)[0] = float('nan')
    save_file(tensors, str(w))
    _edit_card(model_path, _set('weights.sha256', sha256_file(w)))
    with pytest.raises(ModelFileError, match='NaN'):
        load_model(model_path)


def test_configuration_mismatch(model_path):
    with pytest.raises(ModelFileError, match='64x128'):
        load_model(model_path, expected_image_size=(480, 640))
    with pytest.raises(ModelFileError, match='imu'):
        load_model(model_path, available_topics={'image'})
    assert load_model(model_path, expected_image_size=(64, 128),
                      available_topics={'image', 'imu', 'odom'}).image_size == (64, 128)


def test_format_version_and_path_resolution(tmp_path, model_path):
    card = json.loads(model_path.read_text())
    card['format_version'] = 99
    model_path.write_text(json.dumps(card))
    with pytest.raises(ModelFileError, match='format_version'):
        read_card(model_path)
    assert resolve_model_paths(tmp_path / 'rand.safetensors') == model_path
    assert resolve_model_paths(tmp_path / 'rand') == model_path
    assert resolve_model_paths('x', models_dir=tmp_path) == tmp_path / 'x.json'
    with pytest.raises(ModelFileError, match='empty'):
        resolve_model_paths('')


def test_best_available_prefers_trained(tmp_path):
    create_random_model(tmp_path / 'a_random')
    policy = DrivingPolicy(PolicyConfig(seed=1))
    save_model(policy, tmp_path / 'b_trained', metrics={'val_loss': 0.1})
    path, card = best_available_model(tmp_path)
    assert path.name == 'b_trained.json' and not card.untrained
    assert best_available_model(tmp_path / 'empty') is None
    assert np.isfinite(card.metrics['val_loss'])


# -------------------------------------------------------------------------------------------------
# Every numeric field is range-checked by name before anything is read or built
# -------------------------------------------------------------------------------------------------
@pytest.mark.parametrize('field,value,allowed', [
    ('policy.feature_size', 1_000_000, '[1, 4096]'),   # was: a 92 s, 1.6 GB build, then a shape error
    ('policy.ltc_unfolds', 1_000_000_000, '[1, 64]'),  # was: accepted; warm-up never ended
    ('policy.imu_size', 1_000_000_000, '[0, 64]'),     # was: MemoryError with an empty message
    ('policy.imu_size', 1e9, '[0, 64]'),               # JSON 1e9 is a float
    ('input.imu_size', 1_000_000_000, '[1, 64]'),
    ('policy.units', 100_000, '[4, 1000]'),
    ('policy.lstm_hidden', 10 ** 7, '[1, 1024]'),
    ('policy.image_height', 100_000, '[8, 1024]'),
    ('input.image_width', 0, '[8, 1024]'),
    ('policy.seed', 2 ** 40, '[0, 4294967295]'),
    ('policy.time_scale', 1e300, '(0, 10000]'),
    ('policy.v_max', 1e9, '[-50, 50]'),
    ('nominal_dt', 30.0, '(0, 1]'),
    ('nominal_dt', 0, '(0, 1]'),
    ('wiring.units', -1, '[1, 1000]'),
    ('output.w_max', float('inf'), '(0, 50]'),
    ('training.frames', -5, '[0, '),
])
def test_out_of_range_field_is_named_before_anything_is_built(model_path, nothing_allocated, field,
                                                               value, allowed):
    _edit_card(model_path, _set(field, value))
    with pytest.raises(ModelFileError) as info:
        load_model(model_path)
    message = str(info.value)
    assert f'{field}=' in message and allowed in message and str(model_path) in message


@pytest.mark.parametrize('field,value,expected', [
    ('input.imu_mean', [0.0] * 5, 'input.imu_mean=.*list of 6'),
    ('input.imu_std', [1.0, 1.0, 1.0, 1.0, 1.0, 0.0], r'input.imu_std\[5\]=0.0: .*\(0, 1e\+06\]'),
    ('input.imu_mean', [0.0, 0.0, 0.0, 0.0, 0.0, float('nan')], r'input.imu_mean\[5\]=nan'),
    ('policy.conv_channels', [24, 10 ** 6], r'policy.conv_channels=.*\[1, 1024\]'),
    ('policy.barrier_param_range', [0.1, 1e9], 'policy.barrier_param_range=.*<= 10000'),
    ('limits.barrier_param_range', [5.0, 1.0], 'limits.barrier_param_range='),
    ('wiring.neuron_groups', {'motor': [0, 10 ** 6]}, r'wiring.neuron_groups.motor\[1\]='),
    ('policy.image_channels', 1, "policy.image_channels=1: must be 3"),
    ('untrained', 'no', 'untrained=.*true or false'),
    ('weights.sha256', 'ab' * 31, 'weights.sha256='),
    ('weights.file', '../other.safetensors', 'weights.file='),
    ('topics.image', '', 'topics.image='),
])
def test_bad_values_and_shapes_are_named(model_path, nothing_allocated, field, value, expected):
    _edit_card(model_path, _set(field, value))
    with pytest.raises(ModelFileError, match=expected):
        load_model(model_path)


def test_ranges_apply_to_policy_config_itself():
    # the card reuses PolicyConfig's ranges, so code building a config directly gets them too
    with pytest.raises(driving_policy.InputError, match=r'PolicyConfig.feature_size=.*\[1, 4096\]'):
        PolicyConfig(feature_size=1_000_000)
    with pytest.raises(driving_policy.InputError, match=r'PolicyConfig.imu_size'):
        PolicyConfig(imu_size=10 ** 9)


# -------------------------------------------------------------------------------------------------
# Unknown keys are rejected everywhere, naming the key path and the closest allowed key
# -------------------------------------------------------------------------------------------------
@pytest.mark.parametrize('field,expected', [
    ('nominal_dtt', r'nominal_dtt: unknown key \(did you mean nominal_dt\?\)'),
    ('input.imu_meen', r'input.imu_meen: unknown key \(did you mean imu_mean\?\)'),
    ('weights.sha265', r'weights.sha265: unknown key \(did you mean sha256\?\)'),
    ('policy.feature_sise', r'policy.feature_sise: unknown key \(did you mean feature_size\?\)'),
    ('output.v_maxx', r'output.v_maxx: unknown key \(did you mean v_max\?\)'),
    ('limits.barrier_range', r'limits.barrier_range: unknown key'),
    ('wiring.unit', r'wiring.unit: unknown key \(did you mean units\?\)'),
    ('topics.imu_topic', r'topics.imu_topic: unknown key'),
    ('training.epochz', r'training.epochz: unknown key \(did you mean epochs\?\)'),
    (('weights', 'tensors', 'head.linear.weight', 'dtpye'),
     r"weights.tensors\['head.linear.weight'\].dtpye: unknown key \(did you mean dtype\?\)"),
])
def test_unknown_keys_are_rejected_with_a_suggestion(model_path, nothing_allocated, field, expected):
    _edit_card(model_path, _set(field, 0.05))
    with pytest.raises(ModelFileError, match=expected) as info:
        load_model(model_path)
    assert 'allowed keys' in str(info.value) and str(model_path) in str(info.value)


def test_missing_keys_and_duplicate_keys_are_rejected(model_path):
    _edit_card(model_path, lambda card: card['input'].pop('imu_std'))
    with pytest.raises(ModelFileError, match=r"input: missing key\(s\) \['imu_std'\]"):
        read_card(model_path)
    _edit_card(model_path, lambda card: card.pop('nominal_dt'))
    with pytest.raises(ModelFileError, match=r"top level: missing key\(s\) \['nominal_dt'\]"):
        read_card(model_path)
    model_path.write_text('{"name": "a", "name": "b"}')
    with pytest.raises(ModelFileError, match="'name' appears twice"):
        read_card(model_path)


def test_free_form_sections_stay_free_form(tmp_path):
    policy = DrivingPolicy(PolicyConfig(seed=2))
    save_model(policy, tmp_path / 'm', metrics={'anything': {'nested': [1, None, 'x']}},
               training={'steps': 3, 'data': {'whatever': 1}, 'config': {'train': {'lr': 0.1}},
                         'history_epochs': [{'epoch': 1}]})
    assert load_model(tmp_path / 'm.json').card.training['data'] == {'whatever': 1}
    with pytest.raises(ModelFileError, match='training.stepz: unknown key'):
        save_model(policy, tmp_path / 'bad', training={'stepz': 3})
    assert not (tmp_path / 'bad.json').exists() and not (tmp_path / 'bad.safetensors').exists()


# -------------------------------------------------------------------------------------------------
# card_sha256 covers the card's configuration (and, through weights.sha256, the weights)
# -------------------------------------------------------------------------------------------------
@pytest.mark.parametrize('field,value', [
    ('nominal_dt', 0.05),
    ('input.imu_mean', [0.0, 0.0, 0.0, 0.0, 0.0, 0.5]),
    ('input.imu_std', [1.0, 1.0, 1.0, 1.0, 1.0, 2.0]),
    ('policy.barrier_param_range', [0.5, 10.0]),
    ('policy.imu_clip', 5.0),
    ('topics.image', 'front/image_raw'),
    ('untrained', False),
    ('limits.v_max', 1.0),
    ('name', 'renamed'),
])
def test_edited_card_is_detected_by_the_card_hash(model_path, nothing_allocated, field, value):
    _edit_card(model_path, _set(field, value), rehash=False)
    with pytest.raises(ModelFileError, match='card_sha256 .* does not match its contents'):
        load_model(model_path)


def test_card_hash_covers_the_weights_hash_but_not_metrics(model_path):
    before = json.loads(model_path.read_text())
    # metrics are added after saving (evaluate --record-in-card): still loads
    _edit_card(model_path, _set('metrics', {'closed_loop_laps': 3.0}), rehash=False)
    assert load_model(model_path).card.metrics == {'closed_loop_laps': 3.0}
    # swapping in other (valid) weights together with their sha256 breaks the card hash
    _edit_card(model_path, _set('weights.sha256', hashlib.sha256(b'other').hexdigest()), rehash=False)
    with pytest.raises(ModelFileError, match='card_sha256'):
        read_card(model_path)
    assert card_digest(before) == before['card_sha256']
    assert card_digest({**before, 'metrics': {'x': 1}}) == before['card_sha256']


def test_format_1_card_is_refused_until_upgraded(model_path):
    weights = model_path.with_suffix('.safetensors').read_bytes()

    def to_format_1(card):
        card['format_version'] = 1
        del card['card_sha256']
    _edit_card(model_path, to_format_1, rehash=False)
    with pytest.raises(ModelFileError, match='format_version=1.*upgrade'):
        load_model(model_path)
    card = upgrade_model_file(model_path)
    assert card.format_version == model_file.FORMAT_VERSION
    assert load_model(model_path).card.card_sha256 == card.card_sha256
    assert model_path.with_suffix('.safetensors').read_bytes() == weights   # weights untouched
    assert upgrade_model_file(model_path) == card                          # already current: no-op
    # an inconsistent old model is not blessed with a hash
    _edit_card(model_path, to_format_1, rehash=False)
    _edit_card(model_path, _set('policy.units', 24), rehash=False)
    with pytest.raises(ModelFileError, match='do not fit'):
        upgrade_model_file(model_path)
    assert json.loads(model_path.read_text())['format_version'] == 1


def test_upgrade_command_line(model_path, capsys):
    _edit_card(model_path, lambda card: (card.update(format_version=1), card.pop('card_sha256')),
               rehash=False)
    assert model_file.main(['upgrade', str(model_path)]) == 0
    assert model_file.main(['check', str(model_path)]) == 0
    assert 'format_version 2' in capsys.readouterr().out
    model_path.write_text('{}')
    assert model_file.main(['check', str(model_path)]) == 1


def test_shipped_and_fixture_models_pass_every_check():
    # cards only (cheap); the replay and node tests load these models fully
    for folder in (models_dir(), models_dir() / 'baselines'):
        cards, errors = list_models(folder)
        assert cards and not errors, errors
    fixture = model_file.Path(__file__).resolve().parents[1] / 'bags' / 'summer_lane' / 'model.json'
    assert read_card(fixture).format_version == model_file.FORMAT_VERSION
