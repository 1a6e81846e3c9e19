"""Layer 2: the BarrierNet safety filter (constraint rows, exact small QP, fallback, certificates).

Knows nothing of ROS. Public API (contract 2 of the team brief):

- :class:`SafetyConfig`, :class:`RobotState` (``safety/config.py``)
- :class:`SafetyFilter` ``(config).filter(u_nominal (2,), state, barrier_params (K,) | None)
  -> (u_safe np.ndarray (2,), Certificate)``; never raises. ``SafetyFilter.brake_command()`` is
  the deterministic fallback: brake at the limit for one period from the last commanded speed (never
  from a measurement), yaw rate 0; ``SafetyFilter.record_command(u)`` tells the filter about a
  command sent without it. :class:`Certificate` ``.to_dict()``.
- :class:`BarrierNetLayer` (torch ``nn.Module``) for training, same rows and same exact solver.
- :func:`solve_qp` (NumPy) / :func:`solve_qp_torch`: the exact two-variable QP by active-set
  enumeration, status optimal / soft_relaxed / infeasible.
- :func:`filter_batch`: the filter over arrays of states (harness, evaluation).
"""
from liquid_controller.safety.config import RobotState, SafetyConfig
from liquid_controller.safety.filter import Certificate, SafetyFilter, filter_batch
from liquid_controller.safety.qp_numpy import (INFEASIBLE, OPTIMAL, SOFT_RELAXED, STATUS_NAMES,
                                               solve_qp)


def __getattr__(name):
    # torch-based pieces load lazily so the runtime filter imports only NumPy
    if name == 'BarrierNetLayer':
        from liquid_controller.safety.barriernet import BarrierNetLayer
        return BarrierNetLayer
    if name == 'solve_qp_torch':
        from liquid_controller.safety.qp_torch import solve_qp_torch
        return solve_qp_torch
    raise AttributeError(name)


__all__ = ['SafetyConfig', 'RobotState', 'SafetyFilter', 'Certificate', 'filter_batch',
           'BarrierNetLayer', 'solve_qp', 'solve_qp_torch', 'OPTIMAL', 'SOFT_RELAXED',
           'INFEASIBLE', 'STATUS_NAMES']
