"""Model files: round trip (identical outputs), validation of card vs weights vs configuration."""
import json

import numpy as np
import pytest
import torch
from safetensors.torch import save_file

from liquid_controller.errors import ModelFileError
from liquid_controller.policy.driving_policy import DrivingPolicy, PolicyConfig
from liquid_controller.runtime.model_file import (ModelCard, best_available_model, create_random_model,
                                                  load_model, read_card, resolve_model_paths,
                                                  save_model, sha256_file)


@pytest.fixture()
def model_path(tmp_path):
    create_random_model(tmp_path / 'rand', PolicyConfig(seed=3))
    return tmp_path / 'rand.json'


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
    card = json.loads(model_path.read_text())
    card['weights']['sha256'] = sha256_file(w)
    model_path.write_text(json.dumps(card))
    with pytest.raises(ModelFileError, match='safetensors'):
        load_model(model_path)


def test_corrupt_card(model_path):
    model_path.write_text('{not json')
    with pytest.raises(ModelFileError, match='not valid JSON'):
        load_model(model_path)
    model_path.write_text('[1, 2]')
    with pytest.raises(ModelFileError, match='JSON object'):
        load_model(model_path)


def test_card_policy_mismatch_with_weights(model_path):
    card = json.loads(model_path.read_text())
    card['policy']['units'] = 24  # the network rebuilt from the card no longer fits the tensors
    model_path.write_text(json.dumps(card))
    with pytest.raises(ModelFileError, match='do not fit'):
        load_model(model_path)


def test_tensor_list_mismatch(model_path):
    card = json.loads(model_path.read_text())
    name = sorted(card['weights']['tensors'])[0]
    card['weights']['tensors'][name]['shape'] = [1, 2, 3]
    model_path.write_text(json.dumps(card))
    with pytest.raises(ModelFileError, match=f'tensor {name!r} has shape'):
        load_model(model_path)


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
    card = json.loads(model_path.read_text())
    card['weights']['sha256'] = sha256_file(w)
    model_path.write_text(json.dumps(card))
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
