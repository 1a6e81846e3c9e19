"""Training-time image augmentation on batches of sequences (torch, runs on the training device).

Photometric changes (brightness, contrast, per-channel colour gain) are drawn once per sequence and
held over its frames: lighting changes slowly, and a flickering sequence would teach the recurrent
core to ignore time. Gaussian pixel noise is drawn per frame (sensor noise). Recovery data is not
synthesised here: the expert's recorded perturbations already put recovery manoeuvres in the commands.

Mirroring (:func:`mirror_batch`) turns a sequence into the same drive in the world reflected left-right:
a track that only turns left then also teaches right-hand corners. It is exact, not approximate: the
camera sits on the rover's centre line, so the reflected world's image is the image flipped
horizontally, and every signal changes the way a reflection y -> -y changes it (see MIRROR_SIGNS).
"""
from dataclasses import dataclass, fields

import torch

from liquid_controller.config_base import config_from_dict, config_to_dict
from liquid_controller.errors import InputError
from liquid_controller.validation import check_number


@dataclass
class AugmentConfig:
    """Augmentation strengths. 0 switches a term off.

    brightness: additive offset drawn from U(-b, b) (image units, [0, 1] range).
    contrast: factor drawn from U(1-c, 1+c) about each frame's mean.
    colour: per-channel gain drawn from U(1-g, 1+g).
    noise_std: standard deviation of additive Gaussian pixel noise, drawn per sequence from U(0, s).
    probability: chance that a sequence is augmented at all (the rest are seen clean).
    mirror: chance that a sequence is replaced by its left-right mirror image (:func:`mirror_batch`),
        drawn independently of ``probability``; 0.5 makes left and right corners equally common.
    channel_mix: strength a_max of a colour mixing M = (1 - a) I + a R, a ~ U(0, a_max), R a random
        row-stochastic 3x3 matrix. Brightness, contrast and per-channel gain are undone by the policy's
        'per_image' normalisation (each channel standardised per frame); mixing channels is not, so
        it is the augmentation that changes colour relations (green grass vs grey road) the network sees.
    """

    brightness: float = 0.2
    contrast: float = 0.3
    colour: float = 0.1
    noise_std: float = 0.03
    probability: float = 0.8
    channel_mix: float = 0.0
    mirror: float = 0.0

    def __post_init__(self):
        for f in fields(self):
            setattr(self, f.name, check_number(f'augment.{f.name}', getattr(self, f.name), 0.0, 1.0))

    def to_dict(self):
        return config_to_dict(self)

    @classmethod
    def from_dict(cls, data):
        return config_from_dict(cls, data, 'augment')


def augment_images(images, config: AugmentConfig, generator=None):
    """images (B, T, 3, H, W) float in [0, 1] -> augmented copy, same shape, clamped to [0, 1]."""
    if images.dim() != 5 or images.shape[2] != 3:
        raise InputError('images', tuple(images.shape), 'expected (B, T, 3, H, W)')
    b = images.shape[0]
    dev, dtype = images.device, images.dtype

    def uniform(*shape, low, high):
        r = torch.rand(*shape, generator=generator, device='cpu', dtype=torch.float32)
        return (low + (high - low) * r).to(device=dev, dtype=dtype)

    apply = (uniform(b, 1, 1, 1, 1, low=0.0, high=1.0) < config.probability).to(dtype)  # (B,1,1,1,1)
    # Contrast, colour gain and brightness fold into one per-frame, per-channel affine map
    # x * scale + bias, applied in one pass (a full pass over the batch per term cost about a third of
    # a training step). Brightness moves past the channel mix unchanged: the mix rows sum to 1.
    scale = torch.ones(b, 1, 1, 1, 1, device=dev, dtype=dtype)
    bias = torch.zeros(b, 1, 1, 1, 1, device=dev, dtype=dtype)
    if config.contrast > 0:
        c = uniform(b, 1, 1, 1, 1, low=1 - config.contrast, high=1 + config.contrast)
        k = 1 + apply * (c - 1)
        mean = images.mean(dim=(2, 3, 4), keepdim=True)                                 # (B,T,1,1,1)
        scale, bias = k, mean * (1 - k)              # mean + (x - mean) k = x k + mean (1 - k)
    if config.colour > 0:
        g = 1 + apply * (uniform(b, 1, 3, 1, 1, low=1 - config.colour, high=1 + config.colour) - 1)
        scale, bias = scale * g, bias * g                                               # (B,*,3,1,1)
    mix = None
    if config.channel_mix > 0:
        a = uniform(b, 1, 1, low=0.0, high=config.channel_mix) * apply.view(b, 1, 1)  # (B, 1, 1)
        r = uniform(b, 3, 3, low=0.0, high=1.0)
        r = r / r.sum(dim=2, keepdim=True)                  # (B, 3, 3) row-stochastic: stays in [0, 1]
        mix = (1 - a) * torch.eye(3, device=dev, dtype=dtype) + a * r                   # (B, 3, 3)
    if config.brightness > 0:
        bias = bias + apply * uniform(b, 1, 1, 1, 1, low=-config.brightness, high=config.brightness)
    out = torch.addcmul(bias, images, scale)                      # (B, T, 3, H, W), a new tensor
    if mix is not None:
        out = torch.einsum('bij,btjhw->btihw', mix, out)
    if config.noise_std > 0:
        sigma = uniform(b, 1, 1, 1, 1, low=0.0, high=config.noise_std) * apply
        noise = torch.randn(out.shape, generator=generator, device='cpu', dtype=torch.float32)
        out.addcmul_(sigma, noise.to(device=dev, dtype=dtype))
    return out.clamp_(0.0, 1.0)


# How each signal changes under the reflection y -> -y of the world (rover frame: x forward, y left,
# z up). Vectors keep x and z and negate y; angular velocity is a pseudovector, so it keeps y and
# negates x and z. The lane offset (m, left positive) and heading error (rad) both change sign.
MIRROR_SIGNS = {
    'imu': (-1.0, 1.0, -1.0, 1.0, -1.0, 1.0),   # gyro x y z, accel x y z (preprocess.imu_features order)
    'command': (1.0, -1.0),                     # forward speed, yaw rate
    'prev_command': (1.0, -1.0),
    'truth': (-1.0, -1.0),                      # lateral offset, heading error
}


def mirror_batch(batch, probability, imu_mean, imu_std, generator=None):
    """Replace each sequence of a training batch, with chance ``probability``, by its mirror image.

    batch: the collated training batch (images float (B, T, 3, H, W); imu (B, T, 6) normalised with
    ``imu_mean``/``imu_std``; command, prev_command, truth (B, T, 2)); other keys are left alone.
    The IMU is reflected in physical units (normalisation does not commute with a sign change when the
    mean is not zero); all-zero IMU rows, the stand-in for "no sample yet", stay zero.
    Returns a new dict and the (B,) bool tensor of mirrored sequences.
    """
    images = batch['images']
    if images.dim() != 5 or images.shape[2] != 3:
        raise InputError('images', tuple(images.shape), 'expected (B, T, 3, H, W)')
    probability = check_number('mirror probability', probability, 0.0, 1.0)
    b = images.shape[0]
    dev, dtype = images.device, images.dtype
    flip = torch.rand(b, generator=generator, device='cpu') < probability                  # (B,)
    out = dict(batch)
    if not bool(flip.any()):
        return out, flip
    f = flip.to(dev)
    out['images'] = torch.where(f.view(b, 1, 1, 1, 1), images.flip(-1), images)          # flip width
    mean = torch.as_tensor(imu_mean, dtype=dtype, device=dev)                             # (6,)
    std = torch.as_tensor(imu_std, dtype=dtype, device=dev)
    for key, signs in MIRROR_SIGNS.items():
        if key not in batch:
            continue
        x = batch[key]
        sign = torch.as_tensor(signs, dtype=x.dtype, device=dev)
        if key == 'imu':
            raw = x * std + mean                                                          # (B, T, 6)
            mirrored = (raw * sign - mean) / std
            mirrored = torch.where((x == 0).all(dim=-1, keepdim=True), x, mirrored)
        else:
            mirrored = x * sign
        out[key] = torch.where(f.view(b, *([1] * (x.dim() - 1))), mirrored, x)
    return out, flip
