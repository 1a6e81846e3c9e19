"""`liquid-controller train` through cli.main: no silent overwrite of a model (``--force``), weights and
card with the same permissions, the data split reported, ``--resume`` without a checkpoint refused."""
import stat
import sys
from pathlib import Path

import pytest

pytest.importorskip('rclpy.serialization')  # the bag factory encodes rclpy messages
sys.path.insert(0, str(Path(__file__).resolve().parents[1] / 'data'))
from bag_factory import write_drive_bag  # noqa: E402

from liquid_controller.cli import main  # noqa: E402
from liquid_controller.train.config import TrainConfig  # noqa: E402

H, W = 16, 32


@pytest.fixture(scope='module')
def bags(tmp_path_factory):
    root = tmp_path_factory.mktemp('bags')
    for k in range(2):
        write_drive_bag(root / f'bag{k}', n=14, height=H, width=W, seed=k)
    return root


def _config(tmp_path):
    policy = {'core': 'cnn', 'image_height': H, 'image_width': W, 'imu_scale': [1.0] * 6,
              'conv_channels': [4, 8], 'conv_squeeze_channels': 2, 'feature_size': 8, 'seed': 3}
    train = {'seq_len': 4, 'stride': 4, 'tbptt_steps': 2, 'batch_size': 2, 'epochs': 1, 'max_steps': 1,
             'val_fraction': 0.2, 'device': 'cpu', 'checkpoint_every': 1, 'seed': 5}
    cfg = TrainConfig.from_dict({'name': 'tiny', 'policy': policy, 'train': train,
                                 'dataset': {'image_height': H, 'image_width': W}})
    cfg.save(tmp_path / 'tiny.yaml')
    return tmp_path / 'tiny.yaml'


def _args(tmp_path, bags, *extra, out='models/tiny'):
    return ['train', '--config', str(_config(tmp_path)), '--bags', str(bags), '--out', str(tmp_path / out),
            '--run-dir', str(tmp_path / 'run'), '--cache', str(tmp_path / 'cache'), '--quiet', *extra]


def test_train_refuses_to_overwrite_a_model_without_force(bags, tmp_path, capsys):
    from liquid_controller.runtime.model_file import create_random_model
    create_random_model(tmp_path / 'models' / 'tiny')
    before = (tmp_path / 'models' / 'tiny.safetensors').read_bytes()
    assert main(_args(tmp_path, bags)) == 1
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and 'Traceback' not in err
    assert str(tmp_path / 'models' / 'tiny.json') in err and '--force' in err
    assert (tmp_path / 'models' / 'tiny.safetensors').read_bytes() == before     # untouched
    assert not (tmp_path / 'run').exists()                                      # checked before training
    # the weights alone count too
    (tmp_path / 'models' / 'tiny.json').unlink()
    assert main(_args(tmp_path, bags)) == 1
    assert 'tiny.safetensors already exists' in capsys.readouterr().err
    # --force overwrites
    assert main(_args(tmp_path, bags, '--force')) == 0
    assert (tmp_path / 'models' / 'tiny.safetensors').read_bytes() != before


def test_train_writes_weights_and_card_with_the_same_permissions_and_reports_the_split(bags, tmp_path,
                                                                                        capsys):
    assert main(_args(tmp_path, bags)) == 0
    out, err = capsys.readouterr()
    card, weights = tmp_path / 'models' / 'tiny.json', tmp_path / 'models' / 'tiny.safetensors'
    umask = __import__('os').umask(0)
    __import__('os').umask(umask)
    assert stat.S_IMODE(weights.stat().st_mode) == stat.S_IMODE(card.stat().st_mode) == 0o666 & ~umask
    # 2 bags of 14 frames, val_fraction 0.2: one whole bag (50%) goes to validation, and it says so
    split = [line for line in out.splitlines() if line.startswith('data split')]
    assert len(split) == 1, out
    assert 'train 1 bag(s)' in split[0] and 'validation 1 bag(s)' in split[0] and '14 frames' in split[0]
    assert '50% of frames' in split[0] and 'val_fraction 0.2' in split[0]
    assert 'warning: validation holds 50% of the frames, not the 20%' in err


def test_train_resume_without_a_checkpoint_is_an_error(bags, tmp_path, capsys):
    assert main(_args(tmp_path, bags, '--resume')) == 1
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and '--resume' in err and 'no checkpoint' in err
    assert str(tmp_path / 'run') in err
    assert not (tmp_path / 'models' / 'tiny.json').exists()
