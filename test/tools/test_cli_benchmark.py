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


def test_reports_run_apart_merge_into_one_readme_block(tmp_path, capsys):
    from liquid_controller.evaluation.results import BENCHMARK_BEGIN, BENCHMARK_END
    suite = _tiny_suite(tmp_path / 'suite')
    common = ['--suite', str(suite), '--quiet']
    assert main(['benchmark', '--models', 'expert', '--out', str(tmp_path / 'a')] + common) == 0
    assert main(['benchmark', '--models', 'models/baselines/cnn.json', '--out', str(tmp_path / 'b')]
                + common) == 0
    readme = tmp_path / 'README.md'
    readme.write_text(f'# R\n\nbefore\n{BENCHMARK_BEGIN}\nold\n{BENCHMARK_END}\nafter\n')
    capsys.readouterr()
    assert main(['benchmark', '--merge', str(tmp_path / 'a' / 'benchmark.json'),
                 str(tmp_path / 'b' / 'benchmark.json'), '--out', str(tmp_path / 'm'),
                 '--readme', str(readme)]) == 0
    merged = json.loads((tmp_path / 'm' / 'benchmark.json').read_text())
    assert [(r['model'], r['filter']) for r in merged['runs']] == [('expert', 'n/a'), ('cnn', 'on')]
    assert len(merged['commands']) == 3 and '--merge' in merged['commands'][-1]
    text = readme.read_text()
    assert text.startswith('# R\n\nbefore\n') and text.endswith(f'{BENCHMARK_END}\nafter\n')
    block = text[text.index(BENCHMARK_BEGIN):text.index(BENCHMARK_END)]
    assert 'old' not in block and '| expert | n/a | 1 |' in block and '| cnn | on | 1 |' in block
    assert all(c in block for c in merged['commands'])
    # the same report twice, or reports of other suites, are refused naming the cause
    (tmp_path / 'suite' / 'suite.yaml').write_text(
        (tmp_path / 'suite' / 'suite.yaml').read_text().replace('name: tiny', 'name: other'))
    assert main(['benchmark', '--models', 'expert', '--out', str(tmp_path / 'c')] + common) == 0
    capsys.readouterr()
    for pair, cause in (((tmp_path / 'a', tmp_path / 'a'), 'appears twice'),
                        ((tmp_path / 'a', tmp_path / 'c'), 'differs')):
        assert main(['benchmark', '--merge', *(str(p / 'benchmark.json') for p in pair),
                     '--out', str(tmp_path / 'x')]) == 1
        err = capsys.readouterr().err
        assert cause in err and len(err.strip().splitlines()) == 1
