"""`liquid-controller scenes generate` through cli.main: readable scene files that load, a contact
sheet, the same files for the same seed, one-line errors for bad input."""
from PIL import Image

from liquid_controller.cli import main
from liquid_controller.sim import load_scene


def _generate(out, seed='4', family='both', extra=()):
    return main(['scenes', 'generate', '--family', family, '--count', '2', '--seed', seed,
                 '--out', str(out), '--quiet', *extra])


def test_generate_writes_loadable_scenes_and_a_contact_sheet(tmp_path, capsys):
    assert _generate(tmp_path / 'a') == 0
    files = sorted((tmp_path / 'a').glob('*.yaml'))
    assert [f.name for f in files] == ['both_s4_000.yaml', 'both_s4_001.yaml']
    for f in files:
        scene = load_scene(str(f))
        assert scene.name == f.stem
        text = f.read_text()
        assert '# Made by: liquid-controller scenes generate --family both --count 2 --seed 4' in text
    sheet = Image.open(tmp_path / 'a' / 'contact_sheet.png')
    assert sheet.size == (2 * 256, 128 + 14)
    out = capsys.readouterr().out
    assert 'contact sheet' in out and 'right corners' in out


def test_same_seed_gives_the_same_files(tmp_path):
    assert _generate(tmp_path / 'a', extra=('--no-sheet',)) == 0
    assert _generate(tmp_path / 'b', extra=('--no-sheet',)) == 0
    assert _generate(tmp_path / 'c', seed='5', extra=('--no-sheet',)) == 0
    def body(path):  # the file less the line naming the output folder
        return [ln for ln in path.read_text().splitlines() if not ln.startswith('# Made by')]
    a = sorted((tmp_path / 'a').glob('*.yaml'))
    b = sorted((tmp_path / 'b').glob('*.yaml'))
    c = sorted((tmp_path / 'c').glob('*.yaml'))
    assert [body(p) for p in a] == [body(p) for p in b]
    points = lambda p: load_scene(str(p)).track.points  # noqa: E731
    assert all(points(x) != points(y) for x, y in zip(a, c))
    assert not (tmp_path / 'a' / 'contact_sheet.png').exists()


def test_bad_ranges_are_one_line_errors(tmp_path, capsys):
    assert _generate(tmp_path / 'x', family='shape', extra=('--min-radius', '4', '--max-radius', '2')) == 1
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and 'scenes: error:' in err and 'corner_radius' in err
    assert _generate(tmp_path / 'x', family='shape', extra=('--lane-width', 'wide')) == 1
    assert 'lane-width' in capsys.readouterr().err
