"""The torch policy backend: a DrivingPolicy behind the runtime's numpy step interface
(runtime/policy_backend.py). Imported only when the torch backend is chosen."""
from __future__ import annotations

import numpy as np
import torch

from liquid_controller.runtime.policy_backend import PolicyStepResult

__all__ = ['TorchPolicyStep']


class TorchPolicyStep:
    """Runs ``DrivingPolicy.step_with_features`` under ``torch.no_grad`` on numpy inputs (the step
    and its perception features from one pass).

    ``num_threads``: torch intra-op threads, set process-wide (1 is fastest for batch-1 steps).
    """

    backend = 'torch'
    provides_features = True

    def __init__(self, policy, num_threads=1):
        self.policy = policy
        if num_threads:
            torch.set_num_threads(int(num_threads))
        self.state_size = int(policy.state_size)

    def neuron_groups(self):
        """Labelled index lists into the state (the policy's)."""
        return self.policy.neuron_groups()

    def initial_state(self):
        """The reset state (1, S) float32 zeros."""
        return np.zeros((1, self.state_size), dtype=np.float32)

    def step(self, image, imu, dt, state):
        """image (1, 3, H, W) float32, imu (imu_size,), dt float s, state (1, S) -> PolicyStepResult."""
        imu_t = torch.from_numpy(np.asarray(imu, dtype=np.float32)).reshape(1, -1)   # (1, imu)
        dt_t = torch.tensor([float(dt)], dtype=torch.float32)                        # (1,)
        with torch.no_grad():
            out, new_state, features = self.policy.step_with_features(
                torch.from_numpy(image), imu_t, dt_t, torch.from_numpy(state))
        return PolicyStepResult(command=out.command.numpy().reshape(-1),
                                aux=out.aux.numpy().reshape(-1),
                                barrier_params=out.barrier_params.numpy().reshape(-1),
                                state=new_state.numpy(),
                                features=features.numpy().reshape(-1))           # (F,)
