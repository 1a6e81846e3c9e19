"""Dataset from real rosbag2 bags (written here with the package's BagWriter): alignment of frames,
IMU windows, commands and ground truth; real dt; splits; the prepared cache and its invalidation;
sequence windows; augmentation."""
import json
import shutil

import numpy as np
import pytest
import torch

from liquid_controller.data import align, dataset
from liquid_controller.data.augment import AugmentConfig, augment_images
from liquid_controller.data.dataset import (DatasetConfig, SequenceDataset, load_episodes, prepare,
                                            split_episodes)
from liquid_controller.errors import BagError, InputError

pytest.importorskip('rclpy.serialization')  # the factory encodes rclpy messages
from bag_factory import command_for, truth_for, write_drive_bag  # noqa: E402

TINY = dict(image_height=8, image_width=16)


def expected_gyro_z(info, frame_ids, t, period, max_window=0.2):
    """Mean gyro z of the IMU samples in (max(t[i-1], t[i] - max_window), t[i]] (the controller node's
    window rule; first frame of a segment: (t[0] - max_window, t[0]], as after a reset)."""
    out = []
    for j, i in enumerate(frame_ids):
        lo = max(t[frame_ids[j - 1]], t[i] - max_window) if j > 0 else t[i] - max_window
        sel = (info['imu_times'] > lo) & (info['imu_times'] <= t[i])
        out.append(info['imu_gyro_z'][sel].mean())
    return np.array(out)


def test_mcap_bag_aligns_frames_commands_imu_truth_and_dt(tmp_path):
    info = write_drive_bag(tmp_path / 'bag', n=20, gap_after=11)
    cfg = DatasetConfig(**TINY)
    prepared = prepare([tmp_path / 'bag'], tmp_path / 'cache', cfg, progress=False)
    (entry,) = prepared.entries
    assert entry['report']['frames_in'] == 20 and entry['frames'] == 20
    assert entry['segments'] == 2 and entry['storage'] == 'mcap'
    assert entry['topics']['camera']['name'] == '/camera/image_raw'
    eps = load_episodes(prepared)
    assert [len(e) for e in eps] == [12, 8]           # the 1 s gap after frame 11 starts a new segment
    t = info['times']
    period = float(np.median(np.diff(t)))                  # median of all frame intervals
    assert entry['report']['frame_period'] == pytest.approx(period)
    for ep, ids in zip(eps, (list(range(12)), list(range(12, 20)))):
        a = ep.arrays
        np.testing.assert_allclose(a['stamps'], t[ids])
        # real dt between header stamps; the first frame of a segment gets the median period
        np.testing.assert_allclose(a['dt'], np.diff(t[ids], prepend=t[ids[0]] - period), rtol=1e-6)
        np.testing.assert_allclose(a['command'], [command_for(i) for i in ids], rtol=1e-6)
        np.testing.assert_allclose(a['prev_command'][1:], [command_for(i) for i in ids[:-1]], rtol=1e-6)
        np.testing.assert_allclose(a['truth'], [truth_for(i) for i in ids], rtol=1e-6, atol=1e-7)
        assert a['truth_mask'].all()
        np.testing.assert_array_equal(a['images'], np.stack([info['images'][i] for i in ids]))
        np.testing.assert_allclose(a['imu'][:, 2], expected_gyro_z(info, ids, t, period), rtol=1e-6)
        np.testing.assert_allclose(a['imu'][:, 3:], np.tile([0.1, 0.0, 9.81], (len(ids), 1)), rtol=1e-6)
        assert (a['imu_count'] >= 3).all()
    # before frame 0 there is no command; one period before frame 12 the last command is ~1 s old
    np.testing.assert_array_equal(eps[0].arrays['prev_command'][0], [0.0, 0.0])
    np.testing.assert_array_equal(eps[1].arrays['prev_command'][0], [0.0, 0.0])


def test_sqlite_compressed_unstamped_twist_resized_without_truth(tmp_path):
    info = write_drive_bag(tmp_path / 'bag', n=10, storage='sqlite3', compressed=True, stamped=False,
                           truth=False, height=16, width=32, topics=('/front/image/compressed', '/imu',
                                                                     '/robot/cmd_vel', '/x'))
    cfg = DatasetConfig(camera_topic='front/image/compressed', imu_topic='imu', command_topic='robot/cmd_vel',
                        **TINY)
    prepared = prepare([tmp_path], tmp_path / 'cache', cfg, progress=False)  # a folder holding a bag
    (ep,) = load_episodes(prepared)
    assert prepared.entries[0]['storage'] == 'sqlite3'
    assert len(ep) == 10
    # unstamped Twist is timed by its bag time, 30 ms before each frame: labels pair one-to-one
    np.testing.assert_allclose(ep.arrays['command'], [command_for(i) for i in range(10)], rtol=1e-6)
    assert not ep.arrays['truth_mask'].any()
    from liquid_controller.runtime.preprocess import image_to_tensor
    want = image_to_tensor(info['images'][3], 8, 16, resize=True)[0].permute(1, 2, 0).numpy() * 255
    np.testing.assert_allclose(ep.arrays['images'][3].astype(float), want, atol=0.51)


def test_bag_without_imu_topic_gives_zero_features(tmp_path):
    write_drive_bag(tmp_path / 'bag', n=8, truth=False)
    eps = load_episodes(prepare([tmp_path / 'bag'], tmp_path / 'cache', DatasetConfig(imu_topic='', **TINY),
                                progress=False))
    assert eps[0].arrays['imu_count'].tolist() == [0] * 8 and np.isnan(eps[0].arrays['imu']).all()
    mean, std = dataset.imu_statistics(eps)
    item = SequenceDataset(eps, seq_len=8, imu_mean=mean, imu_std=std)[0]
    assert torch.equal(item['imu'], torch.zeros(8, 6))


def test_log_time_source_fixes_a_driver_with_a_wrong_clock(tmp_path):
    info = write_drive_bag(tmp_path / 'bag', n=10, truth=False, imu_clock_offset=100.0)
    header = load_episodes(prepare([tmp_path / 'bag'], tmp_path / 'c1', DatasetConfig(**TINY), progress=False))
    assert header[0].arrays['imu_count'].sum() == 0           # header stamps 100 s off: windows empty
    log = load_episodes(prepare([tmp_path / 'bag'], tmp_path / 'c2', DatasetConfig(time_source='log', **TINY),
                                progress=False))
    a = log[0].arrays
    # bag times are the header stamps + a few microseconds: the windows match the header-time ones
    assert len(log[0]) == 10 and (a['imu_count'] >= 3).all()
    t = a['stamps']
    period = float(np.median(np.diff(t)))
    np.testing.assert_allclose(a['imu'][:, 2], expected_gyro_z(info, list(range(10)), info['times'], period),
                               rtol=1e-6)
    np.testing.assert_allclose(a['command'], [command_for(i) for i in range(10)], rtol=1e-6)


def test_stale_commands_drop_frames(tmp_path):
    write_drive_bag(tmp_path / 'bag', n=20, commands_until=9, truth=False)
    prepared = prepare([tmp_path / 'bag'], tmp_path / 'cache', DatasetConfig(max_command_age=0.25, **TINY),
                       progress=False)
    report = prepared.entries[0]['report']
    (ep,) = load_episodes(prepared)
    # frames 10.. hold command 9 (stamped 30 ms before frame 9); with ~0.1 s frames the age passes
    # 0.25 s after two frames: 10 and 11 are kept, the rest are stale
    assert len(ep) == report['frames_kept'] == 20 - report['dropped_stale_command']
    assert 11 <= len(ep) <= 13
    np.testing.assert_allclose(ep.arrays['command'][10:], np.tile(command_for(9), (len(ep) - 10, 1)), rtol=1e-6)


def test_interpolated_commands_and_clock_reset_epochs():
    # Two episodes in one stream: header stamps restart at 0 (sim reset), bag time keeps going.
    t = np.array([0.0, 0.1, 0.2, 0.3, 0.0, 0.1, 0.2])
    log = (np.arange(7) * 0.1 * 1e9).astype(np.int64) + 1000
    frames = align.TimedArray(t, log, np.zeros((7, 2, 2, 3), np.uint8))
    cmd_t = np.array([0.0, 0.2, 0.0, 0.2])
    cmd_log = np.array([log[0] - 10, log[2] - 10, log[4] - 10, log[6] - 10])
    cmds = align.TimedArray(cmd_t, cmd_log, np.array([[0.0, 0.0], [1.0, 2.0], [5.0, 0.0], [7.0, 0.0]]))
    imu = align.TimedArray(np.array([0.05, 0.05]), np.array([log[1], log[5]]), np.ones((2, 6)))
    streams = align.Streams(frames=frames, imu=imu, commands=cmds)
    feature = lambda g, a: np.concatenate([g.mean(0), a.mean(0)]) if len(g) else np.full(6, np.nan)  # noqa
    segs, report = align.align_streams(streams, feature, command_alignment='interpolate')
    assert report.epochs == 2 and [len(s) for s in segs] == [4, 3]
    np.testing.assert_allclose(segs[0].command[:, 0], [0.0, 0.5, 1.0, 1.0])   # held after the last one
    np.testing.assert_allclose(segs[1].command[:, 0], [5.0, 6.0, 7.0])        # never mixed with epoch 0
    hold, _ = align.align_streams(streams, feature, command_alignment='hold')
    np.testing.assert_allclose(hold[0].command[:, 0], [0.0, 0.0, 1.0, 1.0])
    assert segs[0].imu_count.tolist() == [0, 1, 0, 0] and segs[1].imu_count.tolist() == [0, 1, 0]


def test_cache_reused_until_bag_or_settings_change(tmp_path):
    bag, cache_dir = tmp_path / 'bag', tmp_path / 'cache'
    write_drive_bag(bag, n=12)
    cfg = DatasetConfig(**TINY)
    first = prepare([bag], cache_dir, cfg, progress=False)
    assert (first.built, first.reused) == (1, 0)
    again = prepare([bag], cache_dir, cfg, progress=False)
    assert (again.built, again.reused) == (1 - 1, 1) and again.entries[0]['key'] == first.entries[0]['key']
    # re-recording the bag at the same path changes its metadata -> rebuilt, old file removed
    shutil.rmtree(bag)
    write_drive_bag(bag, n=15)
    changed = prepare([bag], cache_dir, cfg, progress=False)
    assert changed.built == 1 and changed.entries[0]['frames'] == 15
    assert not (cache_dir / first.entries[0]['file']).exists()
    # other settings -> another key
    other = prepare([bag], cache_dir, DatasetConfig(command_alignment='interpolate', **TINY), progress=False)
    assert other.built == 1 and other.entries[0]['key'] != changed.entries[0]['key']
    index = json.loads((cache_dir / 'index.json').read_text())
    assert list(index['entries']) == [str(bag.resolve())]
    assert sorted(p.name for p in cache_dir.glob('*.npz')) == [other.entries[0]['file']]


def test_split_by_bag_episode_and_time(tmp_path):
    for k in range(3):
        write_drive_bag(tmp_path / f'bag{k}', n=10, seed=k)
    eps = load_episodes(prepare([tmp_path], tmp_path / 'cache', DatasetConfig(**TINY), progress=False))
    train, val, how = split_episodes(eps, 0.34, seed=1)
    assert how['by'] == 'bag' and len(val) == 1 and len(train) == 2
    assert {e.bag for e in train}.isdisjoint({e.bag for e in val})
    assert split_episodes(eps, 0.34, seed=1)[2] == how                 # seeded: reproducible
    one = [e for e in eps if e.bag == eps[0].bag]
    two = [dataset.Episode('b', 0, {k: v[:5] for k, v in one[0].arrays.items()}),
           dataset.Episode('b', 1, {k: v[5:] for k, v in one[0].arrays.items()})]
    train, val, how = split_episodes(two, 0.5)
    assert how['by'] == 'episode' and len(train) == len(val) == 1
    train, val, how = split_episodes(one, 0.3)
    assert how == {'by': 'time', 'cut_frame': 7, 'train': 1, 'val': 1}
    assert len(train[0]) == 7 and len(val[0]) == 3
    np.testing.assert_array_equal(val[0].arrays['stamps'], one[0].arrays['stamps'][7:])
    with pytest.raises(InputError, match='val_fraction'):
        split_episodes(one, 1.0)


def test_sequence_windows_padding_normalisation_and_dt_clip(tmp_path):
    write_drive_bag(tmp_path / 'bag', n=20, gap_after=11)
    eps = load_episodes(prepare([tmp_path / 'bag'], tmp_path / 'cache', DatasetConfig(**TINY), progress=False))
    ds = SequenceDataset(eps, seq_len=5, stride=5, imu_mean=np.zeros(6), imu_std=np.full(6, 2.0), max_dt=0.1)
    # 12 frames -> starts 0, 5, 7 (tail); 8 frames -> 0, 3 (tail)
    assert ds.windows == [(0, 0), (0, 5), (0, 7), (1, 0), (1, 3)]
    item = ds[1]
    a = eps[0].arrays
    np.testing.assert_allclose(item['imu'].numpy(), a['imu'][5:10] / 2.0, rtol=1e-6)
    np.testing.assert_allclose(item['dt'].numpy(), np.minimum(a['dt'][5:10], 0.1), rtol=1e-6)
    assert item['images'].dtype == torch.uint8 and item['images'].shape == (5, 8, 16, 3)
    assert item['mask'].all()
    long = SequenceDataset(eps, seq_len=10)
    padded = long[len(long) - 1]                                      # the 8-frame segment
    assert padded['mask'].tolist() == [True] * 8 + [False] * 2
    assert padded['command'][8:].abs().sum() == 0
    batch = torch.utils.data.default_collate([long[0], long[1]])
    assert batch['images'].shape == (2, 10, 8, 16, 3)


def test_bad_bags_and_settings_raise_named_errors(tmp_path):
    write_drive_bag(tmp_path / 'bag', n=5, truth=False)
    with pytest.raises(BagError, match='cmd_vel_x'):
        prepare([tmp_path / 'bag'], tmp_path / 'c', DatasetConfig(command_topic='cmd_vel_x', **TINY), progress=False)
    with pytest.raises(InputError, match='dataset.command_topic'):
        prepare([tmp_path / 'bag'], tmp_path / 'c', DatasetConfig(command_topic='imu/data', **TINY), progress=False)
    (tmp_path / 'empty').mkdir()
    with pytest.raises(BagError, match='no rosbag2 bags'):
        prepare([tmp_path / 'empty'], tmp_path / 'c', DatasetConfig(**TINY), progress=False)
    with pytest.raises(BagError, match='no such bag'):
        prepare([tmp_path / 'missing'], tmp_path / 'c', DatasetConfig(**TINY), progress=False)
    with pytest.raises(InputError, match='dataset.time_source'):
        DatasetConfig(time_source='wall')
    with pytest.raises(InputError, match='dataset.image_height'):
        DatasetConfig(image_height=0)
    with pytest.raises(InputError, match='unknown keys'):
        DatasetConfig.from_dict({'camera': 'x'})
    cfg = DatasetConfig(camera_topic='/a/b', max_frame_gap=2)
    assert DatasetConfig.from_dict(cfg.to_dict()) == cfg


def test_augmentation_is_bounded_seeded_and_switchable():
    images = torch.rand(4, 3, 3, 8, 16)
    g = lambda: torch.Generator().manual_seed(0)  # noqa: E731
    cfg = AugmentConfig(probability=1.0)
    a, b = augment_images(images, cfg, g()), augment_images(images, cfg, g())
    assert torch.equal(a, b) and a.min() >= 0 and a.max() <= 1
    assert (a - images).abs().mean() > 0.01
    off = augment_images(images, AugmentConfig(probability=0.0), g())
    assert torch.allclose(off, images)
    # noise only: the added noise has std <= noise_std and the mean is unchanged
    mid = torch.full((64, 2, 3, 16, 16), 0.5)
    noisy = augment_images(mid, AugmentConfig(brightness=0, contrast=0, colour=0, noise_std=0.1,
                                              probability=1.0), g())
    assert 0.02 < (noisy - mid).std() < 0.1 and abs(float((noisy - mid).mean())) < 0.005
    # brightness is held over the frames of a sequence
    bright = augment_images(mid, AugmentConfig(brightness=0.3, contrast=0, colour=0, noise_std=0,
                                               probability=1.0), g())
    assert torch.allclose(bright[:, 0], bright[:, 1])
    with pytest.raises(InputError, match='augment.noise_std'):
        AugmentConfig(noise_std=2.0)


def test_channel_mix_survives_per_image_normalisation_where_colour_gain_does_not():
    """Per-channel standardisation undoes gains (so colour/brightness augmentation is invisible to a
    'per_image' policy); mixing channels changes what the network sees, stays in [0, 1] and is held
    over a sequence."""
    from liquid_controller.policy.perception import normalize_images
    g = lambda: torch.Generator().manual_seed(1)  # noqa: E731
    images = torch.rand(6, 2, 3, 8, 16) * 0.4 + 0.1   # no clipping at 1 even with a gain of 1.5

    def seen(x):                                       # what the 'per_image' policy sees
        return normalize_images(x.flatten(0, 1), 'per_image')

    only = dict(brightness=0, contrast=0, noise_std=0, probability=1.0)
    gain = augment_images(images, AugmentConfig(colour=0.5, **only), g())
    assert (gain - images).abs().mean() > 0.02                      # the pixels did change ...
    # ... but the policy's input barely does (only through the std floor of the normalisation)
    assert (seen(gain) - seen(images)).abs().mean() < 0.05
    mixed = augment_images(images, AugmentConfig(colour=0, channel_mix=1.0, **only), g())
    assert (seen(mixed) - seen(images)).abs().mean() > 0.1
    assert mixed.min() >= 0 and mixed.max() <= 1
    # one matrix per sequence: a pixel's colour relation is the same in every frame
    same = images[:, :1].expand(-1, 2, -1, -1, -1).contiguous()
    out = augment_images(same, AugmentConfig(colour=0, channel_mix=1.0, **only), g())
    torch.testing.assert_close(out[:, 0], out[:, 1])
    off = augment_images(images, AugmentConfig(colour=0, channel_mix=0.0, **only), g())
    torch.testing.assert_close(off, images)
