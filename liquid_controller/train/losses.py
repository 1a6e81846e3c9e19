"""Training loss: the BarrierNet-filtered command against the recorded command, plus auxiliary terms.

As in BarrierNet (Xiao et al., T-RO 2023) the network outputs a reference command and the class-K
parameters of the barrier constraints; the differentiable safety QP (the safety layer's
``BarrierNetLayer``, the same problem the runtime filter solves) returns the nearest safe command, and
the imitation loss is taken on that filtered command, so gradients reach both the reference and the
barrier parameters.

The filter's state per frame is what the runtime Controller gives it: speed = the
previous command's v (``prev_command``; the Controller uses its own last output when there is no
odometry), lane offset and heading error from the network's auxiliary head (or ground truth / nothing,
see ``TrainConfig.barrier_lane_source``).
"""
from dataclasses import dataclass

import torch

from liquid_controller.errors import InputError


@dataclass
class LossTerms:
    """Masked mean loss terms of one batch (0-dim tensors) and the counts they were averaged over."""

    total: torch.Tensor
    command: torch.Tensor        # filtered command vs recorded (normalised squared error)
    reference: torch.Tensor      # unfiltered reference vs recorded
    aux: torch.Tensor            # lane offset / heading error vs ground truth
    intervention: torch.Tensor   # mean |filtered - reference| (normalised): how much the filter acts
    infeasible: torch.Tensor     # fraction of frames where the filter returned brake-and-hold
    frames: int
    truth_frames: int

    def detached(self):
        """Python floats for logging."""
        names = ('total', 'command', 'reference', 'aux', 'intervention', 'infeasible')
        out = {name: float(getattr(self, name).detach()) for name in names}
        out['loss'] = out.pop('total')
        return out


def barrier_layer(safety_config):
    """The safety layer's differentiable BarrierNet layer for ``safety_config``."""
    from liquid_controller.safety.barriernet import BarrierNetLayer
    return BarrierNetLayer(safety_config)


def filter_commands(layer, reference, barrier_params, prev_command, lane=None):
    """Run the BarrierNet layer on every frame of a batch of sequences.

    reference (B, T, 2), barrier_params (B, T, K), prev_command (B, T, 2), lane (B, T, 2) (NaN where
    there is no estimate) or None -> (filtered (B, T, 2), status (B, T)). Frames are independent QPs,
    so the (B, T) axes are flattened into one batch. The filter's speed is the previous command's v.
    """
    b, t = reference.shape[:2]
    flat = lambda x: x.reshape(b * t, *x.shape[2:])  # noqa: E731  (B, T, ...) -> (B*T, ...)
    lane_offset = heading_error = None
    if lane is not None:
        lane_offset, heading_error = flat(lane[..., 0]), flat(lane[..., 1])
    safe, status = layer(flat(reference), flat(barrier_params), flat(prev_command[..., 0]),
                         lane_offset=lane_offset, heading_error=heading_error)
    return safe.reshape(b, t, 2), status.reshape(b, t)


def lane_input(output, batch, source):
    """Lane offset / heading error (B, T, 2) the barrier sees in training, or None (rows off)."""
    if source == 'aux' and output.aux.shape[-1] >= 2:
        return output.aux[..., :2]
    if source == 'truth':
        nan = torch.full_like(batch['truth'], float('nan'))
        return torch.where(batch['truth_mask'][..., None], batch['truth'], nan)
    return None


def _masked_mean(values, mask, count=None):
    """Mean of ``values`` (B, T) over ``mask`` (B, T) bool; 0 when the mask is empty.

    count: the divisor, when it is not this mask's own count (distributed training divides each
    rank's sum by the frames of the whole global batch)."""
    m = mask.to(values.dtype)
    return (values * m).sum() / (m.sum().clamp_min(1.0) if count is None else max(1, count))


def compute_loss(output, batch, config, command_scale, layer=None, counts=None):
    """Loss of one chunk.

    output: PolicyOutput with (B, T, ...) fields; batch: dict of (B, T, ...) tensors on the same
    device (command, prev_command, truth, truth_mask, mask); config: TrainConfig; command_scale (2,)
    = (v_max, w_max); layer: BarrierNetLayer or None (no filtering).
    counts: (frames, truth_frames) of the whole global batch when this batch is one rank's shard: the
    terms are then this shard's share of the global means (they add up over ranks), and a shard
    without valid frames gives zeros that still reach every parameter (DDP needs every gradient).
    """
    mask = batch['mask']
    frames, truth_frames = counts if counts is not None else (None, None)
    if counts is None and not mask.any():
        raise InputError('batch.mask', 0, 'a chunk without any valid frame')
    target = batch['command']                                         # (B, T, 2)
    weights = torch.as_tensor(config.command_weights, dtype=target.dtype, device=target.device)
    reference = output.command                                        # (B, T, 2)
    if layer is not None:
        lane = lane_input(output, batch, config.barrier_lane_source)
        filtered, status = filter_commands(layer, reference, output.barrier_params, batch['prev_command'],
                                           lane)
        infeasible = _masked_mean((status == 2).to(target.dtype), mask, frames)
    else:
        filtered, infeasible = reference, target.new_zeros(())

    def command_error(u):
        err = ((u - target) / command_scale) ** 2                     # (B, T, 2)
        return _masked_mean((err * weights).sum(-1), mask, frames)

    cmd = command_error(filtered)
    ref = command_error(reference)
    intervention = _masked_mean(((filtered - reference).abs() / command_scale).sum(-1), mask, frames)
    truth_mask = batch['truth_mask'] & mask
    has_truth = truth_mask.any() if truth_frames is None else truth_frames > 0
    if output.aux.shape[-1] >= 2 and has_truth:
        scales = torch.as_tensor(config.aux_scales, dtype=target.dtype, device=target.device)
        aux = _masked_mean((((output.aux[..., :2] - batch['truth']) / scales) ** 2).sum(-1), truth_mask,
                           truth_frames)
    else:
        aux = target.new_zeros(())
    total = cmd + config.reference_weight * ref + config.aux_weight * aux
    return LossTerms(total=total, command=cmd, reference=ref, aux=aux, intervention=intervention,
                     infeasible=infeasible, frames=int(mask.sum()), truth_frames=int(truth_mask.sum()))
