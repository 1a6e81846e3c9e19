"""DrivingPolicy.step_with_features: the step and its perception features from one pass."""
import numpy as np
import pytest
import torch

from liquid_controller.policy.driving_policy import DrivingPolicy, PolicyConfig


@pytest.mark.parametrize('core', ['cfc', 'ltc', 'lstm', 'cnn'])
def test_step_with_features_is_step_plus_the_head_output(core):
    policy = DrivingPolicy(PolicyConfig(core=core)).eval()
    module = policy.core if core == 'cnn' else policy.head
    calls = []
    hook = module.register_forward_hook(lambda m, a, out: calls.append(out.detach().clone()))
    gen = torch.Generator().manual_seed(0)
    images = torch.rand(3, 2, 3, 64, 128, generator=gen)
    imu = torch.randn(3, 2, 6, generator=gen)
    state_a = state_b = None
    try:
        with torch.no_grad():
            for t in range(3):
                out_a, state_a = policy.step(images[t], imu[t], 0.033, state_a)
                calls.clear()
                out_b, state_b, features = policy.step_with_features(images[t], imu[t], 0.033, state_b)
                assert len(calls) == 1                       # the head ran once, not twice
                torch.testing.assert_close(features, calls[0], rtol=0, atol=0)
                for a, b in ((out_a.command, out_b.command), (out_a.aux, out_b.aux),
                             (out_a.barrier_params, out_b.barrier_params), (state_a, state_b)):
                    torch.testing.assert_close(a, b, rtol=0, atol=0)
    finally:
        hook.remove()
    assert features.shape == (2, policy.config.perception_size)
    assert float(features.std()) > 1e-3
    if core == 'cnn':
        assert policy.core.latent_size == policy.config.perception_size == 10
    else:
        assert np.all(np.abs(features.numpy()) <= 1.0)        # the head's tanh
