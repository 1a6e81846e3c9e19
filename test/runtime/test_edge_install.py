"""The edge install (`make setup-edge`: .venv-edge, no torch) drives one lap of the embedded simulator
with the onnx backend. Slow: builds the venv when it is missing (about a minute from local wheels)."""
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from liquid_controller.runtime.model_file import load_model
from liquid_controller.runtime.onnx_export_folder import export_onnx_folder

REPO = Path(__file__).resolve().parents[2]
EDGE_PYTHON = REPO / '.venv-edge' / 'bin' / 'python'


@pytest.mark.slow
def test_edge_venv_has_no_torch_and_drives_a_lap(tmp_path):
    subprocess.run(['make', 'setup-edge', f'PYTHON={sys.executable}'], cwd=REPO, check=True,
                   capture_output=True, timeout=1800)
    env = dict(os.environ, AMENT_PREFIX_PATH=str(REPO / '.venv-edge'))
    probe = subprocess.run([str(EDGE_PYTHON), '-c', 'import torch'], capture_output=True, env=env)
    assert probe.returncode != 0, 'the edge venv must not contain torch'
    export = tmp_path / 'cfc'
    export_onnx_folder(load_model('cfc'), export)
    out = tmp_path / 'lap'
    run = subprocess.run([str(EDGE_PYTHON), '-m', 'liquid_controller.cli', 'evaluate', '--model',
                          str(export), '--backend', 'onnx', '--scenes', 'summer', '--laps', '1',
                          '--no-plots', '--quiet', '--out', str(out)],
                         capture_output=True, text=True, env=env, timeout=600)
    assert run.returncode == 0, run.stderr[-3000:]
    report = json.loads((out / 'evaluation.json').read_text())
    episode = report['episodes'][0]
    assert episode['completed'] and episode['laps'] >= 1.0, episode
    assert report['model']['path'].endswith('cfc.json')
