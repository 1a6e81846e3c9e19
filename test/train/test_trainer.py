"""Training end to end on tiny real bags: every model type through the BarrierNet layer, checkpoints that
resume exactly, and model files that reload with identical outputs."""
import json

import numpy as np
import pytest
import torch
import yaml

from liquid_controller.errors import InputError
from liquid_controller.train.config import TrainConfig

pytest.importorskip('rclpy.serialization')  # the bag factory encodes rclpy messages
from bag_factory import write_drive_bag  # noqa: E402

H, W = 16, 32


def tiny_config(core, **train):
    policy = {'core': core, 'image_height': H, 'image_width': W, 'imu_scale': [1.0] * 6,
              'conv_channels': [4, 8], 'conv_squeeze_channels': 2, 'feature_size': 8,
              'lstm_hidden': 8, 'seed': 3}
    if core in ('cfc', 'ltc'):
        policy['units'] = 8
    if core == 'ltc':
        policy['ltc_unfolds'] = 2
    base = {'seq_len': 4, 'stride': 4, 'tbptt_steps': 2, 'batch_size': 2, 'epochs': 3, 'max_steps': 2,
            'val_fraction': 0.3, 'device': 'cpu', 'checkpoint_every': 1, 'seed': 5}
    base.update(train)
    return TrainConfig.from_dict({'name': core, 'policy': policy, 'train': base,
                                  'dataset': {'image_height': H, 'image_width': W}})


@pytest.fixture(scope='module')
def bags(tmp_path_factory):
    root = tmp_path_factory.mktemp('bags')
    for k in range(2):
        write_drive_bag(root / f'bag{k}', n=14, height=H, width=W, seed=k)
    return root


def run_train(config, bags, tmp_path, name='m', **kw):
    from liquid_controller.train.trainer import train
    return train(config, [bags], tmp_path / 'models' / name, run_dir=tmp_path / 'runs' / name,
                 cache_dir=tmp_path / 'cache', progress=False, **kw)


def test_shipped_configs_round_trip_and_bad_values_are_named(tmp_path):
    from liquid_controller.paths import config_file
    for core in ('cfc', 'ltc', 'lstm', 'cnn'):
        cfg = TrainConfig.load(config_file(f'train_{core}.yaml'))
        assert cfg.policy_config().core == core
        assert TrainConfig.from_dict(cfg.to_dict()) == cfg
        cfg.save(tmp_path / 'c.yaml')
        assert TrainConfig.load(tmp_path / 'c.yaml') == cfg
    flagship = TrainConfig.load(config_file('train_cfc.yaml'))
    from liquid_controller.policy.driving_policy import DrivingPolicy
    policy = DrivingPolicy(flagship.policy_config())
    assert policy.liquid_neurons <= 19 and policy.num_parameters() <= 100_000
    good = tiny_config('cfc').to_dict()
    for section, key, value, name in (('train', 'lr', -1.0, 'train.lr'),
                                      ('train', 'tbptt_steps', 9, 'train.tbptt_steps'),
                                      ('train', 'device', 'tpu', 'train.device'),
                                      ('policy', 'core', 'gru', 'PolicyConfig.core'),
                                      ('safety', 'lane_half_width', -1.0, 'safety.lane_half_width'),
                                      ('dataset', 'max_command_age', 0.0, 'dataset.max_command_age'),
                                      ('augment', 'contrast', 3.0, 'augment.contrast')):
        bad = json.loads(json.dumps(good))
        bad[section][key] = value
        with pytest.raises(InputError, match=name.replace('.', r'\.')):
            TrainConfig.from_dict(bad)
    with pytest.raises(InputError, match='unknown sections'):
        TrainConfig.from_dict({**good, 'optimizer': {}})
    with pytest.raises(InputError, match='unknown keys'):
        TrainConfig.from_dict({**good, 'train': {'learning_rate': 1e-3}})
    (tmp_path / 'broken.yaml').write_text('train: [1, 2')
    with pytest.raises(InputError, match='invalid YAML'):
        TrainConfig.load(tmp_path / 'broken.yaml')


@pytest.mark.parametrize('core', ['cfc', 'ltc', 'lstm', 'cnn'])
def test_two_steps_end_to_end_and_model_reloads_identically(core, bags, tmp_path):
    from liquid_controller.runtime.model_file import load_model
    from liquid_controller.policy.driving_policy import DrivingPolicy
    cfg = tiny_config(core)
    initial = DrivingPolicy(cfg.policy_config()).state_dict()
    result = run_train(cfg, bags, tmp_path)
    assert result.steps == 2 and result.stopped == 'max_steps'
    assert len(result.history['steps']) == 2 and all(np.isfinite(l) for _, l in result.history['steps'])
    assert result.curves_path.read_bytes()[:8] == b'\x89PNG\r\n\x1a\n'
    card = json.loads(result.model_path.read_text())
    data = card['training']['data']
    assert data['split']['by'] == 'bag' and data['frames'] == 28 and data['train_frames'] == 14
    assert card['training']['steps'] == 2 and card['wiring']['core'] == core
    assert card['input']['imu_std'][5] >= 0.05 and card['topics']['image'] == 'camera/image_raw'
    loaded = load_model(result.model_path)
    trained = loaded.policy.state_dict()
    assert any(not torch.equal(initial[k], trained[k]) for k in initial)    # the weights did move
    # the saved model gives exactly the outputs of the trainer's final weights
    from safetensors.torch import load_file
    reference = DrivingPolicy(cfg.policy_config())
    reference.load_state_dict(load_file(str(result.run_dir / 'checkpoint.model.safetensors')))
    reference.eval()
    g = torch.Generator().manual_seed(0)
    images, imu = torch.rand(2, 5, 3, H, W, generator=g), torch.randn(2, 5, 6, generator=g)
    dt = torch.full((2, 5), 0.1)
    with torch.no_grad():
        a, sa = loaded.policy(images, imu, dt)
        b, sb = reference(images, imu, dt)
    for field in ('command', 'barrier_params', 'aux'):
        assert torch.equal(getattr(a, field), getattr(b, field))
    assert torch.equal(sa, sb)


def test_resume_continues_from_the_saved_step_exactly(bags, tmp_path):
    from safetensors.torch import load_file
    # batch 1: 4 windows -> 4 steps per epoch; stop inside epoch 1, resume across the epoch boundary
    straight = run_train(tiny_config('cfc', max_steps=5, batch_size=1), bags, tmp_path, 'straight')
    assert straight.steps == 5
    first = run_train(tiny_config('cfc', max_steps=2, batch_size=1), bags, tmp_path, 'resumed')
    state = json.loads((first.run_dir / 'checkpoint.json').read_text())
    assert state['step'] == 2 and state['batch_in_epoch'] == 2 and state['epoch'] == 0
    second = run_train(tiny_config('cfc', max_steps=5, batch_size=1), bags, tmp_path, 'resumed', resume=True)
    assert second.steps == 5
    # records: straight = epoch 1 complete (step 4) + partial epoch 2 (step 5); the resumed run also has
    # the partial record of its first part (step 2); validation never disturbs the training itself
    assert [(e['step'], e['partial']) for e in straight.history['epochs']] == [(4, False), (5, True)]
    assert [(e['step'], e['partial']) for e in second.history['epochs']] == [(2, True), (4, False), (5, True)]
    for a, b in zip(straight.history['epochs'], second.history['epochs'][1:]):
        assert a['val_loss'] == pytest.approx(b['val_loss'], rel=1e-5)
    assert [s for s, _ in second.history['steps']] == [1, 2, 3, 4, 5]
    assert [tuple(x) for x in second.history['steps'][:2]] == [tuple(x) for x in first.history['steps']]
    np.testing.assert_allclose([l for _, l in second.history['steps']],
                               [l for _, l in straight.history['steps']], rtol=1e-5)
    a = load_file(str(straight.run_dir / 'checkpoint.model.safetensors'))
    b = load_file(str(second.run_dir / 'checkpoint.model.safetensors'))
    for k in a:
        torch.testing.assert_close(a[k], b[k], rtol=1e-5, atol=1e-6)
    # other settings cannot resume this run
    with pytest.raises(InputError, match='resume'):
        run_train(tiny_config('cfc', max_steps=6, batch_size=1, lr=1e-4), bags, tmp_path, 'resumed',
                  resume=True)


def test_loss_is_taken_on_the_filtered_command():
    from liquid_controller.policy.driving_policy import PolicyOutput
    from liquid_controller.train.losses import barrier_layer, compute_loss
    cfg = tiny_config('cfc', command_weights=[1.0, 1.0], reference_weight=0.0, aux_weight=0.0)
    layer = barrier_layer(cfg.safety_config())
    # standing still, the reference asks for full speed: the acceleration row limits v to about
    # accel_max * control_period; the recorded command is exactly that reachable speed
    reach = cfg.safety_config().accel_max * cfg.safety_config().control_period
    ref = torch.tensor([[[2.0, 0.0]]], requires_grad=True)
    out = PolicyOutput(command=ref, barrier_params=torch.ones(1, 1, 2), aux=torch.zeros(1, 1, 2))
    batch = {'command': torch.tensor([[[reach, 0.0]]]), 'prev_command': torch.zeros(1, 1, 2),
             'truth': torch.zeros(1, 1, 2), 'truth_mask': torch.zeros(1, 1, dtype=torch.bool),
             'mask': torch.ones(1, 1, dtype=torch.bool)}
    scale = torch.tensor([2.0, 2.0])
    filtered = compute_loss(out, batch, cfg, scale, layer)
    plain = compute_loss(out, batch, cfg, scale, None)
    f, p = filtered.detached(), plain.detached()
    assert f['command'] < 1e-6 < p['command']                          # the filter closes the gap
    assert f['intervention'] == pytest.approx((2.0 - reach) / 2.0, rel=1e-4)
    assert p['command'] == pytest.approx(((2.0 - reach) / 2.0) ** 2, rel=1e-5)
    filtered.total.backward()
    assert ref.grad is not None and torch.isfinite(ref.grad).all()


def test_cli_train_writes_model_and_reports_errors(bags, tmp_path, capsys):
    from liquid_controller.cli import main
    cfg = tiny_config('cnn', max_steps=1)
    cfg.save(tmp_path / 'tiny.yaml')
    args = ['train', '--config', str(tmp_path / 'tiny.yaml'), '--bags', str(bags), '--out',
            str(tmp_path / 'models' / 'tiny'), '--run-dir', str(tmp_path / 'run'), '--cache',
            str(tmp_path / 'cache'), '--quiet']
    assert main(args) == 0
    assert 'steps: 1' in capsys.readouterr().out
    assert (tmp_path / 'models' / 'tiny.safetensors').is_file() and (tmp_path / 'run' / 'curves.png').is_file()
    assert yaml.safe_load((tmp_path / 'run' / 'config.yaml').read_text())['policy']['core'] == 'cnn'
    assert main(args[:4] + [str(tmp_path / 'nothing')] + args[5:]) == 1
    assert 'no such bag' in capsys.readouterr().err


def test_mirror_augmentation_changes_training_and_is_reproducible(bags, tmp_path):
    from liquid_controller.data.augment import AugmentConfig

    def config(mirror):
        c = tiny_config('cfc', max_steps=2, val_fraction=0.0)
        c.augment = AugmentConfig(probability=0.0, mirror=mirror)  # mirroring only
        return c
    plain = run_train(config(0.0), bags, tmp_path, 'plain')
    mirrored = run_train(config(1.0), bags, tmp_path, 'mirrored')
    again = run_train(config(1.0), bags, tmp_path, 'again')
    # the first step's loss is taken before any update: mirrored data gives another loss
    assert plain.history['steps'][0][1] != pytest.approx(mirrored.history['steps'][0][1], rel=1e-6)
    assert [l for _, l in mirrored.history['steps']] == [l for _, l in again.history['steps']]
