"""`liquid-controller benchmark` through cli.main: a small real suite with the expert writes JSON and
markdown; a bad suite or model is a one-line error."""
import json

import yaml

from liquid_controller.cli import main
from liquid_controller.evaluation.benchmark import load_suite


def _tiny_suite(folder):
    shipped = load_suite()
    path, family = next((p, f) for p, f in shipped.scenes if f == 'both')
    folder.mkdir()
    (folder / 'scene.yaml').write_text(open(path).read())
    (folder / 'suite.yaml').write_text(yaml.safe_dump({
        'name': 'tiny', 'version': 1, 'episode': {'laps': 0.08, 'seconds_per_lap': 75.0},
        'scenes': [{'file': 'scene.yaml', 'family': family}]}))
    return folder


def test_benchmark_expert_on_a_small_suite(tmp_path, capsys):
    suite = _tiny_suite(tmp_path / 'suite')
    assert main(['benchmark', '--models', 'expert', '--suite', str(suite), '--episodes-per-scene', '2',
                 '--workers', '2',
                 '--out', str(tmp_path / 'out'), '--quiet']) == 0
    out = capsys.readouterr().out
    assert '| expert | n/a | 2 | 100.0 ± 0.0 (n=2) | 2/2 |' in out
    data = json.loads((tmp_path / 'out' / 'benchmark.json').read_text())
    assert data['suite']['name'] == 'tiny' and data['config']['episodes_per_scene'] == 2
    assert (tmp_path / 'out' / 'benchmark.md').read_text().startswith('Suite `tiny`')


def test_benchmark_bad_inputs_are_one_line_errors(tmp_path, capsys):
    assert main(['benchmark', '--models', 'expert', '--suite', str(tmp_path), '--out', str(tmp_path / 'o')]) == 1
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and 'benchmark: error:' in err and 'suite.yaml' in err
    suite = _tiny_suite(tmp_path / 'suite')
    assert main(['benchmark', '--models', 'models/nope.json', '--suite', str(suite),
                 '--out', str(tmp_path / 'o2')]) == 1
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and 'nope' in err
