"""The OOD monitor on the perception features (source 'features') at run time: what the backends hand
out (torch and ONNX Runtime, current and older exports) and the Controller scoring and acting on it."""
import hashlib
import json
import logging
import shutil

import numpy as np
import onnx
import pytest
import torch

from liquid_controller.errors import ModelFileError
from liquid_controller.policy.policy_config import PolicyConfig
from liquid_controller.runtime import controller as C
from liquid_controller.runtime.controller import Controller, ControllerConfig, MeasuredState
from liquid_controller.runtime.model_file import create_random_model, load_model, set_ood_statistics
from liquid_controller.runtime.onnx_backend import LEGACY_OUTPUT_NAMES, load_onnx_model
from liquid_controller.runtime.onnx_export_folder import export_onnx_folder
from liquid_controller.runtime.ood import OodMonitor, fit_gaussian_monitor
from liquid_controller.runtime.policy_backend import load_runtime_model
from liquid_controller.runtime.preprocess import ImuWindow, image_to_array
from liquid_controller.runtime.torch_backend import TorchPolicyStep

PERIOD = 1.0 / 30.0
STEPPED = (C.OK, C.RESET, C.OOD_BRAKE)      # outputs a policy step made


def _road(offset, heading, rng):
    """A (64, 128, 3) uint8 camera frame of a grey road with white edge lines on grass under a sky,
    the lane ``offset`` and ``heading`` (about -1..1) moving the road, plus pixel noise."""
    h, w = 64, 128
    rows = np.arange(h)[:, None].astype(float)
    cols = np.arange(w)[None, :].astype(float)
    img = np.empty((h, w, 3))
    img[:] = (70, 140, 60)
    img[:16] = (150, 190, 230)
    y = np.clip(rows - 16, 0, None) / 48                   # 0 at the horizon, 1 at the bottom row
    centre = w / 2 + offset * 40 * y + heading * 30 * (1 - y)
    half = 6 + 50 * y
    ground = rows >= 16
    road = np.broadcast_to((np.abs(cols - centre) < half) & ground, (h, w))
    img[road] = (105, 105, 110)
    line = np.broadcast_to((np.abs(np.abs(cols - centre) - 0.9 * half) < 0.6 + 1.5 * y) & ground, (h, w))
    img[line] = (235, 235, 235)
    img += rng.normal(0, 6, img.shape)
    return np.clip(img, 0, 255).astype(np.uint8)


def _stream(steps, seed, invert=False):
    """(frame, stamp s, IMU window) at 30 Hz: the road swaying from side to side (the seed sets the
    phase and the noise); ``invert``: every frame colour-inverted (a drastically different scene)."""
    rng = np.random.default_rng(seed)
    phase = rng.uniform(0, 2 * np.pi)
    for i in range(steps):
        stamp = i * PERIOD
        frame = _road(0.5 * np.sin(phase + 0.9 * stamp), 0.4 * np.cos(phase + 0.9 * stamp), rng)
        t = stamp - PERIOD * np.array([0.75, 0.5, 0.25, 0.0])
        gyro = rng.normal(0.0, 0.2, (4, 3))
        accel = rng.normal(0.0, 0.3, (4, 3)) + np.array([0.0, 0.0, 9.81])
        yield (255 - frame if invert else frame), stamp, ImuWindow(t, gyro, accel)


def _drive(ctl, stream):
    ctl.start(now=0.0)
    return [ctl.step(f, s, w, MeasuredState(speed=float(ctl.command[0])), now=s) for f, s, w in stream]


def _vectors(outs, source):
    return np.array([o.features if source == 'features' else o.neurons for o in outs
                     if o.status in (C.OK, C.RESET)], dtype=np.float64)


def _calibrate(path, source, seeds=(0, 1, 2), steps=90):
    """Fit ``source`` statistics on the model's own steps over in-distribution streams; store them."""
    ctl = Controller(load_model(path))
    episodes = [_vectors(_drive(ctl, _stream(steps, seed)), source) for seed in seeds]
    stats = fit_gaussian_monitor(episodes, source, window=10, quantile=0.995)
    set_ood_statistics(path, stats.to_dict())
    return stats


def _random_model(root, core):
    path = root / f'{core}.json'
    create_random_model(path, PolicyConfig(core=core), name=core)
    return path


@pytest.fixture(scope='module')
def models(tmp_path_factory):
    """Random cfc and cnn models whose cards hold 'features' statistics, and their ONNX exports."""
    root = tmp_path_factory.mktemp('ood_features')
    out = {}
    for core in ('cfc', 'cnn'):
        path = _random_model(root, core)
        _calibrate(path, 'features')
        out[core] = path
        out[f'{core}_onnx'] = export_onnx_folder(load_model(path), root / f'{core}_onnx').card_path.parent
    return out


class _OneEpisode:
    """A dataset of one whole episode, items as data.dataset.SequenceDataset gives them."""

    def __init__(self, frames, imu, dt):
        self.item = {'images': torch.from_numpy(frames), 'imu': torch.from_numpy(imu),
                     'dt': torch.from_numpy(dt), 'mask': torch.ones(len(dt), dtype=torch.bool)}

    def __len__(self):
        return 1

    def __getitem__(self, i):
        return self.item


@pytest.mark.parametrize('core', ['cfc', 'ltc', 'lstm', 'cnn'])
def test_torch_backend_features_equal_the_offline_calibration(core, tmp_path):
    """The features the torch backend hands out are the vectors train/ood_calibration.collect_features
    fits the statistics on (a forward hook there), frame for frame with the state carried."""
    from liquid_controller.train.ood_calibration import collect_features
    policy = load_model(_random_model(tmp_path, core)).policy
    rng = np.random.default_rng(5)
    steps = 12
    frames = rng.integers(0, 256, (steps, 64, 128, 3), dtype=np.uint8)
    imu = rng.normal(size=(steps, 6)).astype(np.float32)
    dt = rng.uniform(0.02, 0.1, size=steps).astype(np.float32)
    offline = collect_features(policy, _OneEpisode(frames, imu, dt), 'features')[0]      # (T, F)
    stepper = TorchPolicyStep(policy)
    state, online = stepper.initial_state(), []
    for t in range(steps):
        result = stepper.step(image_to_array(frames[t], 64, 128), imu[t], float(dt[t]), state)
        state = result.state
        online.append(result.features)
    online = np.stack(online)
    assert online.dtype == np.float32 and online.shape == (steps, policy.config.perception_size)
    np.testing.assert_allclose(online, offline, rtol=0, atol=1e-6)
    assert offline.std() > 1e-3 and np.abs(np.diff(offline, axis=0)).max() > 1e-3   # frames differ


@pytest.mark.parametrize('source', ['features', 'neurons'])
def test_controller_scores_every_step_on_the_sources_vector_deterministically(source, tmp_path):
    path = _random_model(tmp_path, 'cfc')
    stats = _calibrate(path, source)
    ctl = Controller(load_model(path))
    assert ctl.ood is not None and ctl.ood.stats.source == source and not ctl.ood_unavailable
    outs = _drive(ctl, _stream(60, seed=7))                  # a seed not calibrated on
    scores = np.array([o.ood_score for o in outs])
    assert all(o.status in (C.OK, C.RESET) for o in outs) and np.isfinite(scores).all()
    assert all(o.features.shape == (32,) and o.neurons.shape == (19,) for o in outs)
    # the score is the monitor of the source's vector of the same step (not of the one before)
    vectors = _vectors(outs, source)
    offline = OodMonitor(stats)
    np.testing.assert_array_equal([offline.update(v, o.stamp) for v, o in zip(vectors, outs)], scores)
    offline.reset()
    late = [offline.update(v, o.stamp) for v, o in zip(np.roll(vectors, 1, axis=0), outs)]
    assert not np.allclose(late, scores)
    # deterministic: a fresh Controller gives the very same scores
    again = _drive(Controller(load_model(path)), _stream(60, seed=7))
    np.testing.assert_array_equal([o.ood_score for o in again], scores)


def test_features_monitor_brakes_after_ood_hold_on_an_inverted_stream(tmp_path):
    path = _random_model(tmp_path, 'cfc')
    stats = _calibrate(path, 'features')
    hold = 0.3
    ctl = Controller(load_model(path), ControllerConfig(ood_action='brake', ood_hold=hold))
    fresh = np.array([o.ood_score for o in _drive(ctl, _stream(90, seed=7))])
    assert fresh.max() < 1.0 and ctl.counters['ood_actions'] == 0     # in distribution: no action
    outs = _drive(ctl, _stream(60, seed=7, invert=True))
    scores = np.array([o.ood_score for o in outs])
    stamps = np.array([o.stamp for o in outs])
    assert np.isfinite(scores).all() and scores.min() > 2.0, scores   # far out from the first frame
    braking = [i for i, o in enumerate(outs) if o.status == C.OOD_BRAKE]
    assert braking, [o.status for o in outs]
    first = braking[0]
    assert stamps[first] >= hold - 1e-9 and stamps[first - 1] < hold   # after ood_hold, not later
    assert all(o.status in (C.OK, C.RESET) for o in outs[:first])
    assert braking == list(range(first, len(outs)))                    # it stays braking
    assert 'ood_action brake' in outs[first].reason and outs[-1].command.tolist() == [0.0, 0.0]
    assert ctl.counters['ood_actions'] == len(braking)
    # the braking outputs still carry the step's features, the very vectors scored
    assert outs[-1].features is not None and outs[-1].features.shape == (stats.dim,)


def test_neurons_monitor_still_acts_ood_action_slow(tmp_path):
    """ood_action slow with hidden-state statistics (shifted so that every state is out): the nominal
    speed is capped at ood_speed once the score stayed above 1 for ood_hold, as before."""
    path = _random_model(tmp_path, 'cfc')
    stats = _calibrate(path, 'neurons')
    shifted = stats.to_dict()
    shifted['mean'] = (stats.mean + 3.0 / np.sqrt(np.diag(stats.precision))).tolist()
    set_ood_statistics(path, shifted)
    hold = 0.2
    ctl = Controller(load_model(path), ControllerConfig(ood_action='slow', ood_hold=hold, ood_speed=0.05))
    outs = _drive(ctl, _stream(30, seed=7))
    stamps = np.array([o.stamp for o in outs])
    assert min(o.ood_score for o in outs) > 1.0
    capped = [o.nominal[0] <= 0.05 + 1e-12 for o in outs]
    assert capped == [bool(t >= hold - 1e-9) for t in stamps]
    assert max(o.nominal[0] for o in outs[:3]) > 0.05                 # the policy asks for more
    assert ctl.counters['ood_actions'] == sum(capped)


def test_blank_frames_of_the_warm_up_do_not_count(models):
    ctl = Controller(load_model(models['cfc']), ControllerConfig(ood_action='brake', ood_hold=0.0))
    assert ctl.counters['ood_frames'] == 0 and np.isnan(ctl.ood.score)
    out = _drive(ctl, _stream(1, seed=7))[0]
    assert out.status == C.RESET and np.isfinite(out.ood_score)


def test_a_cnn_gets_a_features_monitor(models):
    ctl = Controller(load_model(models['cnn']))
    assert ctl.ood is not None and ctl.ood.stats.source == 'features' and ctl.ood.stats.dim == 10
    outs = _drive(ctl, _stream(20, seed=7))
    assert np.isfinite([o.ood_score for o in outs]).all()
    assert all(o.features.shape == (10,) and o.neurons.shape == (0,) for o in outs)


@pytest.mark.parametrize('core', ['cfc', 'cnn'])
def test_onnx_features_and_scores_equal_torch(models, core):
    torch_outs = _drive(Controller(load_runtime_model(models[core], 'torch')), _stream(40, seed=7))
    onnx_ctl = Controller(load_runtime_model(models[f'{core}_onnx'], 'onnx'))
    assert onnx_ctl.backend == 'onnx' and onnx_ctl.ood is not None
    onnx_outs = _drive(onnx_ctl, _stream(40, seed=7))
    assert [o.status for o in torch_outs] == [o.status for o in onnx_outs]
    np.testing.assert_allclose([o.features for o in onnx_outs], [o.features for o in torch_outs],
                               rtol=0, atol=1e-5)
    np.testing.assert_allclose([o.ood_score for o in onnx_outs], [o.ood_score for o in torch_outs],
                               rtol=1e-3, atol=1e-6)
    card = json.loads(next(models[f'{core}_onnx'].glob('*.onnx.json')).read_text())
    assert card['outputs']['features']['shape'] == ['batch', 10 if core == 'cnn' else 32]


def _legacy_copy(src, dst):
    """An export as written before the graph had its 'features' output: the output (and the node
    naming it) removed from the graph, the card's contract and graph hash to match."""
    shutil.copytree(src, dst)
    card_path = next(dst.glob('*.onnx.json'))
    card = json.loads(card_path.read_text())
    graph_path = dst / card['graph']['file']
    model = onnx.load(str(graph_path))
    outputs = [o for o in model.graph.output if o.name != 'features']
    nodes = [n for n in model.graph.node if 'features' not in n.output]
    del model.graph.output[:]
    model.graph.output.extend(outputs)
    del model.graph.node[:]
    model.graph.node.extend(nodes)
    onnx.checker.check_model(model, full_check=True)
    data = model.SerializeToString()
    graph_path.write_bytes(data)
    del card['outputs']['features']
    card['graph']['sha256'] = hashlib.sha256(data).hexdigest()
    card_path.write_text(json.dumps(card))
    return dst, card_path, card


def test_an_older_export_loads_drives_and_reports_a_features_monitor_unavailable(models, tmp_path, caplog):
    legacy, card_path, card = _legacy_copy(models['cfc_onnx'], tmp_path / 'legacy')
    model = load_onnx_model(legacy)
    assert model.policy.export_card.output_names == LEGACY_OUTPUT_NAMES
    assert not model.policy.provides_features
    step = model.policy.step(np.full((1, 3, 64, 128), 0.5, np.float32), np.zeros(6, np.float32), 0.033,
                             model.policy.initial_state())
    assert step.features is None and step.command.shape == (2,)
    with caplog.at_level(logging.WARNING, logger='liquid_controller.runtime.controller'):
        ctl = Controller(model, ControllerConfig(ood_action='brake'))
    assert ctl.ood is None and 'export the model again' in ctl.ood_unavailable
    assert 'perception features' in ctl.ood_unavailable and "'brake'" in ctl.ood_unavailable
    assert any('export the model again' in r.getMessage() for r in caplog.records)
    outs = _drive(ctl, _stream(60, seed=7, invert=True))
    assert all(np.isnan(o.ood_score) and o.features is None for o in outs)
    assert all(o.status in (C.OK, C.RESET) for o in outs)       # it drives, nothing acts
    # the same commands as the current export: only the extra output is missing
    current = _drive(Controller(load_onnx_model(models['cfc_onnx'])), _stream(60, seed=7, invert=True))
    np.testing.assert_allclose([o.command for o in outs], [o.command for o in current], rtol=0, atol=1e-7)
    # an older export of a card with hidden-state statistics keeps its monitor
    stats = fit_gaussian_monitor([_vectors(current, 'neurons')], 'neurons')
    new_card = set_ood_statistics(legacy / 'cfc.json', stats.to_dict())
    card['model_card']['card_sha256'] = new_card.card_sha256
    card_path.write_text(json.dumps(card))
    ctl = Controller(load_onnx_model(legacy))
    assert ctl.ood is not None and not ctl.ood_unavailable
    assert np.isfinite([o.ood_score for o in _drive(ctl, _stream(10, seed=7))]).all()


def test_a_features_output_of_the_wrong_width_is_refused(models, tmp_path):
    bad = tmp_path / 'bad'
    shutil.copytree(models['cfc_onnx'], bad)
    card_path = next(bad.glob('*.onnx.json'))
    card = json.loads(card_path.read_text())
    card['outputs']['features']['shape'] = ['batch', 31]
    card_path.write_text(json.dumps(card))
    with pytest.raises(ModelFileError, match='outputs.features.shape'):
        load_onnx_model(bad)
    card['outputs']['features']['shape'] = ['batch']
    card_path.write_text(json.dumps(card))
    with pytest.raises(ModelFileError, match='outputs.features.shape'):
        load_onnx_model(bad)


def test_features_statistics_of_the_wrong_size_are_refused_naming_the_field(models, tmp_path):
    for suffix in ('.json', '.safetensors'):
        shutil.copy(models['cnn'].with_suffix(suffix), tmp_path / f'cnn{suffix}')
    stats = fit_gaussian_monitor([np.random.default_rng(0).normal(size=(40, 5))], 'features')
    with pytest.raises(ModelFileError, match=r'ood\.mean=5: the cnn core hands out 10 perception features'):
        set_ood_statistics(tmp_path / 'cnn.json', stats.to_dict())
