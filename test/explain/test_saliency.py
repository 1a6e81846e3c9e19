"""Attention maps and map measures (liquid_controller/policy/saliency.py) on real DrivingPolicy models
with random weights, and on a hand-built conv head whose answer is known."""
import numpy as np
import pytest
import torch

from liquid_controller.errors import InputError
from liquid_controller.policy import saliency as sal
from liquid_controller.policy.driving_policy import DrivingPolicy

from conftest import HEIGHT, WIDTH, small_config

torch.set_num_threads(1)


def _frames(seed=0):
    rng = np.random.default_rng(seed)
    a = rng.integers(0, 256, (HEIGHT, WIDTH, 3), dtype=np.uint8)
    b = a.copy()
    b[:, : WIDTH // 2] = 255 - b[:, : WIDTH // 2]          # a different left half
    return a, b


@pytest.fixture(scope='module', params=['cfc', 'ltc', 'lstm', 'cnn'])
def policy(request):
    return DrivingPolicy(small_config(request.param)).eval()


@pytest.mark.parametrize('method', ['visual_backprop', 'gradient', 'smoothgrad'])
def test_maps_have_image_size_are_normalised_and_follow_the_input(policy, method):
    a, b = _frames()

    def run(img):
        if method == 'visual_backprop':
            return sal.visual_backprop(policy, img)
        return sal.gradient_saliency(policy, img, samples=1 if method == 'gradient' else 4, noise=0.1)

    ma, mb = run(a), run(b)
    for m in (ma, mb):
        assert m.shape == (HEIGHT, WIDTH)
        assert np.isfinite(m).all()
        assert m.min() >= 0.0 and m.max() == pytest.approx(1.0)
    assert np.abs(ma - mb).max() > 1e-3                     # a different image gives a different map
    np.testing.assert_allclose(run(a), ma)                  # deterministic (SmoothGrad is seeded)


def test_gradient_saliency_uses_state_and_float_frames():
    policy = DrivingPolicy(small_config('cfc')).eval()
    a, _ = _frames(1)
    x = torch.from_numpy(a).permute(2, 0, 1).float() / 255.0
    np.testing.assert_allclose(sal.gradient_saliency(policy, x, samples=1),
                               sal.gradient_saliency(policy, a, samples=1), atol=1e-6)
    state = torch.full((1, policy.state_size), 0.5)
    assert np.abs(sal.gradient_saliency(policy, a, state=state, samples=1)
                  - sal.gradient_saliency(policy, a, samples=1)).max() > 1e-3
    with pytest.raises(InputError, match='output'):
        sal.gradient_saliency(policy, a, output='throttle')
    with pytest.raises(InputError, match='samples'):
        sal.gradient_saliency(policy, a, samples=0)
    with pytest.raises(InputError, match='frame'):
        sal.visual_backprop(policy, np.zeros((HEIGHT, WIDTH), np.uint8))


def _left_seeing_policy(height=32, width=64):
    """A real DrivingPolicy whose conv head is hand-set: every kernel averages its inputs with
    non-negative weights and zero bias, and 'fixed' normalisation maps a black pixel to -2. On a frame
    whose right half is black, every activation over the right half is cut by the ReLUs, so the
    head only sees the left half."""
    from liquid_controller.policy.driving_policy import PolicyConfig
    policy = DrivingPolicy(PolicyConfig(core='cfc', image_height=height, image_width=width,
                                        image_normalization='fixed')).eval()
    with torch.no_grad():
        for layer in policy.head.convs:
            if isinstance(layer, torch.nn.Conv2d):
                layer.weight.fill_(1.0 / layer.weight[0].numel())
                layer.bias.zero_()
    return policy


def test_visual_backprop_puts_the_mass_where_the_head_looks():
    policy = _left_seeing_policy()
    rng = np.random.default_rng(0)
    frame = np.zeros((32, 64, 3), np.uint8)
    frame[:, :32] = rng.integers(160, 256, (32, 32, 3))     # textured bright left, black right
    m = sal.visual_backprop(policy, frame)
    left = m[:, :32].sum() / m.sum()
    assert left > 0.97
    mirrored = sal.visual_backprop(policy, frame[:, ::-1].copy())
    assert mirrored[:, 32:].sum() / mirrored.sum() > 0.97
    # inside the seen half the map is not trivial: it peaks away from the dead border
    assert m[:, :28].max() == pytest.approx(1.0)


def test_visual_backprop_maps_match_a_hand_computed_two_layer_case():
    # 1x1 convs with stride 1: VBP = product of the channel-mean activations of both layers
    convs = torch.nn.Sequential(torch.nn.Conv2d(1, 2, 1), torch.nn.ReLU(), torch.nn.Conv2d(2, 1, 1),
                                torch.nn.ReLU())
    with torch.no_grad():
        convs[0].weight.copy_(torch.tensor([1.0, 2.0]).reshape(2, 1, 1, 1))
        convs[0].bias.zero_()
        convs[2].weight.fill_(1.0)
        convs[2].bias.zero_()
    x = torch.rand(1, 1, 4, 5)
    m = sal.visual_backprop_maps(convs, x)[0]
    l1 = 1.5 * x[0, 0]                                       # mean of (x, 2x)
    l2 = 3.0 * x[0, 0]                                       # x + 2x
    torch.testing.assert_close(m, l1 * l2)


def test_road_attention_share():
    rng = np.random.default_rng(0)
    mask = np.zeros((HEIGHT, WIDTH), bool)
    mask[8:, 4:28] = True
    assert sal.road_attention_share(mask.astype(float), mask) == pytest.approx(1.0)
    assert sal.road_attention_share((~mask).astype(float), mask) == pytest.approx(0.0)
    assert sal.road_attention_share(np.ones_like(mask, float), mask) == pytest.approx(mask.mean())
    s = rng.random(mask.shape)
    assert sal.road_attention_share(s, mask) == pytest.approx(s[mask].sum() / s.sum())
    assert np.isnan(sal.road_attention_share(np.zeros(mask.shape), mask))
    with pytest.raises(InputError, match='road_mask'):
        sal.road_attention_share(s, mask[:, :10])
    with pytest.raises(InputError, match='saliency'):
        sal.road_attention_share(-s, mask)


def test_ssim_is_one_for_identical_maps_and_drops_with_noise():
    rng = np.random.default_rng(0)
    yy, xx = np.mgrid[0:32, 0:64]
    m = np.exp(-((yy - 20) ** 2 + (xx - 30) ** 2) / 60.0)
    assert sal.ssim(m, m) == pytest.approx(1.0)
    values = [sal.ssim(m, np.clip(m + rng.normal(0, s, m.shape), 0, 1)) for s in (0.02, 0.1, 0.3)]
    assert 1.0 > values[0] > values[1] > values[2]
    assert values[2] < 0.5
    noisy = np.clip(m + rng.normal(0, 0.1, m.shape), 0, 1)
    assert sal.ssim(m, noisy) == pytest.approx(sal.ssim(noisy, m))    # symmetric
    # a constant offset changes only the luminance term: known closed form for constant maps
    c = np.full((16, 16), 0.2)
    d = np.full((16, 16), 0.6)
    c1 = 0.01 ** 2
    assert sal.ssim(c, d) == pytest.approx((2 * 0.2 * 0.6 + c1) / (0.2 ** 2 + 0.6 ** 2 + c1))
    with pytest.raises(InputError):
        sal.ssim(m, m[:10])


def test_overlay_blends_by_saliency():
    frame = np.full((HEIGHT, WIDTH, 3), 100, np.uint8)
    zero = sal.attention_overlay(frame, np.zeros((HEIGHT, WIDTH)))
    np.testing.assert_array_equal(zero, frame)              # no attention: the camera image unchanged
    s = np.zeros((HEIGHT, WIDTH))
    s[:, :8] = 1.0
    out = sal.attention_overlay(frame, s)
    assert out.dtype == np.uint8 and out.shape == frame.shape
    assert np.abs(out[:, :8].astype(int) - 100).max() > 50  # hot region coloured
    np.testing.assert_array_equal(out[:, 16:], frame[:, 16:])
    small = sal.attention_overlay(frame, np.ones((4, 8)))   # a coarser map is resized
    assert small.shape == frame.shape and np.abs(small.astype(int) - 100).max() > 50
    with pytest.raises(InputError, match='frame'):
        sal.attention_overlay(frame.astype(np.float32), s)
    with pytest.raises(InputError, match='alpha'):
        sal.attention_overlay(frame, s, alpha=2.0)


def test_attention_image_for_the_node():
    policy = DrivingPolicy(small_config('cfc')).eval()
    a, _ = _frames(2)
    img = sal.attention_image(policy, a)
    np.testing.assert_array_equal(img, sal.attention_overlay(a, sal.visual_backprop(policy, a)))
    assert img.shape == a.shape and img.dtype == np.uint8
    assert sal.attention_image(policy, a, method='gradient').shape == a.shape
    with pytest.raises(InputError, match='method'):
        sal.attention_image(policy, a, method='lime')
