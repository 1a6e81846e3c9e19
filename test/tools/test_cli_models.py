"""Bare model names through cli.main: ./NAME.json, ./models/NAME.json, then the package's models/ and
models/baselines/; a name found nowhere lists where it was looked for."""
from pathlib import Path

import pytest

from liquid_controller.cli import main
from liquid_controller.runtime.model_file import resolve_model_paths


def _evaluate(name, out):
    return main(['evaluate', '--model', name, '--scenes', 'summer', '--max-seconds', '0.3', '--no-plots',
                 '--quiet', '--out', str(out)])


def test_evaluate_finds_a_bare_name_in_the_current_folders_models(tmp_path, monkeypatch, capsys):
    from liquid_controller.runtime.model_file import create_random_model
    monkeypatch.chdir(tmp_path)
    create_random_model(tmp_path / 'models' / 'cfc_small')
    assert _evaluate('cfc_small', tmp_path / 'eval') == 0, capsys.readouterr().err
    assert (tmp_path / 'eval' / 'evaluation.json').is_file()


def test_a_name_found_nowhere_lists_where_it_looked(tmp_path, monkeypatch, capsys):
    from liquid_controller.paths import models_dir
    monkeypatch.chdir(tmp_path)
    assert _evaluate('no_such_model', tmp_path / 'eval') == 1
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and 'Traceback' not in err
    for place in ('no_such_model.json', str(Path('models') / 'no_such_model.json'),
                  str(models_dir() / 'no_such_model.json'),
                  str(models_dir() / 'baselines' / 'no_such_model.json')):
        assert place in err


def test_lookup_order(tmp_path, monkeypatch):
    from liquid_controller.paths import models_dir
    monkeypatch.chdir(tmp_path)
    assert resolve_model_paths('lstm') == models_dir() / 'baselines' / 'lstm.json'
    assert resolve_model_paths('cfc') == models_dir() / 'cfc.json'
    (tmp_path / 'models').mkdir()
    (tmp_path / 'models' / 'cfc.json').write_text('{}')
    assert resolve_model_paths('cfc') == Path('models') / 'cfc.json'
    (tmp_path / 'cfc.json').write_text('{}')
    assert resolve_model_paths('cfc') == Path('cfc.json')
    assert resolve_model_paths('cfc.safetensors') == Path('cfc.json')
    # a path with a folder is taken as it is; an explicit models_dir is not searched beyond
    assert resolve_model_paths('elsewhere/cfc') == Path('elsewhere/cfc.json')
    assert resolve_model_paths('x', models_dir=tmp_path / 'd') == tmp_path / 'd' / 'x.json'
    with pytest.raises(Exception, match='looked in'):
        resolve_model_paths('missing')
