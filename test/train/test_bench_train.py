"""The `bench train` suite runs every model type through the trainer's step and reports ratios."""
import types

import pytest


@pytest.mark.slow
def test_bench_train_quick_reports_every_core():
    from liquid_controller.tools.benchmarks import train as bench_train
    results = bench_train.run(types.SimpleNamespace(quick=True))
    assert set(results['models']) == {'cfc', 'ltc', 'lstm', 'cnn'}
    assert results['models']['cfc']['vs_cfc'] == 1.0
    assert results['models']['cfc']['liquid_neurons'] == 19 and results['models']['cnn']['liquid_neurons'] == 0
    assert all(m['finite_loss'] and m['step_ms'] > 0 for m in results['models'].values())
    assert 'LTC / CfC' in bench_train.format_table(results)
