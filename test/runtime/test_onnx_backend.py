"""The onnx backend: an exported graph drives the Controller like the torch policy, torch-free.

The subprocess test blocks every import of torch (test/runtime/torch_free_run.py) and drives the
Controller, a replay of test/bags/summer_lane and a short closed-loop evaluation with ``backend: auto``;
the commands must equal the torch backend's within 1e-5 (closed-loop episode metrics within 1e-3).
"""
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from liquid_controller.errors import InputError, ModelFileError
from liquid_controller.runtime.controller import Controller, MeasuredState
from liquid_controller.runtime.model_file import load_model
from liquid_controller.runtime.onnx_backend import load_onnx_model, resolve_export_card
from liquid_controller.runtime.onnx_export_folder import ExportError, export_onnx_folder
from liquid_controller.runtime.policy_backend import load_runtime_model, resolve_backend
from liquid_controller.runtime.settings import Settings

sys.path.insert(0, str(Path(__file__).resolve().parent))
from onnx_inputs import synthetic_inputs  # noqa: E402

HERE = Path(__file__).resolve().parent
ROOT = HERE.parents[1]
BAG = ROOT / 'test' / 'bags' / 'summer_lane' / 'bag'
EVAL_SECONDS = 3.0
TOL = 1e-5


@pytest.fixture(scope='module')
def exports(tmp_path_factory):
    """ONNX exports of the shipped cfc model and the cnn baseline (state size 0)."""
    root = tmp_path_factory.mktemp('onnx_exports')
    out = {}
    for name in ('cfc', 'cnn'):
        result = export_onnx_folder(load_model(name), root / name)
        assert result.max_abs_diff <= TOL
        out[name] = root / name
    return out


def drive(model, settings=None):
    settings = settings or Settings()
    ctl = Controller(model, settings.controller_config(), settings.safety_config())
    ctl.start(now=0.0)
    outs = [ctl.step(f, s, w, MeasuredState(speed=v), now=s) for f, s, w, v in synthetic_inputs()]
    return ctl, outs


@pytest.mark.parametrize('name', ['cfc', 'cnn'])
def test_onnx_controller_gives_the_torch_commands(exports, name):
    torch_ctl, torch_out = drive(load_runtime_model(name, 'torch'))
    onnx_ctl, onnx_out = drive(load_runtime_model(exports[name], 'onnx'))
    assert (torch_ctl.backend, onnx_ctl.backend) == ('torch', 'onnx')
    assert [o.status for o in torch_out] == [o.status for o in onnx_out]
    assert 'reset' in [o.status for o in onnx_out]          # the 0.8 s gap reset the state
    for field in ('command', 'nominal', 'aux', 'barrier_params', 'neurons'):
        a = np.array([getattr(o, field) for o in torch_out], dtype=np.float64)
        b = np.array([getattr(o, field) for o in onnx_out], dtype=np.float64)
        assert a.shape == b.shape
        np.testing.assert_allclose(b, a, rtol=0, atol=TOL, err_msg=field)
    assert np.abs(np.array([o.command for o in onnx_out])).max() > 0.05   # it actually drives
    assert onnx_ctl.neuron_groups == torch_ctl.neuron_groups


def test_torch_free_process_matches_torch(exports, tmp_path):
    """Controller, bag replay and a short evaluation with torch unimportable, against torch here."""
    out = tmp_path / 'torch_free.npz'
    env = dict(os.environ)
    proc = subprocess.run([sys.executable, str(HERE / 'torch_free_run.py'), str(exports['cfc']),
                           str(out), '--replay', str(BAG), '--evaluate', str(EVAL_SECONDS)],
                          env=env, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    got = np.load(out)
    _, torch_out = drive(load_runtime_model('cfc', 'torch'))
    np.testing.assert_allclose(got['controller_command'], [o.command for o in torch_out],
                               rtol=0, atol=TOL)
    np.testing.assert_allclose(got['controller_neurons'], [o.neurons for o in torch_out],
                               rtol=0, atol=TOL)
    from liquid_controller.data.replay import replay_bag
    torch_settings = Settings({'backend': 'torch'})
    replayed = replay_bag(BAG, 'cfc', settings=torch_settings)
    assert replayed.command.shape == got['replay_command'].shape and len(replayed.command) >= 60
    np.testing.assert_allclose(got['replay_command'], replayed.command, rtol=0, atol=TOL)
    np.testing.assert_allclose(got['replay_nominal'], replayed.nominal, rtol=0, atol=TOL)
    from liquid_controller.evaluation.evaluate import ControllerDriver, EvalConfig, evaluate_driver
    report = evaluate_driver(ControllerDriver('cfc', torch_settings),
                             EvalConfig(scenes=('summer',), max_seconds=EVAL_SECONDS, plots=False),
                             progress=False)
    want = report['episodes'][0]
    have = json.loads(str(got['evaluate_record']))
    assert have['frames'] == want['frames'] and have['end_reason'] == want['end_reason']
    for key in ('laps', 'mean_abs_lateral_offset_m', 'max_abs_lateral_offset_m', 'mean_speed_mps',
                'mean_abs_heading_error_rad'):
        assert abs(have[key] - want[key]) <= 1e-3 * max(1.0, abs(want[key])), key


def test_auto_backend_and_bad_choice():
    assert resolve_backend('auto') == 'torch'          # torch is installed in the test venv
    assert resolve_backend('onnx') == 'onnx'
    with pytest.raises(InputError, match='backend'):
        resolve_backend('tensorrt')
    with pytest.raises(InputError, match='backend'):
        Settings({'backend': 'tflite'})


def test_torch_backend_loads_an_export_folder(exports):
    model = load_runtime_model(exports['cfc'], 'torch')
    assert model.backend == 'torch' and model.json_path == exports['cfc'] / 'cfc.json'


def test_onnx_backend_needs_an_export(tmp_path):
    shutil.copy(ROOT / 'models' / 'cfc.json', tmp_path / 'cfc.json')
    with pytest.raises(ModelFileError, match='liquid-controller export'):
        load_runtime_model(tmp_path / 'cfc.json', 'onnx')


def test_export_next_to_the_card_is_found(exports, tmp_path):
    for f in exports['cfc'].iterdir():
        shutil.copy(f, tmp_path / f.name)
    assert resolve_export_card(tmp_path / 'cfc.json') == tmp_path / 'cfc.onnx.json'
    assert load_onnx_model(tmp_path / 'cfc.json').backend == 'onnx'


def _copy(src, dst):
    dst.mkdir()
    for f in src.iterdir():
        shutil.copy(f, dst / f.name)
    return dst


def test_tampered_graph_or_card_is_refused(exports, tmp_path):
    bad = _copy(exports['cfc'], tmp_path / 'graph')
    data = bytearray((bad / 'cfc.onnx').read_bytes())
    data[-10] ^= 1
    (bad / 'cfc.onnx').write_bytes(bytes(data))
    with pytest.raises(ModelFileError, match='sha256'):
        load_onnx_model(bad)
    bad = _copy(exports['cfc'], tmp_path / 'card')
    card = json.loads((bad / 'cfc.onnx.json').read_text())
    card['model_card']['card_sha256'] = '0' * 64
    (bad / 'cfc.onnx.json').write_text(json.dumps(card))
    with pytest.raises(ModelFileError, match='export the model again'):
        load_onnx_model(bad)
    card['extra_key'] = 1
    (bad / 'cfc.onnx.json').write_text(json.dumps(card))
    with pytest.raises(ModelFileError, match='extra_key'):
        load_onnx_model(bad)
    card.pop('extra_key')
    card['state']['size'] = 7
    (bad / 'cfc.onnx.json').write_text(json.dumps(card))
    with pytest.raises(ModelFileError, match='state.names'):
        load_onnx_model(bad)


def test_export_refuses_an_onnx_model(exports, tmp_path):
    with pytest.raises(ExportError, match='torch'):
        export_onnx_folder(load_onnx_model(exports['cfc']), tmp_path / 'again')


def test_onnx_policy_survives_pickling(exports):
    import pickle
    model = load_onnx_model(exports['cfc'])
    clone = pickle.loads(pickle.dumps(model.policy))
    image = np.full((1, 3, 64, 128), 0.5, np.float32)
    a = model.policy.step(image, np.zeros(6, np.float32), 0.033, model.policy.initial_state())
    b = clone.step(image, np.zeros(6, np.float32), 0.033, clone.initial_state())
    np.testing.assert_array_equal(a.command, b.command)
