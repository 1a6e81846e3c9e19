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


def test_mirror_equals_the_expert_driving_the_mirrored_world(tmp_path):
    """The expert drives a left-right symmetric scene counter-clockwise and the same loop clockwise
    from the same start point: the clockwise run is the ccw run reflected across the start's normal.
    Mirroring the ccw recording must give the cw recording: commands, lane truth and IMU to float
    precision, camera frames up to rasterisation (well under one grey level on average)."""
    import yaml

    from liquid_controller.data.dataset import DatasetConfig, load_episodes, prepare
    from liquid_controller.data.recording import record_expert
    from liquid_controller.sim.scene import SCENES_DIR
    pytest.importorskip('rclpy.serialization')
    scene = yaml.safe_load((SCENES_DIR / 'summer.yaml').read_text())
    # symmetric under the reflection: no texture noise, light in the plane of symmetry, a solid
    # centre line (dashes start at the start point in either direction), noise-free sensors
    scene['appearance'].update(ground_noise=0.0, road_noise=0.0)
    scene['appearance']['light']['direction'] = [0.0, 0.2, -1.0]
    scene['track']['center_line'] = 'solid'
    scene['noise'] = {k: 0.0 for k in scene['noise']}
    arrays = {}
    for direction in ('ccw', 'cw'):
        scene.update(name=f'symmetric_{direction}')
        scene['track']['direction'] = direction
        path = tmp_path / f'{direction}.yaml'
        path.write_text(yaml.safe_dump(scene))
        record_expert(str(path), minutes=6 / 60, out=tmp_path / 'bags' / direction, seed=0,
                      perturbation=None, progress=False)
        prepared = prepare([tmp_path / 'bags' / direction], tmp_path / 'cache', DatasetConfig(), progress=False)
        arrays[direction] = load_episodes(prepared)[0].arrays
    ccw, cw = arrays['ccw'], arrays['cw']
    n = min(len(ccw['command']), len(cw['command']))
    assert n > 150
    batch = {'images': torch.from_numpy(ccw['images'][:n]).permute(0, 3, 1, 2)[None].float() / 255,
             'imu': torch.from_numpy(ccw['imu'][:n]).float()[None],      # raw features: mean 0, std 1
             'command': torch.from_numpy(ccw['command'][:n]).float()[None],
             'truth': torch.from_numpy(ccw['truth'][:n]).float()[None]}
    mirrored, _ = mirror_batch(batch, 1.0, np.zeros(6), np.ones(6))
    for key in ('imu', 'command', 'truth'):
        np.testing.assert_allclose(mirrored[key][0].numpy(), cw[key][:n], atol=1e-5, err_msg=key)
    assert np.abs(cw['command'][:n, 1]).max() > 0.3 and np.abs(cw['imu'][:n, 2]).max() > 0.3  # it turned
    target = torch.from_numpy(cw['images'][:n]).permute(0, 3, 1, 2).float() / 255
    grey = 255 * (mirrored['images'][0] - target).abs().mean().item()
    unmirrored = 255 * (batch['images'][0] - target).abs().mean().item()
    assert grey < 1.5 and grey < 0.1 * unmirrored, (grey, unmirrored)
