"""Left-right mirroring of training sequences (data/augment.py mirror_batch): the reflection of each
signal, exactness (mirroring twice is the identity), and the draw per sequence."""
import numpy as np
import pytest
import torch

from liquid_controller.data.augment import AugmentConfig, mirror_batch
from liquid_controller.errors import InputError

MEAN = np.array([0.01, -0.02, 0.3, 0.5, 0.2, 9.81])
STD = np.array([0.1, 0.1, 0.5, 0.4, 0.6, 0.3])


def _batch(b=4, t=5, seed=0):
    g = torch.Generator().manual_seed(seed)
    raw_imu = torch.randn(b, t, 6, generator=g, dtype=torch.float64) * torch.from_numpy(STD) \
        + torch.from_numpy(MEAN)
    return {
        'images': torch.rand(b, t, 3, 4, 6, generator=g),
        'imu': ((raw_imu - torch.from_numpy(MEAN)) / torch.from_numpy(STD)).float(),
        'command': torch.randn(b, t, 2, generator=g), 'prev_command': torch.randn(b, t, 2, generator=g),
        'truth': torch.randn(b, t, 2, generator=g), 'dt': torch.full((b, t), 0.033),
        'mask': torch.ones(b, t, dtype=torch.bool),
    }, raw_imu


def test_every_signal_reflects_as_y_to_minus_y():
    batch, raw = _batch()
    out, flipped = mirror_batch(batch, 1.0, MEAN, STD)
    assert flipped.all()
    torch.testing.assert_close(out['images'], batch['images'].flip(-1))       # left column <-> right
    assert torch.equal(out['images'][..., 0], batch['images'][..., -1])
    raw_out = out['imu'].double() * torch.from_numpy(STD) + torch.from_numpy(MEAN)
    # roll and yaw rates and the lateral acceleration change sign; pitch rate, ax, az do not
    torch.testing.assert_close(raw_out, raw * torch.tensor([-1, 1, -1, 1, -1, 1.0], dtype=torch.float64),
                               atol=1e-5, rtol=1e-5)
    for key in ('command', 'prev_command'):
        torch.testing.assert_close(out[key], batch[key] * torch.tensor([1.0, -1.0]))  # v kept, w negated
    torch.testing.assert_close(out['truth'], -batch['truth'])                 # offset and heading error
    assert out['dt'] is batch['dt'] and out['mask'] is batch['mask']


def test_mirroring_twice_is_the_identity_and_input_is_not_modified():
    batch, _ = _batch()
    copy = {k: v.clone() for k, v in batch.items()}
    once, _ = mirror_batch(batch, 1.0, MEAN, STD)
    twice, _ = mirror_batch(once, 1.0, MEAN, STD)
    for key in batch:
        torch.testing.assert_close(twice[key], batch[key], atol=2e-6, rtol=1e-6)
        assert torch.equal(batch[key], copy[key])


def test_no_sample_rows_stay_zero():
    batch, _ = _batch()
    batch['imu'][:, 0] = 0.0  # before the first IMU sample the runtime feeds zeros
    out, _ = mirror_batch(batch, 1.0, MEAN, STD)
    assert torch.equal(out['imu'][:, 0], torch.zeros_like(out['imu'][:, 0]))
    assert not torch.equal(out['imu'][:, 1], batch['imu'][:, 1])


def test_draw_is_per_sequence_seeded_and_follows_the_probability():
    batch, _ = _batch(b=400)
    out, flipped = mirror_batch(batch, 0.5, MEAN, STD, torch.Generator().manual_seed(3))
    _, again = mirror_batch(batch, 0.5, MEAN, STD, torch.Generator().manual_seed(3))
    assert torch.equal(flipped, again)
    assert 150 < int(flipped.sum()) < 250
    assert torch.equal(out['command'][~flipped], batch['command'][~flipped])
    assert torch.equal(out['command'][flipped, :, 1], -batch['command'][flipped, :, 1])
    unchanged, none = mirror_batch(batch, 0.0, MEAN, STD)
    assert not none.any() and all(unchanged[k] is batch[k] for k in batch)


def test_bad_arguments_are_named():
    batch, _ = _batch()
    with pytest.raises(InputError, match='mirror probability'):
        mirror_batch(batch, 1.5, MEAN, STD)
    with pytest.raises(InputError, match='images'):
        mirror_batch({**batch, 'images': batch['images'][0]}, 0.5, MEAN, STD)
    with pytest.raises(InputError, match='augment.mirror'):
        AugmentConfig(mirror=-0.1)
