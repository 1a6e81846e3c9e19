"""Bag paths that are not one bag get distinct one-line errors naming the path (empty folder, not a
bag, a folder of bags); `replay` replays every bag of a folder of bags; a wrong topic is reported
without a metrics block of NaN."""
import shutil
from pathlib import Path

import pytest

from liquid_controller.cli import main
from liquid_controller.data.bag import BagReader
from liquid_controller.errors import BagError

SCENARIO = Path(__file__).resolve().parents[1] / 'bags' / 'summer_lane'
BAG, MODEL = SCENARIO / 'bag', SCENARIO / 'model.json'


def _one_error_line(capsys, command, *needles):
    captured = capsys.readouterr()
    err = captured.err.strip()
    assert 'Traceback' not in err
    assert len(err.splitlines()) == 1, err
    assert err.startswith(f'liquid-controller {command}: error: '), err
    for needle in needles:
        assert needle in err, err
    return captured


@pytest.fixture
def folder_of_bags(tmp_path):
    root = tmp_path / 'bags'
    for name in ('a', 'sub/b'):
        shutil.copytree(BAG, root / name)
    return root


def _not_bags(tmp_path):
    empty = tmp_path / 'empty'
    empty.mkdir()
    other = tmp_path / 'other'
    other.mkdir()
    (other / 'notes.txt').write_text('hello')
    return empty, other


def test_reader_names_the_kind_of_folder(tmp_path, folder_of_bags):
    empty, other = _not_bags(tmp_path)
    with pytest.raises(BagError, match='empty folder') as info:
        BagReader(empty)
    assert str(empty) in str(info.value)
    with pytest.raises(BagError, match=r'not a rosbag2 bag \(no metadata.yaml and no .mcap/.db3 file\)'):
        BagReader(other)
    with pytest.raises(BagError, match=r'a folder of 2 bags: pass one of them \(a, sub/b\)'):
        BagReader(folder_of_bags)


@pytest.mark.parametrize('kind, needle', [
    ('empty', 'empty folder'),
    ('other', 'not a rosbag2 bag (no metadata.yaml and no .mcap/.db3 file)')])
def test_replay_not_a_bag(kind, needle, tmp_path, capsys):
    path = dict(zip(('empty', 'other'), _not_bags(tmp_path)))[kind]
    assert main(['replay', str(path), '--model', str(MODEL), '--quiet']) == 1
    captured = _one_error_line(capsys, 'replay', str(path), needle)
    assert 'corrupt' not in captured.err and captured.out == ''


def test_play_folder_of_bags_lists_them(folder_of_bags, capsys):
    assert main(['play', str(folder_of_bags)]) == 1
    _one_error_line(capsys, 'play', str(folder_of_bags), 'a folder of 2 bags: pass one of them (a, sub/b)')


def test_replay_folder_of_bags_replays_each(folder_of_bags, tmp_path, capsys):
    out = tmp_path / 'out'
    code = main(['replay', str(folder_of_bags), '--model', str(MODEL), '--quiet', '--max-frames', '3',
                 '--out', str(out), '--metrics-json', str(tmp_path / 'm.json')])
    captured = capsys.readouterr()
    assert code == 0, captured.err
    assert captured.out.count('time budget per frame') == 2
    assert 'replayed 2 bags: 2 ok, 0 failed' in captured.out
    with BagReader(out / 'a') as a, BagReader(out / 'sub' / 'b') as b:
        assert a.topics and b.topics
    import json
    metrics = json.loads((tmp_path / 'm.json').read_text())
    assert sorted(metrics) == [str(folder_of_bags / 'a'), str(folder_of_bags / 'sub' / 'b')]
    assert all(m['frames'] == 3 for m in metrics.values())


def test_replay_folder_of_bags_fails_when_one_fails(folder_of_bags, capsys):
    (folder_of_bags / 'sub' / 'b' / 'metadata.yaml').write_text('rosbag2_bagfile_information: [garbage')
    code = main(['replay', str(folder_of_bags), '--model', str(MODEL), '--quiet', '--max-frames', '3'])
    captured = capsys.readouterr()
    assert code == 1
    assert captured.out.count('time budget per frame') == 1           # bag a still replayed
    err = captured.err.strip().splitlines()
    assert len(err) == 2 and all(line.startswith('liquid-controller replay: error: ') for line in err)
    assert str(folder_of_bags / 'sub' / 'b') in err[0] and err[1].endswith('failed: sub/b')


def test_replay_folder_of_bags_refuses_golden_out(folder_of_bags, tmp_path, capsys):
    assert main(['replay', str(folder_of_bags), '--model', str(MODEL), '--quiet',
                 '--golden-out', str(tmp_path / 'g.npz')]) == 1
    _one_error_line(capsys, 'replay', '--golden-out takes one bag', 'a, sub/b')


def test_replay_wrong_topic_prints_only_the_error(tmp_path, capsys):
    code = main(['replay', str(BAG), '--model', str(MODEL), '--quiet', '--image-topic', 'nope',
                 '--metrics-json', str(tmp_path / 'm.json')])
    assert code == 1
    captured = _one_error_line(capsys, 'replay', "'nope'", str(BAG))
    assert captured.out == '' and 'nan' not in captured.out.lower()
    assert not (tmp_path / 'm.json').exists()
