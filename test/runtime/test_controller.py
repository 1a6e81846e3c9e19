"""The streaming Controller (ROS-free): dt handling, resets, watchdog, bad input, rate limits."""
import math

import numpy as np
import pytest
import torch

from liquid_controller.errors import InputError
from liquid_controller.runtime import controller as C
from liquid_controller.runtime.controller import Controller, ControllerConfig, MeasuredState
from liquid_controller.runtime.model_file import create_random_model, load_model
from liquid_controller.runtime.preprocess import ImuWindow, image_to_tensor, imu_features
from liquid_controller.safety.config import SafetyConfig

PERIOD = 1.0 / 30.0


@pytest.fixture(scope='module')
def model_path(tmp_path_factory):
    path = tmp_path_factory.mktemp('model') / 'rand.json'
    create_random_model(path)
    return path


@pytest.fixture()
def ctl(model_path):
    c = Controller(load_model(model_path), ControllerConfig())
    c.start(0.0)
    return c


RNG = np.random.default_rng(0)
FRAMES = [RNG.integers(0, 255, (64, 128, 3), dtype=np.uint8) for _ in range(4)]


def window(stamp, n=6, gyro_z=0.0):
    stamps = stamp - PERIOD + (np.arange(n) + 1) * PERIOD / n
    gyro = np.zeros((n, 3))
    gyro[:, 2] = gyro_z
    accel = np.tile([0.0, 0.0, 9.81], (n, 1))
    return ImuWindow(stamps, gyro, accel)


def drive(ctl, n, t0=0.0, now0=None, follow_speed=True, period=PERIOD):
    """n good frames; the measured speed follows the command (an ideal robot)."""
    outs = []
    now0 = t0 if now0 is None else now0
    for i in range(n):
        t = t0 + i * period
        speed = ctl.command[0] if follow_speed else 0.0
        outs.append(ctl.step(FRAMES[i % 4], t, window(t), MeasuredState(speed=speed),
                             now=now0 + i * period))
    return outs


def test_good_frames_give_filtered_policy_commands(ctl):
    outs = drive(ctl, 20)
    assert outs[0].status == C.RESET and outs[0].dt == pytest.approx(ctl.nominal_dt)
    for o in outs[1:]:
        assert o.status == C.OK and o.dt == pytest.approx(PERIOD)
        assert o.certificate is not None and np.isfinite(o.command).all()
        assert np.allclose(o.command, o.certificate.filtered)
        assert set(o.timings) >= {'preprocess', 'policy', 'filter', 'total'}
        assert o.neurons.shape == (19,)
    # the robot accelerated (measured speed follows the command) within the filter's accel limit
    v = np.array([o.command[0] for o in outs])
    assert v[-1] > 0.3
    assert np.all(np.diff(v) <= SafetyConfig().accel_max * PERIOD + 1e-9)


def test_dt_comes_from_stamps_and_matches_direct_policy_steps(model_path):
    ctl = Controller(load_model(model_path))
    ctl.start(0.0)
    stamps = [0.0, 0.03, 0.1, 0.13, 0.45]  # jitter, a dropped frame and a gap > max_dt (0.2)
    policy = load_model(model_path).policy
    state = policy.initial_state(1)
    expected_dts = [ctl.nominal_dt, 0.03, 0.07, 0.03, 0.2]
    for i, (t, dt) in enumerate(zip(stamps, expected_dts)):
        out = ctl.step(FRAMES[i % 4], t, window(t), MeasuredState(speed=0.0), now=t)
        assert out.dt == pytest.approx(dt)
        with torch.no_grad():
            ref, state = policy.step(image_to_tensor(FRAMES[i % 4], 64, 128),
                                     torch.from_numpy(imu_features(window(t)))[None],
                                     torch.tensor([dt], dtype=torch.float32), state)
        np.testing.assert_allclose(out.nominal, ref.command[0].numpy(), rtol=1e-5, atol=1e-6)
        np.testing.assert_allclose(out.neurons, state[0].numpy(), rtol=1e-5, atol=1e-6)


def _fresh_neurons(model_path, frame, stamp):
    c = Controller(load_model(model_path))
    c.start(0.0)
    return c.step(frame, stamp, window(stamp), MeasuredState(speed=0.0), now=0.0).neurons


def test_stamps_backwards_reset_hidden_state(ctl, model_path):
    drive(ctl, 10, t0=5.0)
    out = ctl.step(FRAMES[1], 2.0, window(2.0), MeasuredState(speed=0.0), now=1.0)
    assert out.status == C.RESET and 'backwards' in out.reason
    assert out.dt == pytest.approx(ctl.nominal_dt)
    np.testing.assert_allclose(out.neurons, _fresh_neurons(model_path, FRAMES[1], 2.0), atol=1e-6)
    assert ctl.counters['resets'] == 1
    nxt = ctl.step(FRAMES[2], 2.0 + PERIOD, window(2.0 + PERIOD), MeasuredState(speed=0.0), now=1.04)
    assert nxt.status == C.OK


def test_gap_above_threshold_resets(ctl, model_path):
    drive(ctl, 5)
    t = 5 * PERIOD + 0.8  # > reset_gap 0.5
    out = ctl.step(FRAMES[0], t, window(t), MeasuredState(speed=0.0), now=0.3)
    assert out.status == C.RESET and 'gap' in out.reason
    np.testing.assert_allclose(out.neurons, _fresh_neurons(model_path, FRAMES[0], t), atol=1e-6)


def test_repeated_stamp_dropped(ctl):
    outs = drive(ctl, 5)
    out = ctl.step(FRAMES[0], 4 * PERIOD, window(4 * PERIOD), MeasuredState(), now=0.2)
    assert out.status == C.DROPPED
    np.testing.assert_array_equal(out.command, outs[-1].command)
    np.testing.assert_array_equal(out.neurons, outs[-1].neurons)


def _braking_sequence(ctl, start_now, period=0.02, limit=200):
    outs = []
    for k in range(limit):
        out = ctl.tick(start_now + k * period)
        if out is not None:
            outs.append((start_now + k * period, out))
            if out.status == C.STOPPED and len(outs) > 3:
                break
    return outs


def test_watchdog_brakes_within_limits_then_zero_then_recovers(ctl):
    outs = drive(ctl, 40)
    last_now = 39 * PERIOD
    v0 = outs[-1].command[0]
    assert v0 > 0.5
    timeout = ctl.config.input_timeout
    assert ctl.tick(last_now + timeout - 0.01) is None  # still fresh
    seq = _braking_sequence(ctl, last_now + timeout + 0.001)
    assert seq[0][1].status == C.STALE and 'no valid camera frame' in seq[0][1].reason
    v = [v0] + [o.command[0] for _, o in seq]
    t = [last_now] + [now for now, _ in seq]
    decel = SafetyConfig().decel_max
    for i in range(1, len(v)):
        assert v[i] <= v[i - 1]  # monotone
        assert v[i - 1] - v[i] <= decel * min(t[i] - t[i - 1], ctl.config.max_dt) + 1e-9
    assert seq[-1][1].status == C.STOPPED and np.array_equal(seq[-1][1].command, [0.0, 0.0])
    # stops no later than the braking time at the limit + one watchdog period after the timeout
    assert seq[-1][0] <= last_now + timeout + v0 / decel + 0.02 + 1e-6
    # recovery: frames return
    t_back = 100.0
    rec = drive(ctl, 3, t0=t_back, now0=seq[-1][0] + 0.1)
    assert rec[0].status == C.RESET and rec[-1].status == C.OK
    assert ctl.tick(seq[-1][0] + 0.2) is None


@pytest.mark.parametrize('bad,field', [
    (dict(frame=np.zeros((48, 64, 3), np.uint8)), 'frame.shape'),
    (dict(frame=np.zeros((64, 128, 3), np.float32)), 'frame.dtype'),
    (dict(frame=np.zeros((64, 128), np.uint8)), 'frame.shape'),
    (dict(frame=None), 'frame'),
    (dict(imu=ImuWindow(np.array([0.0]), np.array([[np.nan, 0, 0]]), np.zeros((1, 3)))),
     'imu.angular_velocity'),
    (dict(imu=ImuWindow(np.array([0.0]), np.zeros((1, 3)), np.array([[0, np.inf, 0]]))),
     'imu.linear_acceleration'),
    (dict(imu=ImuWindow(np.zeros(2), np.zeros((1, 3)), np.zeros((2, 3)))), 'imu.angular_velocity.shape'),
    (dict(stamp=float('nan')), 'frame_stamp'),
    (dict(measured=MeasuredState(speed=float('nan'))), 'measured.speed'),
    (dict(measured=MeasuredState(range=float('nan'))), 'measured.range'),
])
def test_bad_input_brakes_names_reason_and_recovers(ctl, bad, field):
    outs = drive(ctl, 30)
    v_prev = outs[-1].command[0]
    t = 30 * PERIOD
    args = dict(frame=FRAMES[0], stamp=t, imu=window(t), measured=MeasuredState(speed=v_prev))
    args.update(bad)
    out = ctl.step(args['frame'], args['stamp'], args['imu'], args['measured'], now=t)
    assert out.status == C.BAD_INPUT and out.safe
    assert out.reason.startswith(field), out.reason
    assert 0.0 <= out.command[0] < v_prev and out.command[1] == 0.0 or out.command[0] == 0.0
    # more bad frames keep braking to exactly zero
    last = out
    for k in range(1, 40):
        last = ctl.step(args['frame'], args['stamp'] + k * PERIOD if field != 'frame_stamp' else
                        args['stamp'], args['imu'], args['measured'], now=t + k * PERIOD)
        assert last.safe
    assert np.array_equal(last.command, [0.0, 0.0])
    # recovery
    rec = drive(ctl, 3, t0=t + 40 * PERIOD, now0=t + 40 * PERIOD)
    assert all(not o.safe for o in rec)
    assert rec[-1].status == C.OK


def test_missing_imu_tolerated_briefly_then_bad_input(ctl):
    drive(ctl, 5)
    t = 5 * PERIOD
    out = ctl.step(FRAMES[0], t, ImuWindow.empty(), MeasuredState(speed=0.0), now=t)
    assert out.status == C.OK  # last IMU sample is 1 period old: features held
    t2 = t + 0.3  # > imu_timeout 0.25 since the last sample
    out = ctl.step(FRAMES[0], t2, ImuWindow.empty(), MeasuredState(speed=0.0), now=t2)
    assert out.status == C.BAD_INPUT and out.reason.startswith('imu')


def test_imu_not_required(model_path):
    c = Controller(load_model(model_path), ControllerConfig(require_imu=False))
    c.start(0.0)
    out = c.step(FRAMES[0], 0.0, None, None, now=0.0)
    assert not out.safe


def test_reject_and_disable(ctl):
    drive(ctl, 30)
    out = ctl.reject('image: encoding=\'yuv\': unsupported', now=30 * PERIOD)
    assert out.status == C.BAD_INPUT and 'encoding' in out.reason
    drive(ctl, 3, t0=2.0, now0=1.1)
    ctl.set_enabled(False)
    outs = drive(ctl, 40, t0=3.0, now0=1.3)
    assert all(o.status == C.DISABLED for o in outs)
    assert np.array_equal(outs[-1].command, [0.0, 0.0])
    assert ctl.tick(3.0) is not None  # watchdog keeps commanding zero while disabled
    ctl.set_enabled(True)
    assert drive(ctl, 2, t0=5.0, now0=3.1)[-1].status == C.OK


def test_rate_limit_applies_to_the_nominal_before_the_filter(model_path):
    cfg = ControllerConfig(max_linear_accel=0.3, max_angular_accel=0.5)
    c = Controller(load_model(model_path), cfg)
    c.start(0.0)
    outs = drive(c, 30)
    cmd = np.array([o.command for o in outs])
    assert np.all(np.abs(np.diff(cmd[:, 0])) <= 0.3 * PERIOD + 1e-9)
    assert np.all(np.abs(np.diff(cmd[:, 1])) <= 0.5 * PERIOD + 1e-9)
    assert np.abs(cmd[-1, 0]) <= 30 * 0.3 * PERIOD + 1e-9


def test_range_obstacle_makes_the_filter_stop(ctl):
    drive(ctl, 30)
    t = 30 * PERIOD
    outs = []
    for k in range(60):
        tk = t + k * PERIOD
        outs.append(ctl.step(FRAMES[k % 4], tk, window(tk), MeasuredState(speed=ctl.command[0],
                                                                         range=0.35), now=tk))
    cfg = SafetyConfig()
    v_allowed = math.sqrt(2 * cfg.decel_max * (0.35 - cfg.obstacle_margin))  # braking-distance bound
    assert outs[0].command[0] > v_allowed  # it was driving faster than the obstacle allows
    assert outs[-1].command[0] <= v_allowed + 1e-6
    assert outs[-1].certificate.barrier_values['obstacle'] >= -1e-9
    assert any(o.intervened for o in outs)


def test_config_validation():
    with pytest.raises(InputError, match='max_dt'):
        ControllerConfig(max_dt=1.0, reset_gap=0.5)
    with pytest.raises(InputError, match='input_timeout'):
        ControllerConfig(input_timeout=-1)
    cfg = ControllerConfig(max_dt=0.1)
    assert ControllerConfig.from_dict(cfg.to_dict()) == cfg
    with pytest.raises(InputError, match='unknown'):
        ControllerConfig.from_dict({'nope': 1})


def test_step_never_raises_on_garbage(ctl):
    garbage = [object(), 'frame', np.zeros((0, 0, 3), np.uint8), np.zeros((5000, 5000, 3), np.uint8)[:1],
               np.full((64, 128, 3), 255, np.uint8)]
    for i, g in enumerate(garbage):
        out = ctl.step(g, i * PERIOD, object(), MeasuredState(speed='x'), now=i * PERIOD)
        assert out.safe and out.reason
        assert all(math.isfinite(x) for x in out.command)


def test_model_and_safety_config_mismatch_is_refused(model_path):
    with pytest.raises(ValueError, match='barrier parameters'):
        Controller(load_model(model_path), safety_config=SafetyConfig(num_barrier_params=4))


def test_policy_exception_becomes_a_safe_stop(ctl, monkeypatch):
    drive(ctl, 5)

    def broken(*args, **kwargs):
        raise RuntimeError('boom')
    monkeypatch.setattr(ctl, '_policy_step', broken)  # stands in for an internal failure
    out = ctl.step(FRAMES[0], 5 * PERIOD, window(5 * PERIOD), MeasuredState(speed=0.0), now=0.2)
    assert out.status == C.BAD_INPUT and 'policy error' in out.reason
    monkeypatch.undo()
    rec = drive(ctl, 2, t0=6 * PERIOD, now0=0.25)
    assert rec[0].status == C.RESET and rec[-1].status == C.OK


def test_repeated_stamp_while_braking_stays_one_safe_state(ctl):
    """A camera stuck on one stamp: the watchdog brakes, and the repeated frames keep braking in the
    same state instead of flapping between 'dropped' (not safe) and 'stale' (safe)."""
    outs = drive(ctl, 10)
    t_last = 9 * PERIOD
    safe = []
    now = t_last
    for _ in range(60):          # 2 s of frames at 30 Hz, all stamped t_last, watchdog in between
        now += PERIOD / 2
        tick = ctl.tick(now)
        if tick is not None:
            safe.append(tick.safe)
        now += PERIOD / 2
        out = ctl.step(FRAMES[0], t_last, window(t_last), MeasuredState(speed=ctl.command[0]), now=now)
        safe.append(out.safe)
        assert out.command[0] <= outs[-1].command[0] + 1e-12
    flips = sum(a != b for a, b in zip(safe, safe[1:]))
    assert flips == 1 and safe[-1]            # one transition into braking, then it stays
    assert out.status == C.STOPPED or out.status == C.STALE
    assert 'frame stamp repeated' in out.reason and 'no valid camera frame' in out.reason


def test_watchdog_reason_keeps_naming_the_rejected_input(ctl):
    """While bad frames keep arriving, the watchdog's reason still names the field and value."""
    drive(ctl, 5)
    now = 5 * PERIOD
    bad = np.zeros((32, 64, 3), np.uint8)
    reasons = []
    for i in range(40):           # > input_timeout of bad frames, watchdog ticks in between
        now += PERIOD
        t = 5 * PERIOD + i * PERIOD
        reasons.append(ctl.step(bad, t, window(t), MeasuredState(speed=0.0), now=now).reason)
        tick = ctl.tick(now + PERIOD / 2)
        if tick is not None:
            reasons.append(tick.reason)
    assert all('frame.shape' in r for r in reasons), reasons
    assert any('no valid camera frame' in r for r in reasons)
    # a good frame clears the cause
    t = 5 * PERIOD + 40 * PERIOD
    ok = ctl.step(FRAMES[0], t, window(t), MeasuredState(speed=0.0), now=now + PERIOD)
    assert not ok.safe and 'frame.shape' not in ctl._stale_reason(1.0)


def test_controller_counts_statuses_and_interventions_once(ctl):
    outs = drive(ctl, 12)
    ctl.tick(12 * PERIOD + 1.0)                  # one stale tick
    assert ctl.status_counts.get('ok', 0) + ctl.status_counts.get('reset', 0) == 12
    assert sum(ctl.status_counts.values()) == 13
    assert ctl.counters['interventions'] == sum(o.intervened for o in outs)
    assert ctl.intervention_rate() == pytest.approx(ctl.counters['interventions'] / 12)
