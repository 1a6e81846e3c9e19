"""Fixtures for the replay tests: the committed summer_lane scenario.

Stored float goldens (golden.npz) are compared only through the tolerances of thresholds.yaml
(liquid_controller.testing.assert_matches_golden / the ``assert_golden`` fixture): another CPU picks other
oneDNN / BLAS kernels and moves float32 outputs by an ulp. Bit-for-bit comparisons are only between
results of this run, e.g. an edited bag's replay vs ``reference`` (the committed bag replayed here).
``make test`` runs these tests a second time with ONEDNN_MAX_CPU_ISA=AVX2 OPENBLAS_CORETYPE=Haswell.

test/conftest.py isolates ROS (domain from the pid, localhost discovery, private log dir) and provides
the ``rclpy_context`` fixture.
"""
from pathlib import Path

import pytest

SCENARIO = Path(__file__).resolve().parents[1] / 'bags' / 'summer_lane'


@pytest.fixture(scope='session')
def scenario():
    from liquid_controller.testing import load_scenario
    return load_scenario(SCENARIO)


@pytest.fixture(scope='session')
def loaded_model(scenario):
    """The scenario's model, loaded once (replay_bag accepts a LoadedModel)."""
    from liquid_controller.runtime.model_file import load_model
    return load_model(scenario.model)


@pytest.fixture(scope='session')
def golden(scenario):
    """The committed golden arrays: compare them through ``assert_golden`` only."""
    import numpy as np
    with np.load(scenario.golden) as data:
        return {k: data[k] for k in data.files}


@pytest.fixture(scope='session')
def assert_golden(scenario, golden):
    """assert_golden(result, frames=None): result (a ReplayResult or a mapping of its arrays) matches the
    committed golden (its first ``frames`` frames) within thresholds.yaml's tolerances."""
    from liquid_controller.testing import assert_matches_golden

    def check(result, frames=None):
        expected = golden if frames is None else {k: v[:frames] for k, v in golden.items()}
        assert_matches_golden(result, expected, scenario.tolerances, statuses_equal=scenario.statuses_equal)
    return check


@pytest.fixture(scope='session')
def reference(scenario, loaded_model):
    """The committed bag replayed in this run (test_replay.py checks it against the golden, within
    tolerances): replays of edited bags must equal it to the last bit, which holds on every CPU."""
    from liquid_controller.data.replay import replay_bag
    return replay_bag(scenario.bag, loaded_model, config=scenario.replay_config())


@pytest.fixture(scope='session')
def assert_reference(reference):
    """assert_reference(result, frames=None): bit for bit equal to ``reference`` (its first ``frames``
    frames): both computed in this process with the same kernels."""
    import numpy as np

    def check(result, frames=None):
        n = reference.frames if frames is None else frames
        assert result.frames >= n
        for name in ('stamps', 'command', 'nominal', 'neurons'):
            np.testing.assert_array_equal(getattr(result, name)[:n], getattr(reference, name)[:n],
                                          err_msg=f'{name} differs from the reference replay of this run')
        assert result.status[:n] == reference.status[:n]
    return check
