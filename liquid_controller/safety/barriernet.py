"""BarrierNet layer for training: reference command + class-K parameters + state -> safe command.

The same rows (:mod:`constraints`) and the same exact solver (:mod:`qp_torch`, equal to the runtime's
NumPy solver) as the runtime filter, so what is trained is what runs. Gradients flow to the reference
command and to the barrier parameters (through the lane rows' right-hand sides, and through the
lateral rows' tangent point). Where the hard rows cannot all hold the output is the brake-and-hold
command (no gradient), and ``status`` says so: nothing is silently replaced by zeros. That command
brakes from the given (measured) speed, as training data has no command history; the runtime filter
brakes from its last command instead (:func:`~liquid_controller.safety.filter.fallback_command`).
"""
import torch
from torch import nn

from liquid_controller.errors import InputError
from liquid_controller.safety.config import SafetyConfig
from liquid_controller.safety.constraints import SOFT_ROWS, brake_speed, build_rows
from liquid_controller.safety.qp_numpy import INFEASIBLE
from liquid_controller.safety.qp_torch import solve_qp_torch


class BarrierNetLayer(nn.Module):
    """Differentiable safety layer (no trainable weights of its own).

    forward(u_ref (B,2), barrier_params (B,K), speed (B,), obstacle_distance (B,) | None,
    lane_offset (B,) | None, heading_error (B,) | None) -> (u_safe (B,2), status (B,) long)

    ``obstacle_distance`` uses +inf where no obstacle is sensed; lane inputs use NaN where there is no
    estimate. ``status``: 0 optimal, 1 soft rows relaxed, 2 infeasible (brake-and-hold returned).
    Works in float32 and float64 (the dtype of ``u_ref``).
    """

    def __init__(self, config=None):
        super().__init__()
        self.config = config if config is not None else SafetyConfig()

    def forward(self, u_ref, barrier_params, speed, obstacle_distance=None, lane_offset=None,
                heading_error=None):
        c = self.config
        if u_ref.dim() != 2 or u_ref.shape[1] != 2:
            raise InputError('u_ref', tuple(u_ref.shape), 'need shape (B, 2)')
        B = u_ref.shape[0]
        if barrier_params.shape != (B, c.num_barrier_params):
            raise InputError('barrier_params', tuple(barrier_params.shape),
                             f'need shape ({B}, {c.num_barrier_params})')
        if speed.shape != (B,):
            raise InputError('speed', tuple(speed.shape), f'need shape ({B},)')
        cast = dict(dtype=u_ref.dtype, device=u_ref.device)
        speed = speed.to(**cast)
        barrier_params = barrier_params.to(**cast)
        opt = [None if x is None else x.to(**cast)
               for x in (obstacle_distance, lane_offset, heading_error)]
        G, h, _ = build_rows(c, speed, u_ref, opt[0], opt[1], opt[2], barrier_params)
        sol = solve_qp_torch(G, h, u_ref, c.weights, SOFT_ROWS, c.soft_penalty)
        brake = torch.stack([brake_speed(c, speed.detach()), torch.zeros_like(speed)], 1)
        u = torch.where((sol.status == INFEASIBLE)[:, None], brake, sol.u)
        return u, sol.status
