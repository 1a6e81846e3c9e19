"""Preprocessing: one definition of the network input for the robot, replay and training."""
import numpy as np
import pytest
import torch

from liquid_controller.errors import InputError
from liquid_controller.runtime.preprocess import (ImuWindow, image_to_tensor, images_to_tensor,
                                                  imu_features, validate_imu_window)


def test_image_to_tensor_values_layout_and_sequence_version_agree():
    rng = np.random.default_rng(1)
    frame = rng.integers(0, 256, (64, 128, 3), dtype=np.uint8)
    x = image_to_tensor(frame, 64, 128)
    assert x.shape == (1, 3, 64, 128) and x.dtype == torch.float32
    assert x[0, 2, 5, 7].item() == pytest.approx(frame[5, 7, 2] / 255.0)
    seq = images_to_tensor(np.stack([frame, frame]))  # (2, 3, 64, 128)
    assert torch.equal(seq[1], x[0])


def test_resize_is_area_average_and_off_by_default():
    frame = np.zeros((128, 256, 3), np.uint8)
    frame[::2, ::2] = 255  # a 2x2 checker -> every 2x2 block averages to 1/4
    with pytest.raises(InputError, match='frame.shape'):
        image_to_tensor(frame, 64, 128)
    x = image_to_tensor(frame, 64, 128, resize=True)
    assert x.shape == (1, 3, 64, 128)
    assert torch.allclose(x, torch.full_like(x, 0.25))


@pytest.mark.parametrize('size', [(64, 128), (120, 160), (480, 640), (100, 333), (37, 59)])
def test_numpy_preprocessing_matches_the_torch_definition(size):
    """image_to_array (numpy, the edge runtime's) against the previous torch maths: x / 255, then
    F.interpolate(mode='area'): bit-identical without resizing, within one float32 rounding with."""
    import torch.nn.functional as F

    from liquid_controller.runtime.preprocess import image_to_array
    frame = np.random.default_rng(2).integers(0, 256, size + (3,), dtype=np.uint8)
    ref = torch.from_numpy(frame).permute(2, 0, 1).unsqueeze(0).to(torch.float32).div_(255.0)
    if size != (64, 128):
        ref = F.interpolate(ref, size=(64, 128), mode='area')
    got = image_to_array(frame, 64, 128, resize=True)
    assert got.dtype == np.float32 and got.shape == (1, 3, 64, 128) and got.flags.c_contiguous
    if size == (64, 128):
        assert np.array_equal(got, ref.numpy())
    else:
        assert np.abs(got - ref.numpy()).max() <= 3e-7


@pytest.mark.parametrize('frame,name', [
    (np.zeros((64, 128, 4), np.uint8), 'frame.shape'),
    (np.zeros((64, 128, 3), np.int16), 'frame.dtype'),
    (np.zeros((0, 128, 3), np.uint8), 'frame.shape'),
    ([[0]], 'frame'),
])
def test_bad_frames_raise_named_errors(frame, name):
    with pytest.raises(InputError) as err:
        image_to_tensor(frame, 64, 128)
    assert err.value.name == name


def test_imu_features_are_window_means_normalised():
    w = ImuWindow(np.array([0.0, 0.005]), np.array([[0.0, 0.0, 1.0], [0.0, 0.0, 3.0]]),
                  np.array([[1.0, 0.0, 9.0], [3.0, 0.0, 11.0]]))
    np.testing.assert_allclose(imu_features(w), [0, 0, 2, 2, 0, 10])
    f = imu_features(w, mean=[0, 0, 1, 0, 0, 10], std=[1, 1, 2, 1, 1, 5])
    np.testing.assert_allclose(f, [0, 0, 0.5, 2, 0, 0])
    with pytest.raises(InputError, match='no IMU samples'):
        imu_features(ImuWindow.empty())
    with pytest.raises(InputError, match='imu.stamps'):
        validate_imu_window(ImuWindow(np.array([np.nan]), np.zeros((1, 3)), np.zeros((1, 3))))


def test_forward_distance_from_a_scan():
    from liquid_controller.runtime.preprocess import forward_distance
    n = 360
    ranges = np.full(n, 5.0)
    angles = -np.pi + np.arange(n) * (2 * np.pi / n)
    ranges[np.abs(angles - np.pi / 2) < 0.05] = 0.4     # something to the left: not ahead
    ranges[np.abs(angles - 0.1) < 0.02] = 1.25          # something 0.1 rad right of ahead
    ranges[0] = np.nan
    args = (-np.pi, 2 * np.pi / n, 0.1, 10.0)
    assert forward_distance(ranges, *args, half_angle=0.3) == pytest.approx(1.25)
    assert forward_distance(ranges, *args, half_angle=0.05) == pytest.approx(5.0)
    ranges[:] = np.inf                                   # nothing in range
    assert forward_distance(ranges, *args, half_angle=0.3) == float('inf')
    ranges[180] = -np.inf                                # too close (REP-117) -> range_min
    assert forward_distance(ranges, *args, half_angle=0.3) == pytest.approx(0.1)
    with pytest.raises(InputError, match='scan.ranges'):
        forward_distance([], *args, half_angle=0.3)
    with pytest.raises(InputError, match='scan.angle_increment'):
        forward_distance([1.0, 2.0], -0.1, float('nan'), 0.1, 10.0, 0.3)


def test_forward_distance_moves_the_scan_into_base_link():
    """A scanner mounted off base_link's origin: distances and the forward sector are base_link's."""
    from liquid_controller.runtime.preprocess import forward_distance
    beams = np.array([-0.5, 0.0, 0.5])                   # beam angles in the scanner frame
    args = (float(beams[0]), 0.5, 0.05, 30.0)
    # scanner 0.3 m ahead of base_link, facing forward: a wall 2 m ahead of it is 2.3 m from base_link
    assert forward_distance([9.0, 2.0, 9.0], *args, 0.2, pose=(0.3, 0.0, 0.0)) == pytest.approx(2.3)
    # scanner turned to face left (yaw +pi/2): its beam at -pi/2 looks straight ahead of the robot
    beams_args = (-np.pi / 2, np.pi / 2, 0.05, 30.0)
    got = forward_distance([1.5, 9.0, 9.0], *beams_args, 0.2, pose=(0.0, 0.2, np.pi / 2))
    assert got == pytest.approx(np.hypot(1.5, 0.2))       # end point (1.5, 0.2) in base_link
    # the same beam with the default pose would be seen as pointing right: outside the sector
    assert forward_distance([1.5, 9.0, 9.0], *beams_args, 0.2) == pytest.approx(9.0)
    with pytest.raises(InputError, match='scan_pose'):
        forward_distance([1.0], 0.0, 0.0, 0.05, 30.0, 0.2, pose=(0.0, float('nan'), 0.0))
