"""DrivingPolicy and PolicyConfig: streaming == sequence, batching, budgets, output ranges, round trips,
bad input. Small frames (24x48) keep the file fast; the budget tests use the default 64x128."""
import json
import math

import numpy as np
import pytest
import torch

from liquid_controller.errors import InputError
from liquid_controller.policy.driving_policy import (CORES, DrivingPolicy, PolicyConfig,
                                                     PolicyOutput)

torch.set_num_threads(1)

H, W = 24, 48
SMALL = dict(image_height=H, image_width=W)


def make_policy(core, **kw):
    return DrivingPolicy(PolicyConfig(core=core, **{**SMALL, **kw}))


def random_inputs(batch, steps, seed=0, imu_size=6):
    g = torch.Generator().manual_seed(seed)
    images = torch.rand(batch, steps, 3, H, W, generator=g)
    imu = torch.randn(batch, steps, imu_size, generator=g) * 2.0
    # irregular elapsed times (jitter and a dropped frame), different for every sample
    timespans = 0.02 + 0.06 * torch.rand(batch, steps, generator=g)
    return images, imu, timespans


def perturb_weights(policy, seed=3, scale=0.3):
    """Move every parameter away from its initial value (so round-trip tests compare real weights)."""
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for p in policy.parameters():
            p.add_(scale * torch.randn(p.shape, generator=g))


def assert_outputs_close(a, b, atol=1e-5):
    for name in ('command', 'barrier_params', 'aux'):
        x, y = getattr(a, name), getattr(b, name)
        assert x.shape == y.shape, name
        assert torch.allclose(x, y, atol=atol, rtol=0), (name, (x - y).abs().max())


# -------------------------------------------------------------------------------------------------
# PolicyConfig
# -------------------------------------------------------------------------------------------------
def test_config_round_trip_through_json():
    cfg = PolicyConfig(core='ltc', cfc_mode='no_gate', ltc_unfolds=4, image_height=48,
                       image_width=96, v_min=-0.5, v_max=1.5, w_max=1.0, num_barrier_params=3,
                       barrier_param_range=[0.5, 4], imu_scale=[1, 1, 1, 0.2, 0.2, 0.2], seed=7)
    d = json.loads(json.dumps(cfg.to_dict()))
    back = PolicyConfig.from_dict(d)
    assert back == cfg
    assert back.barrier_param_range == (0.5, 4.0) and isinstance(back.barrier_param_range, tuple)
    assert back.to_dict() == cfg.to_dict()


def test_config_defaults_are_the_flagship():
    cfg = PolicyConfig()
    assert (cfg.core, cfg.units, cfg.feature_size, cfg.image_height, cfg.image_width) == \
        ('cfc', 19, 32, 64, 128)
    assert cfg.imu_scale == (1.0, 1.0, 1.0, 0.1, 0.1, 0.1)
    assert PolicyConfig(imu_size=3).imu_scale == (1.0, 1.0, 1.0)


@pytest.mark.parametrize('field,value', [
    ('core', 'gru'), ('cfc_mode', 'fast'), ('ltc_unfolds', 0), ('ltc_unfolds', 2.5),
    ('image_height', 4), ('image_width', True), ('imu_size', -1), ('feature_size', 0),
    ('units', 3), ('sparsity', 0.05), ('sparsity', float('nan')), ('lstm_hidden', 0),
    ('v_max', -1.0), ('w_max', 0.0), ('w_max', float('inf')), ('num_barrier_params', -1),
    ('barrier_param_range', (0.0, 1.0)), ('barrier_param_range', (2.0, 1.0)),
    ('barrier_param_range', (1.0,)), ('aux_outputs', -2), ('seed', -1), ('imu_clip', 0.0),
    ('imu_scale', (1.0, 2.0)), ('conv_channels', ()), ('conv_channels', (8, 0)),
    ('image_normalization', 'imagenet'), ('time_scale', 0.0), ('time_scale', -30.0),
])
def test_config_rejects_bad_values_naming_field_and_value(field, value):
    with pytest.raises(InputError) as info:
        PolicyConfig(**{field: value})
    assert field in info.value.name or field in str(info.value)
    assert info.value.value == value or repr(value) in str(info.value)


def test_config_from_dict_rejects_unknown_keys():
    d = PolicyConfig().to_dict()
    d['neurons'] = 19
    with pytest.raises(InputError, match='neurons'):
        PolicyConfig.from_dict(d)
    with pytest.raises(InputError):
        PolicyConfig.from_dict(['cfc'])


# -------------------------------------------------------------------------------------------------
# Budgets and structure
# -------------------------------------------------------------------------------------------------
def test_flagship_budget_19_neurons_under_100k_parameters():
    policy = DrivingPolicy(PolicyConfig())
    assert policy.liquid_neurons == 19 <= 19
    assert policy.num_parameters() <= 100_000
    # the NCP paper's policy is about 75k parameters: we are in that class, not a toy
    assert policy.num_parameters() > 50_000


def test_baselines_are_larger_than_the_flagship():
    counts = {core: DrivingPolicy(PolicyConfig(core=core)).num_parameters() for core in CORES}
    assert counts['lstm'] > counts['cfc']
    assert counts['cnn'] > 2 * counts['cfc']
    assert counts['ltc'] <= 100_000


@pytest.mark.parametrize('core', CORES)
def test_neuron_groups_label_the_state(core):
    policy = make_policy(core)
    groups = policy.neuron_groups()
    ids = sorted(i for v in groups.values() for i in v)
    assert ids == list(range(policy.state_size))          # disjoint and covering the state
    assert policy.initial_state(2).shape == (2, policy.state_size)
    if core in ('cfc', 'ltc'):
        assert set(groups) == {'inter', 'command', 'motor'}
        assert len(groups['motor']) == 2 and policy.liquid_neurons == 19
    elif core == 'lstm':
        assert set(groups) == {'hidden', 'cell'} and policy.liquid_neurons == 0
    else:
        assert groups == {} and policy.state_size == 0 and policy.liquid_neurons == 0


# -------------------------------------------------------------------------------------------------
# Streaming, sequences, batching
# -------------------------------------------------------------------------------------------------
@pytest.mark.parametrize('core', CORES)
def test_step_by_step_equals_sequence_forward(core):
    policy = make_policy(core)
    perturb_weights(policy, scale=0.1)
    images, imu, timespans = random_inputs(2, 6)
    seq, final = policy(images, imu, timespans)                 # with autograd (training path)
    assert seq.command.shape == (2, 6, 2)
    state = policy.initial_state(2)
    steps = []
    with torch.no_grad():                                       # inference path (runtime)
        for t in range(6):
            out, state = policy.step(images[:, t], imu[:, t], timespans[:, t], state)
            steps.append(out)
    stacked = PolicyOutput(*(torch.stack([getattr(o, n) for o in steps], dim=1)
                             for n in ('command', 'barrier_params', 'aux')))
    assert_outputs_close(stacked, seq.detach())
    assert torch.allclose(state, final.detach(), atol=1e-5)
    # continuing a sequence from a returned state equals running it in one piece
    first, mid = policy(images[:, :3], imu[:, :3], timespans[:, :3])
    second, end = policy(images[:, 3:], imu[:, 3:], timespans[:, 3:], mid)
    assert torch.allclose(second.command, seq.command[:, 3:], atol=1e-5)
    assert torch.allclose(end, final, atol=1e-5)


@pytest.mark.parametrize('core', CORES)
def test_batched_equals_per_sample(core):
    policy = make_policy(core)
    perturb_weights(policy, scale=0.1)
    images, imu, timespans = random_inputs(3, 4, seed=5)
    start = 0.3 * torch.randn(3, policy.state_size)
    batched, final = policy(images, imu, timespans, start)
    for b in range(3):
        single, final_b = policy(images[b:b + 1], imu[b:b + 1], timespans[b:b + 1], start[b:b + 1])
        for name in ('command', 'barrier_params', 'aux'):
            assert torch.allclose(getattr(single, name)[0], getattr(batched, name)[b], atol=1e-5)
        assert torch.allclose(final_b[0], final[b], atol=1e-5)
    # the streaming (inference) path too, with a different dt per sample
    with torch.no_grad():
        step_all, state_all = policy.step(images[:, 0], imu[:, 0], timespans[:, 0], start)
        for b in range(3):
            step_b, state_b = policy.step(images[b:b + 1, 0], imu[b:b + 1, 0],
                                          timespans[b:b + 1, 0], start[b:b + 1])
            assert torch.allclose(step_b.command[0], step_all.command[b], atol=1e-5)
            assert torch.allclose(state_b[0], state_all[b], atol=1e-5)


def test_liquid_core_uses_elapsed_time_and_memory():
    policy = make_policy('cfc')
    perturb_weights(policy, scale=0.2)
    images, imu, timespans = random_inputs(1, 5, seed=2)
    a, _ = policy(images, imu, timespans)
    b, _ = policy(images, imu, timespans * 4.0)
    assert (a.command[:, 1:] - b.command[:, 1:]).abs().max() > 1e-4   # continuous time: dt matters
    with torch.no_grad():
        out0, s = policy.step(images[:, 0], imu[:, 0], 0.03)
        out1, _ = policy.step(images[:, 0], imu[:, 0], 0.03, s)
    assert (out0.command - out1.command).abs().max() > 1e-5          # state carries memory


def test_cnn_has_no_memory_and_ignores_dt():
    policy = make_policy('cnn')
    images, imu, timespans = random_inputs(2, 3, seed=4)
    a, state = policy(images, imu, timespans)
    b, _ = policy(images, imu, timespans * 10.0, state)
    assert state.shape == (2, 0)
    assert torch.equal(a.command, b.command)
    # each step depends only on its own frame
    single, _ = policy.step(images[:, 2], imu[:, 2], timespans[:, 2])
    assert torch.allclose(single.command, a.command[:, 2], atol=1e-6)


def test_state_none_is_the_reset_state_and_reset_where_resets_rows():
    policy = make_policy('cfc')
    perturb_weights(policy, scale=0.1)
    images, imu, timespans = random_inputs(2, 3, seed=6)
    a, state = policy(images, imu, timespans)
    b, _ = policy(images, imu, timespans, policy.initial_state(2))
    assert torch.equal(a.command, b.command)
    assert state.abs().sum() > 0
    reset = policy.reset_where(state, torch.tensor([True, False]))
    assert torch.equal(reset[0], torch.zeros(policy.state_size))
    assert torch.equal(reset[1], state[1])
    with pytest.raises(InputError):
        policy.reset_where(state, torch.tensor([1, 0]))


@pytest.mark.parametrize('core', CORES)
def test_forward_is_differentiable(core):
    policy = make_policy(core)
    images, imu, timespans = random_inputs(2, 3, seed=8)
    out, _ = policy(images, imu, timespans)
    loss = out.command.square().sum() + out.barrier_params.sum() + out.aux.square().sum()
    loss.backward()
    grads = {n: p.grad for n, p in policy.named_parameters()}
    assert all(g is not None and bool(torch.isfinite(g).all()) for g in grads.values())
    first_conv = [g for n, g in grads.items() if 'conv' in n and n.endswith('weight')][0]
    assert first_conv.abs().sum() > 0                                 # reaches the perception head


# -------------------------------------------------------------------------------------------------
# Output ranges
# -------------------------------------------------------------------------------------------------
EXTREME_IMAGES = {
    'black': lambda: torch.zeros(2, 3, H, W),
    'white': lambda: torch.ones(2, 3, H, W),
    'noise': lambda: torch.rand(2, 3, H, W, generator=torch.Generator().manual_seed(0)),
    'stripes': lambda: (torch.arange(W) % 2).float().expand(2, 3, H, W).clone(),
}


@pytest.mark.parametrize('core', CORES)
def test_outputs_stay_in_range_for_extreme_inputs(core):
    cfg_kw = dict(v_min=-0.4, v_max=1.3, w_max=0.7, barrier_param_range=(0.25, 3.0))
    policy = make_policy(core, **cfg_kw)
    perturb_weights(policy, scale=3.0)                     # wild weights saturate everything
    low = torch.tensor([-0.4, -0.7])
    high = torch.tensor([1.3, 0.7])
    imus = [torch.zeros(2, 6), torch.full((2, 6), 3e38), torch.full((2, 6), -3e38),
            torch.tensor([[1e30, -1e30, 0, 5, -5, 1e-30]] * 2)]
    with torch.no_grad():
        for make_image in EXTREME_IMAGES.values():
            for imu in imus:
                state = policy.initial_state(2)
                for dt in (1e-9, 0.033, 1e6, 3e38):
                    out, state = policy.step(make_image(), imu, dt, state)
                    assert bool(torch.isfinite(state).all())
                    for x in (out.command, out.barrier_params, out.aux):
                        assert bool(torch.isfinite(x).all())
                    assert bool(((out.command >= low) & (out.command <= high)).all()), out.command
                    bp = out.barrier_params
                    assert bp.shape == (2, 2)
                    assert bool(((bp >= 0.25) & (bp <= 3.0)).all()), bp


@pytest.mark.parametrize('core', CORES)
def test_command_limits_are_reachable(core):
    """The scaling is onto the whole range (the limits are not an unreachable asymptote for the
    liquid motor neurons, whose states are themselves bounded)."""
    policy = make_policy(core, v_min=0.0, v_max=1.5, w_max=0.8)
    images, imu, timespans = random_inputs(1, 2)
    for sign in (1.0, -1.0):
        with torch.no_grad():
            if core in ('cfc', 'ltc'):
                policy.motor_bias.fill_(sign * 30.0)
            else:
                policy.command_head.weight.zero_()
                policy.command_head.bias.fill_(sign * 30.0)
        out, _ = policy(images, imu, timespans)
        expected = torch.tensor([1.5, 0.8]) if sign > 0 else torch.tensor([0.0, -0.8])
        assert torch.allclose(out.command, expected.expand_as(out.command))


# -------------------------------------------------------------------------------------------------
# Seeds, rebuilding from the config, loading weights
# -------------------------------------------------------------------------------------------------
@pytest.mark.parametrize('core', CORES)
def test_same_seed_same_weights_and_global_rng_untouched(core):
    torch.manual_seed(123)
    before = torch.rand(3)
    torch.manual_seed(123)
    a = make_policy(core, seed=4)
    after = torch.rand(3)
    assert torch.equal(before, after)                    # building did not consume the global RNG
    b = make_policy(core, seed=4)
    c = make_policy(core, seed=5)
    sa, sb, sc = a.state_dict(), b.state_dict(), c.state_dict()
    assert sa.keys() == sb.keys()
    assert all(torch.equal(sa[k], sb[k]) for k in sa)
    assert any(not torch.equal(sa[k], sc[k]) for k in sa)


@pytest.mark.parametrize('core', CORES)
def test_rebuild_from_config_dict_and_load_weights_gives_identical_outputs(core):
    trained = make_policy(core, seed=11, v_min=-0.2, num_barrier_params=3)
    perturb_weights(trained, seed=9)                     # weights no seed would produce
    card = json.loads(json.dumps(trained.config.to_dict()))
    rebuilt = DrivingPolicy(PolicyConfig.from_dict(card))
    images, imu, timespans = random_inputs(2, 4, seed=12)
    before, _ = rebuilt(images, imu, timespans)
    rebuilt.load_state_dict(trained.state_dict())
    a, sa = trained(images, imu, timespans)
    b, sb = rebuilt(images, imu, timespans)
    for name in ('command', 'barrier_params', 'aux'):
        assert torch.equal(getattr(a, name), getattr(b, name))
    assert torch.equal(sa, sb)
    assert not torch.equal(before.command, a.command)    # the loaded weights made the difference


# -------------------------------------------------------------------------------------------------
# Bad input
# -------------------------------------------------------------------------------------------------
def _bad_step_cases():
    good_image = torch.rand(2, 3, H, W)
    good_imu = torch.zeros(2, 6)
    nan_image = good_image.clone()
    nan_image[1, 0, 3, 3] = float('nan')
    return [
        ('image', dict(image=(good_image * 255).to(torch.uint8))),
        ('image', dict(image=torch.rand(2, 3, W, H))),
        ('image', dict(image=torch.rand(2, 1, H, W))),
        ('image', dict(image=nan_image)),
        ('image', dict(image=good_image * 255.0)),
        ('image', dict(image=-good_image)),
        ('image', dict(image=[[0.0]])),
        ('image', dict(image=torch.rand(0, 3, H, W), imu=torch.zeros(0, 6), dt=torch.ones(0))),
        ('imu', dict(imu=torch.zeros(2, 5))),
        ('imu', dict(imu=torch.zeros(3, 6))),
        ('imu', dict(imu=torch.tensor([[0.0, 0, 0, 0, 0, float('inf')]] * 2))),
        ('imu', dict(imu=torch.zeros(2, 6, dtype=torch.int64))),
        ('dt', dict(dt=0.0)),
        ('dt', dict(dt=-0.03)),
        ('dt', dict(dt=float('nan'))),
        ('dt', dict(dt=torch.tensor([0.03, 0.0]))),
        ('dt', dict(dt=torch.tensor([0.03]))),
        ('dt', dict(dt='0.03')),
        ('state', dict(state=torch.zeros(2, 7))),
        ('state', dict(state=torch.full((2, 19), float('nan')))),
    ], good_image, good_imu


def test_bad_step_inputs_raise_input_error_naming_the_argument():
    policy = make_policy('cfc')
    cases, good_image, good_imu = _bad_step_cases()
    for name, bad in cases:
        args = dict(image=good_image, imu=good_imu, dt=0.033, state=None)
        args.update(bad)
        with pytest.raises(InputError) as info:
            policy.step(args['image'], args['imu'], args['dt'], args['state'])
        assert info.value.name == name, (name, bad, info.value)


def test_bad_sequence_inputs_raise_input_error_naming_the_argument():
    policy = make_policy('lstm')
    images, imu, timespans = random_inputs(2, 3)
    bad_ts = timespans.clone()
    bad_ts[1, 2] = -0.01
    cases = [
        ('images', dict(images=images[:, :0], imu=imu[:, :0], timespans=timespans[:, :0])),
        ('images', dict(images=images[:, :, :, :-1])),
        ('imu', dict(imu=imu[:, :2])),
        ('timespans', dict(timespans=bad_ts)),
        ('timespans', dict(timespans=timespans[:, :2])),
        ('timespans', dict(timespans=0.0)),
        ('state', dict(state=torch.zeros(2, 3))),
    ]
    for name, bad in cases:
        args = dict(images=images, imu=imu, timespans=timespans, state=None)
        args.update(bad)
        with pytest.raises(InputError) as info:
            policy(args['images'], args['imu'], args['timespans'], args['state'])
        assert info.value.name == name, (name, info.value)
    with pytest.raises(InputError) as info:
        DrivingPolicy({'core': 'cfc'})
    assert info.value.name == 'config'


def test_numpy_inputs_and_float_dt_accepted():
    policy = make_policy('cfc')
    images, imu, timespans = random_inputs(1, 1)
    with torch.no_grad():
        a, _ = policy.step(images[:, 0].numpy(), imu[:, 0].numpy().astype(np.float64), 0.04)
        b, _ = policy.step(images[:, 0], imu[:, 0], torch.tensor([0.04]))
    assert torch.allclose(a.command, b.command, atol=1e-6)
    assert math.isfinite(float(a.command[0, 0]))


@pytest.mark.parametrize('core', CORES)
def test_no_imu_no_barrier_no_aux_configuration(core):
    policy = make_policy(core, imu_size=0, num_barrier_params=0, aux_outputs=0, v_max=0.5)
    images, _, timespans = random_inputs(2, 3)
    out, state = policy(images, torch.zeros(2, 3, 0), timespans)
    assert out.command.shape == (2, 3, 2)
    assert out.barrier_params.shape == (2, 3, 0) and out.aux.shape == (2, 3, 0)
    assert state.shape == (2, policy.state_size)
    assert bool((out.command[..., 0] <= 0.5).all() and (out.command[..., 0] >= 0.0).all())


def test_summary_is_json_ready_and_describes_the_network():
    policy = make_policy('cfc')
    summary = json.loads(json.dumps(policy.summary()))
    assert summary['core'] == 'cfc' and summary['liquid_neurons'] == 19
    assert summary['num_parameters'] == policy.num_parameters()
    assert summary['neuron_groups'] == policy.neuron_groups()
    # the stored wiring is the one the cell uses: its sensory matrix covers the 32 + 6 inputs
    assert np.array(summary['wiring']['sensory_adjacency']).shape == (38, 19)
    assert make_policy('lstm').summary()['wiring'] is None


def test_core_options_reach_the_cells():
    cfc = make_policy('cfc', cfc_mode='pure')
    ltc = make_policy('ltc', ltc_unfolds=2)
    assert cfc.core.mode == 'pure' and ltc.core.ode_unfolds == 2
    images, imu, timespans = random_inputs(1, 3)
    a, _ = make_policy('ltc', ltc_unfolds=6)(images, imu, timespans)
    b, _ = ltc(images, imu, timespans)
    assert (a.command - b.command).abs().max() > 1e-6


def stripe_frames(batch, steps, seed):
    """Dark frames with one bright vertical stripe (a lane line) at a random column; target yaw rate
    proportional to the stripe's horizontal position."""
    g = torch.Generator().manual_seed(seed)
    images = 0.2 + 0.05 * torch.rand(batch, steps, 3, H, W, generator=g)
    cols = torch.randint(0, W - 4, (batch, steps), generator=g)
    for b in range(batch):
        for t in range(steps):
            images[b, t, :, :, cols[b, t]:cols[b, t] + 4] = 0.9
    target_w = 1.2 * ((cols.float() + 2.0) / W * 2.0 - 1.0)          # (B, T) rad/s
    return images, target_w


@pytest.mark.parametrize('core', CORES)
def test_policy_learns_an_image_dependent_command(core):
    """A few Adam steps fit w to where the stripe is: gradients reach every part that matters,
    through time."""
    policy = make_policy(core)
    images, target_w = stripe_frames(8, 3, seed=21)
    imu = torch.zeros(8, 3, 6)
    timespans = torch.full((8, 3), 0.033)
    opt = torch.optim.Adam(policy.parameters(), lr=3e-3)
    losses = []
    for _ in range(40):
        out, _ = policy(images, imu, timespans)
        loss = (out.command[..., 1] - target_w).square().mean()
        opt.zero_grad()
        loss.backward()
        opt.step()
        losses.append(loss.item())
    # measured: cfc, lstm, cnn end near 0.4 % of the first loss, ltc (slower to respond) near 44 %
    assert losses[-1] < 0.6 * losses[0], losses[::8]


@pytest.mark.parametrize('core', ['cfc', 'ltc', 'lstm'])
def test_time_scale_is_the_unit_of_elapsed_time(core):
    """Seconds enter the network as seconds * time_scale, in step and forward alike: halving the
    time scale and doubling the elapsed times changes nothing."""
    a = make_policy(core, time_scale=30.0)
    b = make_policy(core, time_scale=15.0)
    images, imu, timespans = random_inputs(2, 3, seed=13)
    out_a, _ = a(images, imu, timespans)
    out_b, _ = b(images, imu, timespans * 2.0)
    assert torch.allclose(out_a.command, out_b.command, atol=1e-5)
    with torch.no_grad():
        step_b, _ = b.step(images[:, 0], imu[:, 0], timespans[:, 0] * 2.0)
    assert torch.allclose(step_b.command, out_a.command[:, 0], atol=1e-5)
    c = make_policy(core, time_scale=60.0)
    out_c, _ = c(images, imu, timespans)
    assert (out_c.command - out_a.command).abs().max() > 1e-5


@pytest.mark.parametrize('core', CORES)
def test_weights_survive_a_safetensors_file(tmp_path, core):
    """Model files are safetensors (no pickle): every state-dict tensor must save as it is (the
    channels_last speed-up must not leave non-contiguous weights behind) and load back exactly."""
    from safetensors.torch import load_file, save_file
    policy = make_policy(core)
    perturb_weights(policy, seed=2)
    path = tmp_path / 'policy.safetensors'
    save_file(policy.state_dict(), str(path))
    rebuilt = DrivingPolicy(PolicyConfig.from_dict(policy.config.to_dict()))
    rebuilt.load_state_dict(load_file(str(path)))
    images, imu, timespans = random_inputs(1, 2, seed=3)
    assert torch.equal(policy(images, imu, timespans)[0].command,
                       rebuilt(images, imu, timespans)[0].command)
