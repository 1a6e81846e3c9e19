"""Distributed training: the real torchrun launcher, 2 gloo processes on this CPU, against one process
with the same global batch (equal weights), and a resume with another process count."""
import json
import os
import subprocess
import sys

import pytest
import torch
from safetensors.torch import load_file

from liquid_controller.train.config import TrainConfig

pytest.importorskip('rclpy.serialization')  # the bag factory encodes rclpy messages
from bag_factory import write_drive_bag  # noqa: E402

H, W = 16, 32
TOLERANCE = 1e-6  # the target: 2-process weights equal 1-process weights within 1e-6


def _config(path, core='cfc'):
    policy = {'core': core, 'image_height': H, 'image_width': W, 'imu_scale': [1.0] * 6,
              'conv_channels': [4, 8], 'conv_squeeze_channels': 2, 'feature_size': 8, 'lstm_hidden': 8,
              'seed': 3, 'units': 8}
    # batch 3 over 2 ranks: shards of 2 and 1 windows, and a last batch smaller than the world
    train = {'seq_len': 4, 'stride': 2, 'tbptt_steps': 2, 'batch_size': 3, 'epochs': 2, 'max_steps': 5,
             'val_fraction': 0.3, 'device': 'cpu', 'checkpoint_every': 1, 'seed': 5}
    TrainConfig.from_dict({'name': core, 'policy': policy, 'train': train,
                           'augment': {'mirror': 0.5},
                           'dataset': {'image_height': H, 'image_width': W}}).save(path)
    return path


@pytest.fixture(scope='module')
def setup(tmp_path_factory):
    root = tmp_path_factory.mktemp('ddp')
    for k in range(3):
        write_drive_bag(root / 'bags' / f'bag{k}', n=15, height=H, width=W, seed=k)
    return root, _config(root / 'config.yaml')


def _train(root, name, nproc, *extra):
    cli = [sys.executable, '-m', 'liquid_controller.cli', 'train']
    if nproc > 1:  # the real launcher, as a user runs it
        cli = [sys.executable, '-m', 'torch.distributed.run', '--standalone', f'--nproc-per-node={nproc}',
               '-m', 'liquid_controller.cli', 'train']
    cmd = cli + ['--config', str(root / 'config.yaml'), '--bags', str(root / 'bags'),
                 '--out', str(root / 'models' / name), '--run-dir', str(root / 'runs' / name.split('@')[0]),
                 '--cache', str(root / 'cache'), '--quiet', '--force', *extra]
    env = {**os.environ, 'OMP_NUM_THREADS': '1'}
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=300, env=env)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    return proc


def _weights(root, name):
    return load_file(str(root / 'models' / f'{name}.safetensors'))


def _assert_same_weights(a, b):
    assert a.keys() == b.keys()
    for key in a:
        torch.testing.assert_close(a[key], b[key], atol=TOLERANCE, rtol=0, msg=key)


def test_two_processes_equal_one_process_and_the_card_records_the_world(setup):
    root, _ = setup
    one = _train(root, 'one', 1)
    two = _train(root, 'two', 2)
    _assert_same_weights(_weights(root, 'one'), _weights(root, 'two'))
    # rank 0 alone reports and writes; the card states the world size and the global batch
    assert two.stdout.count('model: ') == 1 and one.stdout.count('model: ') == 1
    card = json.loads((root / 'models' / 'two.json').read_text())
    assert card['training']['world_size'] == 2 and card['training']['global_batch'] == 3
    assert card['training']['distributed_backend'] == 'gloo' and card['training']['steps'] == 5
    assert json.loads((root / 'models' / 'one.json').read_text())['training']['world_size'] == 1
    # the validation loss, computed in shares by the two ranks, is the one-process value
    h1 = card['training']['history_epochs']
    h2 = json.loads((root / 'models' / 'one.json').read_text())['training']['history_epochs']
    assert [e['val_loss'] for e in h1] == pytest.approx([e['val_loss'] for e in h2], rel=1e-6)


def test_a_run_resumes_with_another_process_count(setup):
    root, _ = setup
    if not (root / 'models' / 'one.safetensors').exists():
        _train(root, 'one', 1)
    _train(root, 'part', 2, '--max-steps', '3')                 # stops at step 3 on 2 processes
    _train(root, 'part@resumed', 1, '--resume', '--max-steps', '5')  # continues on 1 process
    _assert_same_weights(_weights(root, 'one'), _weights(root, 'part@resumed'))
