"""liquid_controller.testing: the regression helpers users import for their own bags must pass on a
matching golden file and fail, saying where, on a changed one."""
import numpy as np
import pytest

from liquid_controller.data.replay import ReplayConfig, ReplayTopics
from liquid_controller.errors import InputError
from liquid_controller.testing import (Tolerance, assert_matches_golden, check_expectations, load_scenario,
                                       replay_regression)
from liquid_controller.testing.regression import COMPARED

FRAMES = 15


@pytest.fixture(scope='module')
def short(scenario, loaded_model, tmp_path_factory):
    """A 15-frame golden file for the scenario bag, made through replay_regression's update path."""
    golden = tmp_path_factory.mktemp('golden') / 'short.npz'
    config = ReplayConfig(topics=ReplayTopics(range=''), max_frames=FRAMES)
    with pytest.raises(AssertionError, match='was written'):
        replay_regression(scenario.bag, loaded_model, golden, config=config, update=True)
    return golden, config


def test_regression_passes_on_its_golden_and_the_scenario_golden(scenario, loaded_model, short, assert_golden):
    golden, config = short
    result = replay_regression(scenario.bag, loaded_model, golden, config=config,
                               expect={'frames': FRAMES, 'max_bad_input': 0})
    assert_golden(result, FRAMES)  # the committed golden (another CPU: within tolerances) on the first frames
    # its own golden was written by this run: equal to the last bit
    assert_matches_golden(result, golden, {name: Tolerance(atol=0, rtol=0) for name in COMPARED})


def test_golden_comparison_absorbs_other_cpus_but_not_real_changes(scenario, loaded_model, short):
    """Another CPU moves float32 outputs by an ulp or so (different oneDNN / BLAS kernels): within the
    scenario's tolerances. A change 10x the tolerance, or another frame's stamp, fails."""
    golden, config = short
    result = replay_regression(scenario.bag, loaded_model, golden, config=config)
    with np.load(golden) as data:
        base = {k: data[k] for k in data.files}
    tol = scenario.tolerances
    for name in COMPARED:  # every value a few float32 ulps away
        shifted = dict(base)
        value = base[name].astype(np.float32)
        for _ in range(4):
            value = np.nextafter(value, np.float32(np.inf))
        shifted[name] = value.astype(base[name].dtype)
        assert np.any(shifted[name] != base[name])
        assert_matches_golden(result, shifted, tol)
        changed = dict(base)
        changed[name] = base[name] + 10 * (tol[name]['atol'] + tol[name]['rtol'] * np.abs(base[name]))
        with pytest.raises(AssertionError, match=f'{name} differs from golden'):
            assert_matches_golden(result, changed, tol)
    stamps = dict(base, stamps=base['stamps'] + 1e-9)  # the stamp rounded another way: same frame
    assert_matches_golden(result, stamps, tol)
    stamps['stamps'] = base['stamps'] + 1e-3
    with pytest.raises(AssertionError, match='frame stamps differ from golden'):
        assert_matches_golden(result, stamps, tol)


def test_regression_fails_naming_array_frame_and_stamp(scenario, loaded_model, short):
    golden, config = short
    data = dict(np.load(golden))
    data['command'] = data['command'].copy()
    data['command'][7, 1] += 2e-3
    result = replay_regression(scenario.bag, loaded_model, golden, config=config)
    with pytest.raises(AssertionError, match=r'command differs from golden in 1 of 15 frames.*frame 7 '
                                             r'\(stamp 0\.234000 s\)'):
        assert_matches_golden(result, data)
    assert_matches_golden(result, data, {'command': {'atol': 3e-3, 'rtol': 0}})  # within tolerance
    data['status'] = np.asarray(['ok'] * FRAMES)
    with pytest.raises(AssertionError, match="status differs from golden at frame 0"):
        assert_matches_golden(result, data, {'command': Tolerance(atol=1.0)})
    with pytest.raises(AssertionError, match='frames'):
        check_expectations(result, {'frames': FRAMES + 1})
    with pytest.raises(AssertionError, match='max_abs_v'):
        check_expectations(result, {'max_abs_v': 0.01})


def test_missing_golden_is_not_created_silently(scenario, loaded_model, tmp_path, monkeypatch):
    monkeypatch.delenv('LIQUID_CONTROLLER_UPDATE_GOLDEN', raising=False)
    with pytest.raises(AssertionError, match='not found'):
        replay_regression(scenario.bag, loaded_model, tmp_path / 'g.npz',
                          config=ReplayConfig(max_frames=2))
    assert not (tmp_path / 'g.npz').exists()


def test_scenario_file_validation(tmp_path):
    (tmp_path / 'thresholds.yaml').write_text('bag: bag\ntolerance: {}\n')
    with pytest.raises(InputError, match='tolerance'):
        load_scenario(tmp_path)
    (tmp_path / 'thresholds.yaml').write_text('tolerances: {command: {atol: -1}}\n')
    with pytest.raises(InputError, match='atol'):
        load_scenario(tmp_path)
    (tmp_path / 'thresholds.yaml').write_text('tolerances: {speed: {atol: 1}}\n')
    with pytest.raises(InputError, match='speed'):
        load_scenario(tmp_path)
    with pytest.raises(InputError, match='expect'):
        check_expectations(None, {'max_speed': 1})
    assert Tolerance.from_dict(Tolerance(1e-3, 0.0).to_dict()) == Tolerance(1e-3, 0.0)
