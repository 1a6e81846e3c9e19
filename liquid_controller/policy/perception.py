"""Conv perception head: a camera frame -> a small feature vector for the recurrent core.

Shaped after the NCP paper's perception module (Lechner et al. 2020): a few strided convolutions reduce
a 64x128 RGB frame to a coarse spatial map, a 1x1 convolution squeezes the channels, and one linear
layer produces 32 latent features that feed the 19-neuron liquid core. The flatten keeps *where*
things are in the image (lane keeping needs the position of the lane edges, which a global average
would throw away), while the 1x1 squeeze keeps the linear layer small (about 62k parameters in the
head, 64k for the whole CfC policy at the default sizes; the paper's policy has about 75k).

The head also owns the image normalisation so that a stored model carries it (the model card is the
policy config): 'per_image' standardises each channel of each frame, which removes global brightness
and colour casts (summer -> winter/night scenes); 'fixed' maps [0, 1] to about [-2, 2].
"""
from typing import Sequence

import torch
from torch import nn

IMAGE_NORMALIZATIONS = ('per_image', 'fixed')

# Floor on the per-channel standard deviation in 'per_image' mode (image units, [0, 1]): a nearly
# flat frame (lens cap, fog) must not have its sensor noise blown up to unit variance.
_STD_FLOOR = 0.05


def conv_output_size(size: int, kernel: int, stride: int, padding: int) -> int:
    """Output length of a convolution along one axis (PyTorch's formula, no dilation)."""
    return (size + 2 * padding - kernel) // stride + 1


def normalize_images(images: torch.Tensor, mode: str) -> torch.Tensor:
    """Normalise images (N, C, H, W) in [0, 1] for the conv layers (same shape out)."""
    if mode == 'fixed':
        return (images - 0.5) * 4.0
    if mode == 'per_image':
        flat = images.flatten(2)                                        # (N, C, H*W)
        # E[x^2] - E[x]^2: exact enough for values in [0, 1] and ~7x faster than torch.var on CPU
        mean = flat.mean(dim=2, keepdim=True)                           # (N, C, 1)
        var = (flat.square().mean(dim=2, keepdim=True) - mean.square()).clamp_min(0.0)
        scale = torch.rsqrt(var + _STD_FLOOR ** 2)                      # (N, C, 1)
        return ((flat - mean) * scale).view_as(images)
    raise ValueError(f'image normalization {mode!r} not in {IMAGE_NORMALIZATIONS}')


class ConvHead(nn.Module):
    """Strided conv stack + 1x1 channel squeeze + linear layer -> ``feature_size`` features.

    The first layer uses kernel 5, the others kernel 3 (a second 5x5 layer cost 2x the compute for
    little gain), all stride 2 with 'same'-style padding, so each layer halves the image (rounding up)
    and any image of at least 1x1 pixels is accepted.
    Features go through tanh: bounded inputs keep the liquid core in its working range whatever the
    camera shows.
    """

    def __init__(self, in_channels: int = 3, height: int = 64, width: int = 128,
                 feature_size: int = 32, channels: Sequence[int] = (24, 36, 48, 64),
                 squeeze_channels: int = 8, normalization: str = 'per_image'):
        super().__init__()
        if normalization not in IMAGE_NORMALIZATIONS:
            raise ValueError(f'normalization {normalization!r} not in {IMAGE_NORMALIZATIONS}')
        self.in_channels = int(in_channels)
        self.height = int(height)
        self.width = int(width)
        self.feature_size = int(feature_size)
        self.normalization = normalization
        layers = []
        c_in, h, w = self.in_channels, self.height, self.width
        for i, c_out in enumerate(channels):
            k = 5 if i == 0 else 3
            layers += [nn.Conv2d(c_in, int(c_out), kernel_size=k, stride=2, padding=k // 2), nn.ReLU()]
            h, w = conv_output_size(h, k, 2, k // 2), conv_output_size(w, k, 2, k // 2)
            c_in = int(c_out)
        # 1x1 squeeze: few channels on the coarse map keep the final linear layer small.
        layers += [nn.Conv2d(c_in, int(squeeze_channels), kernel_size=1), nn.ReLU()]
        self.convs = nn.Sequential(*layers)
        self.map_shape = (int(squeeze_channels), h, w)
        self.linear = nn.Linear(int(squeeze_channels) * h * w, self.feature_size)

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        """images (N, C, H, W) float in [0, 1] -> features (N, feature_size) in (-1, 1)."""
        # channels_last activations: 2-3x faster CPU convolutions (weights stay contiguous, so
        # state dicts save as they are)
        x = normalize_images(images, self.normalization).contiguous(memory_format=torch.channels_last)
        x = self.convs(x)                        # (N, squeeze, h, w)
        x = x.flatten(1)                         # (N, squeeze*h*w)
        return torch.tanh(self.linear(x))        # (N, feature_size)


class PilotNetHead(nn.Module):
    """PilotNet-like feed-forward network (Bojarski et al. 2016) adapted to small frames.

    Five convolutions (24, 36, 48 with 5x5 stride 2; 64, 64 with 3x3 stride 1), flatten, then fully
    connected layers 100 -> 50 -> 10. Extra vector inputs (the IMU features) are concatenated to the
    flattened map. Used by the feed-forward CNN baseline, which is deliberately larger than the
    liquid policy. As in PilotNet the convolutions are unpadded (64x128 -> 1x9x64 = 576 features);
    small frames stay valid because an axis that would shrink below one pixel is padded instead.
    """

    def __init__(self, in_channels: int = 3, height: int = 64, width: int = 128, extra_size: int = 0,
                 normalization: str = 'per_image'):
        super().__init__()
        if normalization not in IMAGE_NORMALIZATIONS:
            raise ValueError(f'normalization {normalization!r} not in {IMAGE_NORMALIZATIONS}')
        self.normalization = normalization
        specs = [(24, 5, 2), (36, 5, 2), (48, 5, 2), (64, 3, 1), (64, 3, 1)]   # (channels, kernel, stride)
        layers = []
        c_in, h, w = int(in_channels), int(height), int(width)
        for c_out, k, s in specs:
            ph = 0 if h >= k else k // 2       # pad only an axis too short for an unpadded kernel
            pw = 0 if w >= k else k // 2
            layers += [nn.Conv2d(c_in, c_out, kernel_size=k, stride=s, padding=(ph, pw)), nn.ELU()]
            h, w, c_in = conv_output_size(h, k, s, ph), conv_output_size(w, k, s, pw), c_out
        self.convs = nn.Sequential(*layers)
        self.map_shape = (c_in, h, w)
        self.fc = nn.Sequential(
            nn.Linear(c_in * h * w + int(extra_size), 100), nn.ELU(),
            nn.Linear(100, 50), nn.ELU(),
            nn.Linear(50, 10), nn.ELU())
        self.output_size = 10

    def forward(self, images: torch.Tensor, extra: torch.Tensor) -> torch.Tensor:
        """images (N, C, H, W) in [0, 1], extra (N, extra_size) -> (N, 10)."""
        x = normalize_images(images, self.normalization).contiguous(memory_format=torch.channels_last)
        x = self.convs(x).flatten(1)             # (N, 64*h*w)
        x = torch.cat([x, extra], dim=1)         # (N, 64*h*w + extra_size)
        return self.fc(x)                        # (N, 10)
