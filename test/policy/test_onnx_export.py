"""policy/onnx_export.py: the graph of the whole step equals DrivingPolicy.step for every core."""
import numpy as np
import onnxruntime
import pytest
import torch

from liquid_controller.errors import InputError
from liquid_controller.policy.driving_policy import DrivingPolicy, PolicyConfig
from liquid_controller.policy.onnx_export import (INPUT_NAMES, OUTPUT_NAMES, build_step_graph,
                                                  compare_step_with_torch)
from liquid_controller.policy.perception import IMAGE_NORMALIZATIONS as HEAD_NORMALIZATIONS
from liquid_controller.policy.policy_config import IMAGE_NORMALIZATIONS

CONFIGS = [
    dict(core='cfc'), dict(core='cfc', cfc_mode='no_gate'), dict(core='cfc', cfc_mode='pure'),
    dict(core='ltc'), dict(core='ltc', ltc_unfolds=2, units=8), dict(core='lstm'), dict(core='cnn'),
    dict(core='cfc', image_normalization='fixed', image_height=32, image_width=48),
    dict(core='lstm', num_barrier_params=0, aux_outputs=0),
]


def _perturbed(config):
    """A policy whose weights are not at their initial values (gates, gains and biases all matter)."""
    policy = DrivingPolicy(PolicyConfig(**config)).eval()
    gen = torch.Generator().manual_seed(1)
    with torch.no_grad():
        for p in policy.parameters():
            # noise on the scale of each tensor's own initialisation (a trained net's magnitudes);
            # gains and biases initialised to constants get 0.1
            scale = float(p.std()) if p.numel() > 1 and float(p.std()) > 0 else 0.1
            p.add_(torch.randn(p.shape, generator=gen) * 0.5 * scale)
    return policy


@pytest.fixture(autouse=True)
def one_thread():
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def _session(policy):
    options = onnxruntime.SessionOptions()
    options.intra_op_num_threads = 1
    session = onnxruntime.InferenceSession(build_step_graph(policy).SerializeToString(), options,
                                           providers=['CPUExecutionProvider'])

    def run(image, imu, state, dt):
        return session.run(None, {'image': image, 'imu': imu, 'state': state, 'dt': dt})
    return session, run


@pytest.mark.parametrize('config', CONFIGS, ids=lambda c: '-'.join(f'{v}' for v in c.values()))
def test_graph_equals_torch_over_a_long_irregular_sequence(config):
    policy = _perturbed(config)
    c = policy.config
    rng = np.random.default_rng(0)
    steps, batch = 64, 2
    images = rng.random((steps, batch, 3, c.image_height, c.image_width), dtype=np.float32)
    imu = (rng.normal(size=(steps, batch, c.imu_size)) * 3).astype(np.float32)
    dt = rng.uniform(0.004, 0.3, size=(steps, batch)).astype(np.float32)
    dt[10] = 5.0                                       # a long gap (LSTM dt clip, CfC/LTC decay)
    _, run = _session(policy)
    assert compare_step_with_torch(policy, run, images, imu, dt) <= 1e-5


def test_contract_names_and_a_wrong_graph_is_detected():
    policy = _perturbed(dict(core='cfc'))
    session, run = _session(policy)
    assert [a.name for a in session.get_inputs()] == list(INPUT_NAMES)
    assert [a.name for a in session.get_outputs()] == list(OUTPUT_NAMES)
    assert session.get_inputs()[2].shape[1] == policy.state_size
    # the comparison is not vacuous: a graph of other weights differs
    other = _perturbed(dict(core='cfc', seed=5))
    _, run_other = _session(other)
    rng = np.random.default_rng(0)
    images = rng.random((5, 1, 3, 64, 128), dtype=np.float32)
    imu = rng.normal(size=(5, 1, 6)).astype(np.float32)
    dt = np.full((5, 1), 0.033, np.float32)
    assert compare_step_with_torch(policy, run_other, images, imu, dt) > 1e-3


def test_ncp_masks_are_folded_into_the_weights():
    """Masked synapses are zeros in the graph; no mask is an input or a separate tensor."""
    from onnx import numpy_helper
    policy = _perturbed(dict(core='cfc'))
    graph = build_step_graph(policy).graph
    assert [i.name for i in graph.input] == list(INPUT_NAMES)
    assert not any('mask' in t.name for t in graph.initializer)
    first = [numpy_helper.to_array(t) for t in graph.initializer if t.name.startswith('w_in')][0]
    mask = policy.core.mask_0.numpy()                  # (G n, F + n); input part is (n, F) per gate
    n = policy.core._sizes[0]
    masked_input = mask[:n, :first.shape[0]].T == 0    # (F, n) zeros of ff1
    assert masked_input.any() and (first[:, :n][masked_input] == 0).all()


def test_bad_policy_and_shared_constants():
    with pytest.raises(InputError, match='DrivingPolicy'):
        build_step_graph(torch.nn.Linear(2, 2))
    assert IMAGE_NORMALIZATIONS == HEAD_NORMALIZATIONS


@pytest.mark.parametrize('core', ['cfc', 'ltc', 'lstm', 'cnn'])
def test_features_output_is_the_perception_output(core):
    """The graph's 'features' output equals the torch head's (the cnn: PilotNet latent) at every step
    of a stateful sequence, within 1e-5, and it is the contract's last output of width
    config.perception_size."""
    policy = _perturbed(dict(core=core))
    c = policy.config
    session, run = _session(policy)
    out = session.get_outputs()
    assert [a.name for a in out][-1] == 'features' and out[-1].shape == ['batch', c.perception_size]
    assert c.perception_size == (10 if core == 'cnn' else c.feature_size)
    rng = np.random.default_rng(4)
    steps, batch = 12, 2
    images = rng.random((steps, batch, 3, c.image_height, c.image_width), dtype=np.float32)
    imu = rng.normal(size=(steps, batch, c.imu_size)).astype(np.float32)
    dt = rng.uniform(0.01, 0.1, size=(steps, batch)).astype(np.float32)
    state = np.zeros((batch, policy.state_size), np.float32)
    got = []
    for t in range(steps):
        *_, state, features = run(images[t], imu[t], state, dt[t])
        got.append(features)
    got = np.stack(got)                                                   # (T, B, F)
    with torch.no_grad():
        flat = torch.from_numpy(images.reshape(steps * batch, 3, c.image_height, c.image_width))
        if core == 'cnn':
            scaled = (torch.from_numpy(imu.reshape(steps * batch, -1)) * policy.imu_scale).clamp(
                -c.imu_clip, c.imu_clip)
            want = policy.core(flat, scaled)
        else:
            want = policy.head(flat)
    want = want.numpy().reshape(steps, batch, -1)
    assert got.shape == (steps, batch, c.perception_size)
    np.testing.assert_allclose(got, want, rtol=0, atol=1e-5)
    assert want.std() > 1e-2                  # features that vary: the comparison means something


def test_a_graph_without_the_features_output_fails_the_comparison():
    policy = _perturbed(dict(core='cfc'))
    _, run = _session(policy)
    rng = np.random.default_rng(0)
    images = rng.random((2, 1, 3, 64, 128), dtype=np.float32)
    imu = rng.normal(size=(2, 1, 6)).astype(np.float32)
    dt = np.full((2, 1), 0.033, np.float32)

    def legacy(*args):
        return run(*args)[:4]
    with pytest.raises(InputError, match='onnx outputs'):
        compare_step_with_torch(policy, legacy, images, imu, dt)

    def wrong_features(*args):
        *rest, features = run(*args)
        return (*rest, features + 1e-3)
    assert compare_step_with_torch(policy, wrong_features, images, imu, dt) == pytest.approx(1e-3, rel=1e-2)
