"""Attention maps for a DrivingPolicy, and the measures computed on them. ROS-free, policy layer.

Two ways of asking "where does the network look":

- :func:`visual_backprop` (Bojarski et al. 2016, used in the NCP paper): average each conv layer's
  activation map over channels, then walk from the deepest layer back to the input, upsampling the
  running mask with a unit-weight transposed convolution of the layer's own kernel/stride/padding and
  multiplying it point-wise by the shallower layer's average map. Needs only the image (one forward
  pass of the conv stack), so it is cheap enough to run live; it shows what the conv features respond
  to, not how the core uses them.
- :func:`gradient_saliency`: |d command / d pixel| for one output (steering by default), summed over
  colour channels; with ``samples > 1`` it is SmoothGrad (Smilkov et al. 2017: average over copies of
  the image with Gaussian noise). Works for every core (cfc, ltc, lstm, cnn), uses the recurrent state,
  and costs a forward + backward pass per sample.

Both return an (H, W) float64 map normalised to [0, 1] (divided by its maximum; an all-zero map stays
zero). Map measures: :func:`road_attention_share` (share of the saliency mass on a road mask) and
:func:`ssim` (structural similarity, used for saliency stability under input noise).
:func:`attention_overlay` blends a map on the camera frame (the node's ~/attention image).
"""
from __future__ import annotations


import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from liquid_controller.errors import InputError
from liquid_controller.policy.perception import normalize_images
from liquid_controller.validation import check_int, check_number

__all__ = ['OUTPUT_INDEX', 'conv_stack', 'visual_backprop_maps', 'visual_backprop', 'gradient_saliency',
           'normalize_map', 'road_attention_share', 'ssim', 'colorize', 'attention_overlay',
           'frame_to_tensor', 'attention_image']

# Which PolicyOutput.command column a gradient saliency explains.
OUTPUT_INDEX = {'speed': 0, 'steering': 1}
_ACTIVATIONS = (nn.ReLU, nn.ELU, nn.LeakyReLU, nn.Tanh)


# -------------------------------------------------------------------------------------------------
# Input helpers
# -------------------------------------------------------------------------------------------------
def frame_to_tensor(frame) -> torch.Tensor:
    """A camera frame -> (1, 3, H, W) float32 in [0, 1].

    Accepts (H, W, 3) uint8 RGB (divided by 255, as the runtime's preprocessing does), or a float
    tensor/array (3, H, W) / (1, 3, H, W) already in [0, 1].
    """
    if isinstance(frame, np.ndarray) and frame.dtype == np.uint8:
        if frame.ndim != 3 or frame.shape[2] != 3:
            raise InputError('frame', frame.shape, 'a uint8 frame must be (H, W, 3) RGB')
        x = torch.from_numpy(np.ascontiguousarray(frame)).permute(2, 0, 1).unsqueeze(0)  # (1,3,H,W)
        return x.to(torch.float32) / 255.0
    if isinstance(frame, np.ndarray):
        frame = torch.from_numpy(frame)
    if not isinstance(frame, torch.Tensor) or not frame.is_floating_point():
        raise InputError('frame', type(frame).__name__,
                         'must be a uint8 (H, W, 3) array or a float (3, H, W) tensor in [0, 1]')
    if frame.dim() == 3:
        frame = frame.unsqueeze(0)
    if frame.dim() != 4 or frame.shape[0] != 1:
        raise InputError('frame', tuple(frame.shape), 'a float frame must be (3, H, W) or (1, 3, H, W)')
    if not bool(torch.isfinite(frame).all()) or frame.min() < 0 or frame.max() > 1:
        raise InputError('frame', (float(frame.min()), float(frame.max())), 'values must be finite, in [0, 1]')
    return frame.detach().to(torch.float32)


def normalize_map(m) -> np.ndarray:
    """Non-negative map -> float64 in [0, 1] (divided by its maximum; all-zero stays zero)."""
    m = np.asarray(m, dtype=np.float64)
    if not np.isfinite(m).all():
        raise InputError('saliency', 'non-finite values', 'a saliency map must be finite')
    m = np.maximum(m, 0.0)
    top = m.max() if m.size else 0.0
    return m / top if top > 0 else np.zeros_like(m)


# -------------------------------------------------------------------------------------------------
# VisualBackProp
# -------------------------------------------------------------------------------------------------
def conv_stack(policy):
    """(image normalisation mode, nn.Sequential of conv + activation layers) of a DrivingPolicy's
    perception: the ConvHead for cfc/ltc/lstm, the PilotNet convolutions for cnn."""
    head = getattr(policy, 'head', None)
    if head is not None and hasattr(head, 'convs'):
        return head.normalization, head.convs
    net = getattr(getattr(policy, 'core', None), 'net', None)
    if net is not None and hasattr(net, 'convs'):
        return net.normalization, net.convs
    raise InputError('policy', type(policy).__name__, 'has no conv perception stack (head.convs / core.net.convs)')


def visual_backprop_maps(convs: nn.Sequential, x: torch.Tensor) -> torch.Tensor:
    """VisualBackProp through a Sequential of Conv2d layers each followed by an activation.

    x: (N, C, H, W) already normalised for the convs. Returns the raw mask (N, H, W) (not normalised).
    """
    layers = list(convs)
    averages, geometry = [], []   # per conv layer: channel-mean activation (N,1,h,w), conv geometry
    pending = None
    h = x
    with torch.no_grad():
        for layer in layers:
            h = layer(h)
            if isinstance(layer, nn.Conv2d):
                pending = layer
            elif isinstance(layer, _ACTIVATIONS) and pending is not None:
                averages.append(h.mean(dim=1, keepdim=True))              # (N, 1, h, w)
                geometry.append(pending)
                pending = None
    if not averages:
        raise InputError('convs', type(convs).__name__, 'contains no Conv2d + activation layers')
    sizes = [tuple(x.shape[-2:])] + [tuple(a.shape[-2:]) for a in averages]   # input, then each layer
    mask = averages[-1]
    for i in range(len(averages) - 1, -1, -1):
        conv = geometry[i]
        mask = _upsample_like_conv(mask, conv, sizes[i])                # to the size of conv i's input
        if i > 0:
            mask = mask * averages[i - 1]                               # (N, 1, h_{i-1}, w_{i-1})
    return mask[:, 0]                                                   # (N, H, W)


def _upsample_like_conv(mask, conv, target):
    """Unit-weight transposed convolution with the conv's geometry, to exactly ``target`` (h, w)."""
    kh, kw = conv.kernel_size
    sh, sw = conv.stride
    ph, pw = conv.padding if isinstance(conv.padding, tuple) else (0, 0)
    h, w = mask.shape[-2:]
    oph = target[0] - ((h - 1) * sh - 2 * ph + kh)
    opw = target[1] - ((w - 1) * sw - 2 * pw + kw)
    if 0 <= oph < sh and 0 <= opw < sw:   # output_padding must be smaller than the stride
        ones = torch.ones(1, 1, kh, kw, dtype=mask.dtype)
        out = F.conv_transpose2d(mask, ones, stride=(sh, sw), padding=(ph, pw), output_padding=(oph, opw))
        if tuple(out.shape[-2:]) == tuple(target):
            return out
    # geometry a transposed conv cannot reproduce (e.g. asymmetric padding): bilinear resize
    return F.interpolate(mask, size=target, mode='bilinear', align_corners=False)


def visual_backprop(policy, image) -> np.ndarray:
    """VisualBackProp attention map of ``policy``'s conv perception for one image.

    image: (H, W, 3) uint8, or float (3, H, W) / (1, 3, H, W) in [0, 1].
    Returns (H, W) float64 in [0, 1].
    """
    mode, convs = conv_stack(policy)
    x = frame_to_tensor(image)                                          # (1, 3, H, W)
    p = next(convs.parameters())
    x = normalize_images(x.to(p.dtype), mode)
    return normalize_map(visual_backprop_maps(convs, x)[0].numpy())


# -------------------------------------------------------------------------------------------------
# Gradient saliency (input gradient / SmoothGrad)
# -------------------------------------------------------------------------------------------------
def gradient_saliency(policy, image, imu=None, state=None, dt=1.0 / 30.0, output='steering',
                      samples=16, noise=0.1, seed=0) -> np.ndarray:
    """|d command[output] / d image| for one DrivingPolicy step, summed over colour channels.

    image: (H, W, 3) uint8 or float (3, H, W) in [0, 1]; imu: (imu_size,) features (zeros when None);
    state: (1, state_size) or (state_size,) recurrent state before this frame (reset state when None);
    dt: seconds since the previous frame. output: 'steering' (w) or 'speed' (v).
    samples: 1 = plain input gradient; > 1 = SmoothGrad over that many noisy copies, Gaussian noise of
    standard deviation ``noise`` (image units), clipped to [0, 1]. Deterministic for a given seed.
    Returns (H, W) float64 in [0, 1].
    """
    if output not in OUTPUT_INDEX:
        raise InputError('output', output, f'must be one of {sorted(OUTPUT_INDEX)}')
    samples = check_int('samples', samples, 1)
    noise = check_number('noise', noise, 0.0)
    c = policy.config
    p = next(policy.parameters())
    x = frame_to_tensor(image).to(p.dtype)                              # (1, 3, H, W)
    n = int(samples)
    batch = x.expand(n, -1, -1, -1).clone()                             # (n, 3, H, W)
    if n > 1 and noise > 0:
        gen = torch.Generator().manual_seed(int(seed))
        batch = (batch + noise * torch.randn(batch.shape, generator=gen, dtype=batch.dtype)).clamp(0, 1)
    batch.requires_grad_(True)
    imu_t = torch.zeros(n, c.imu_size, dtype=p.dtype) if imu is None else \
        torch.as_tensor(np.asarray(imu, dtype=np.float32), dtype=p.dtype).reshape(1, -1).expand(n, -1)
    if state is not None:
        state = torch.as_tensor(state, dtype=p.dtype).reshape(1, -1).expand(n, -1).contiguous()
    dt_t = torch.full((n,), float(dt), dtype=p.dtype)
    was_training = policy.training
    policy.eval()
    try:
        with torch.enable_grad():
            out, _ = policy.step(batch, imu_t, dt_t, state)
            target = out.command[:, OUTPUT_INDEX[output]].sum()         # samples are independent
            (grad,) = torch.autograd.grad(target, batch)                # (n, 3, H, W)
    finally:
        policy.train(was_training)
    return normalize_map(grad.abs().sum(dim=1).mean(dim=0).numpy())   # (H, W)


# -------------------------------------------------------------------------------------------------
# Measures on maps
# -------------------------------------------------------------------------------------------------
def _check_map(name, m):
    m = np.asarray(m, dtype=np.float64)
    if m.ndim != 2:
        raise InputError(name, m.shape, 'must be a 2-D (H, W) map')
    if not np.isfinite(m).all():
        raise InputError(name, 'non-finite values', 'must be finite')
    return m


def road_attention_share(saliency, road_mask) -> float:
    """Share of the saliency mass that falls on the road: sum(s * mask) / sum(s), in [0, 1].

    saliency (H, W) >= 0; road_mask (H, W) bool (e.g. ``DrivingWorld.road_mask()``). Returns NaN
    for an all-zero map (no attention anywhere: the share is undefined, not zero).
    """
    s = _check_map('saliency', saliency)
    mask = np.asarray(road_mask)
    if mask.shape != s.shape:
        raise InputError('road_mask', mask.shape, f'must have the saliency shape {s.shape}')
    if (s < 0).any():
        raise InputError('saliency', float(s.min()), 'must be >= 0')
    total = s.sum()
    if total <= 0:
        return float('nan')
    return float((s * mask.astype(bool)).sum() / total)


def ssim(a, b, data_range=1.0, sigma=1.5) -> float:
    """Mean structural similarity (Wang et al. 2004) of two (H, W) maps with a Gaussian window.

    Constants K1 = 0.01, K2 = 0.03 and sigma = 1.5 as in the paper (and scikit-image's
    ``gaussian_weights=True``). 1.0 for identical maps; lower as they differ.
    """
    from scipy.ndimage import gaussian_filter
    a = _check_map('a', a)
    b = _check_map('b', b)
    if a.shape != b.shape:
        raise InputError('b', b.shape, f'must have the shape of a {a.shape}')
    if not data_range > 0:
        raise InputError('data_range', data_range, 'must be > 0')
    c1, c2 = (0.01 * data_range) ** 2, (0.03 * data_range) ** 2

    def blur(x):
        return gaussian_filter(x, sigma=sigma, mode='reflect', truncate=3.5)

    mu_a, mu_b = blur(a), blur(b)
    var_a = blur(a * a) - mu_a ** 2
    var_b = blur(b * b) - mu_b ** 2
    cov = blur(a * b) - mu_a * mu_b
    num = (2 * mu_a * mu_b + c1) * (2 * cov + c2)
    den = (mu_a ** 2 + mu_b ** 2 + c1) * (var_a + var_b + c2)
    return float(np.mean(num / den))


# -------------------------------------------------------------------------------------------------
# Overlay image (the node's ~/attention topic, replay output, reports)
# -------------------------------------------------------------------------------------------------
# 'jet'-like colour ramp anchors: dark blue -> blue -> cyan -> yellow -> red
_RAMP_X = np.array([0.0, 0.125, 0.375, 0.625, 0.875, 1.0])
_RAMP_RGB = np.array([[0, 0, 0.5], [0, 0, 1], [0, 1, 1], [1, 1, 0], [1, 0, 0], [0.5, 0, 0]])


def colorize(saliency) -> np.ndarray:
    """(H, W) map in [0, 1] -> (H, W, 3) uint8 heat-map colours (no matplotlib: cheap enough for a node)."""
    s = np.clip(_check_map('saliency', saliency), 0.0, 1.0)
    rgb = np.stack([np.interp(s, _RAMP_X, _RAMP_RGB[:, k]) for k in range(3)], axis=-1)   # (H, W, 3)
    return (rgb * 255.0 + 0.5).astype(np.uint8)


def attention_overlay(frame, saliency, alpha=0.6) -> np.ndarray:
    """Blend a saliency heat map on a camera frame.

    frame: (H, W, 3) uint8 RGB; saliency: (h, w) in [0, 1] (resized bilinearly to H x W when the sizes
    differ). The heat map's opacity grows with the saliency (alpha * sqrt(s): the square root keeps
    moderate attention visible), so unattended pixels show the camera image unchanged.
    Returns (H, W, 3) uint8 RGB.
    """
    if not isinstance(frame, np.ndarray) or frame.dtype != np.uint8 or frame.ndim != 3 or frame.shape[2] != 3:
        raise InputError('frame', getattr(frame, 'shape', type(frame).__name__), 'must be (H, W, 3) uint8 RGB')
    alpha = check_number('alpha', alpha, 0.0, 1.0)
    s = np.clip(_check_map('saliency', saliency), 0.0, 1.0)
    if s.shape != frame.shape[:2]:
        t = torch.from_numpy(s)[None, None]
        s = F.interpolate(t, size=frame.shape[:2], mode='bilinear', align_corners=False)[0, 0].numpy()
        s = np.clip(s, 0.0, 1.0)
    weight = (alpha * np.sqrt(s))[..., None]                            # (H, W, 1)
    out = (1.0 - weight) * frame.astype(np.float64) + weight * colorize(s).astype(np.float64)
    return np.clip(out + 0.5, 0, 255).astype(np.uint8)


def attention_image(policy, frame, method='visual_backprop', alpha=0.6, **kwargs) -> np.ndarray:
    """The ~/attention image for one camera frame: saliency of ``policy`` blended on ``frame``.

    frame: (H, W, 3) uint8 RGB at the policy's input size. method 'visual_backprop' (image only, one
    conv pass: the one to use live) or 'gradient' / 'smoothgrad' (``kwargs`` go to
    :func:`gradient_saliency`: imu, state, dt, samples, ...). Returns (H, W, 3) uint8 RGB.
    """
    if method == 'visual_backprop':
        m = visual_backprop(policy, frame)
    elif method in ('gradient', 'smoothgrad'):
        kwargs.setdefault('samples', 1 if method == 'gradient' else 8)
        m = gradient_saliency(policy, frame, **kwargs)
    else:
        raise InputError('method', method, "must be 'visual_backprop', 'gradient' or 'smoothgrad'")
    return attention_overlay(frame, m, alpha=alpha)
