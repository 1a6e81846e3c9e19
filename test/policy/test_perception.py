"""Conv perception heads: output sizes, bounded features, normalisation behaviour, gradients."""
import pytest
import torch
from torch import nn

from liquid_controller.policy.perception import (ConvHead, PilotNetHead, conv_output_size,
                                                 normalize_images)

torch.set_num_threads(1)


@pytest.mark.parametrize('size,kernel,stride,padding', [(64, 5, 2, 2), (65, 5, 2, 2), (7, 3, 2, 1),
                                                        (30, 5, 2, 0), (3, 3, 1, 0), (1, 5, 2, 2)])
def test_conv_output_size_matches_pytorch(size, kernel, stride, padding):
    conv = nn.Conv2d(1, 1, kernel, stride, padding)
    out = conv(torch.zeros(1, 1, size, size))
    assert out.shape[-1] == conv_output_size(size, kernel, stride, padding)


@pytest.mark.parametrize('height,width', [(64, 128), (48, 96), (144, 256), (9, 13)])
def test_conv_head_features_bounded_for_any_frame_size(height, width):
    torch.manual_seed(0)
    head = ConvHead(3, height, width, feature_size=32)
    images = torch.rand(4, 3, height, width)
    feats = head(images)
    assert feats.shape == (4, 32)
    assert bool((feats.abs() < 1).all())
    # the features depend on the image: two different frames give different features
    assert not torch.allclose(feats[0], feats[1])
    # the declared map shape is what the conv stack really produces
    with torch.no_grad():
        assert tuple(head.convs(normalize_images(images, 'per_image')).shape[1:]) == head.map_shape


def test_default_conv_head_is_small_like_the_ncp_paper():
    head = ConvHead()
    n = sum(p.numel() for p in head.parameters())
    # NCP paper: about 75k parameters for the whole policy, almost all in the conv head
    assert 60_000 < n < 90_000, n
    assert head.map_shape == (8, 4, 8)


def test_per_image_normalisation_removes_brightness_and_contrast():
    torch.manual_seed(1)
    images = torch.rand(2, 3, 32, 64)
    base = normalize_images(images, 'per_image')
    # each channel of each frame has zero mean
    assert torch.allclose(base.mean(dim=(2, 3)), torch.zeros(2, 3), atol=1e-5)
    darker = normalize_images(images * 0.8 + 0.1, 'per_image')
    assert torch.allclose(base, darker, atol=0.03)
    # 'fixed' keeps absolute brightness: the same change moves it a lot
    fixed_a = normalize_images(images, 'fixed')
    fixed_b = normalize_images(images * 0.8 + 0.1, 'fixed')
    assert (fixed_a - fixed_b).abs().max() > 0.3


def test_flat_frame_is_not_amplified():
    flat = torch.full((1, 3, 16, 16), 0.7)
    assert normalize_images(flat, 'per_image').abs().max() < 1e-4
    # tiny sensor noise on a flat frame stays tiny (std floor), not blown up to unit variance
    noisy = flat + 1e-3 * torch.randn_like(flat)
    assert normalize_images(noisy, 'per_image').abs().max() < 0.1


def test_unknown_normalisation_rejected():
    with pytest.raises(ValueError, match='normalization'):
        ConvHead(normalization='imagenet')
    with pytest.raises(ValueError, match='normalization'):
        normalize_images(torch.zeros(1, 3, 8, 8), 'bogus')


def test_pilotnet_head_shapes_and_small_frames():
    torch.manual_seed(0)
    net = PilotNetHead(3, 64, 128, extra_size=6)
    # unpadded PilotNet convolutions on 64x128: 1 x 9 map of 64 channels
    assert net.map_shape == (64, 1, 9)
    out = net(torch.rand(2, 3, 64, 128), torch.randn(2, 6))
    assert out.shape == (2, 10)
    small = PilotNetHead(3, 16, 16, extra_size=0)    # would be empty without the fallback padding
    assert small(torch.rand(1, 3, 16, 16), torch.zeros(1, 0)).shape == (1, 10)


def test_pilotnet_uses_the_extra_inputs():
    torch.manual_seed(0)
    net = PilotNetHead(3, 32, 64, extra_size=6)
    image = torch.rand(1, 3, 32, 64)
    a = net(image, torch.zeros(1, 6))
    b = net(image, torch.ones(1, 6))
    assert not torch.allclose(a, b)


def test_gradients_reach_the_image_for_saliency():
    torch.manual_seed(0)
    head = ConvHead(3, 32, 64)
    image = torch.rand(1, 3, 32, 64, requires_grad=True)
    head(image).sum().backward()
    assert image.grad is not None and bool(torch.isfinite(image.grad).all())
    assert image.grad.abs().sum() > 0
