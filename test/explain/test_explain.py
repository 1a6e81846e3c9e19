"""The analysis pipeline (liquid_controller/explain/analysis.py): decision trees on known rules, running
models over a real (tiny) rosbag2 bag through the runtime Controller, and one short simulator run."""
import numpy as np
import pytest
import torch

from liquid_controller.errors import InputError
from liquid_controller.runtime.model_file import load_model
from liquid_controller.explain import analysis as ex

torch.set_num_threads(1)


# ------------------------------------------------------------------------------------- decision trees
def _neurons(n=600, f=6, seed=0):
    rng = np.random.default_rng(seed)
    return rng.uniform(-1, 1, (n, f)), [f'n{i}' for i in range(f)]


def test_tree_recovers_a_known_threshold_rule():
    x, names = _neurons()
    y = np.where(x[:, 3] > 0.2, 1.0, -1.0)                  # w = +1 if n3 > 0.2 else -1
    fit = ex.fit_tree(x, y, names, max_leaves=2)
    assert fit.leaves == 2
    assert fit.r2_test > 0.99 and fit.r2_train == pytest.approx(1.0)
    assert 'n3' in fit.rules and '0.2' in fit.rules
    assert not any(f'n{i}' in fit.rules for i in (0, 1, 2, 4, 5))
    assert abs(fit.tree.tree_.threshold[0] - 0.2) < 0.02
    assert sorted(np.round(fit.tree.tree_.value.ravel()[1:], 3)) == [-1.0, 1.0]


def test_tree_recovers_a_two_neuron_rule_and_fidelity_grows_with_size():
    x, names = _neurons(seed=1)
    y = np.where(x[:, 1] < -0.3, -0.5, np.where(x[:, 4] > 0.5, 1.0, 0.25))
    fit = ex.fit_tree(x, y, names, max_leaves=3)
    assert fit.r2_test > 0.99
    assert 'n1' in fit.rules and 'n4' in fit.rules and '-0.3' in fit.rules and '0.5' in fit.rules
    smooth = np.sin(2.0 * x[:, 2]) + 0.5 * x[:, 0]
    curve = ex.fidelity_curve(x, smooth, names, leaf_counts=(2, 4, 16, 64))
    r2 = [c['r2_test'] for c in curve]
    assert r2 == sorted(r2) and r2[-1] > 0.95 and r2[0] < 0.8
    assert [c['leaves'] for c in curve] == [2, 4, 16, 64]


def test_tree_holdout_and_bad_input():
    x, names = _neurons(n=100)
    y = x[:, 0]
    blocks = ex.fit_tree(x, y, names, holdout='blocks')
    tail = ex.fit_tree(x, y, names, holdout='tail')
    assert blocks.n_test == tail.n_test == 30 and blocks.n_train == 70
    assert np.isnan(ex.fit_tree(x, np.ones(100), names).r2_test)   # constant target: undefined, not 1
    with pytest.raises(InputError, match='max_leaves'):
        ex.fit_tree(x, y, names, max_leaves=1)
    with pytest.raises(InputError, match='feature_names'):
        ex.fit_tree(x, y, names[:2])
    bad = x.copy()
    bad[3, 1] = np.nan
    with pytest.raises(InputError):
        ex.fit_tree(bad, y, names)
    with pytest.raises(InputError, match='holdout'):
        ex.fit_tree(x, y, names, holdout='random')


# ------------------------------------------------------------------------------- runs over a real bag
@pytest.fixture(scope='module')
def cfc_trace(model_dir, tiny_bag):
    model = load_model(model_dir / 'cfc.json')
    return model, ex.run_bag(model, tiny_bag)


def test_bag_run_records_what_the_network_did(cfc_trace):
    model, trace = cfc_trace
    policy = model.policy
    assert len(trace) == 60                                  # every frame of the bag produced a step
    assert trace.neurons.shape == (60, 19) and np.isfinite(trace.neurons).all()
    assert trace.frames.shape == (60, 16, 32, 3)
    assert trace.road_masks is None and trace.truth.shape == (60, 2)
    assert (np.diff(trace.stamps) > 0).all()
    # the trace is consistent: stepping the policy from the recorded state, image, IMU and dt gives
    # the recorded neurons and command (the Controller's own computation, reproduced)
    for i in (0, 1, 30, 59):
        img = torch.from_numpy(trace.frames[i]).permute(2, 0, 1)[None].float() / 255.0
        with torch.no_grad():
            out, state = policy.step(img, torch.from_numpy(trace.imu[i])[None], float(trace.dt[i]),
                                     torch.from_numpy(trace.state_before[i])[None])
        np.testing.assert_allclose(state[0].numpy(), trace.neurons[i], atol=1e-5)
        np.testing.assert_allclose(out.command[0].numpy(), trace.nominal[i], atol=1e-5)
    # the bag's IMU has gyro z ramping up: the features the network saw follow it
    assert trace.imu[-1, 2] > trace.imu[1, 2] > 0


def test_activity_groups_label_every_neuron(cfc_trace):
    model, trace = cfc_trace
    groups = ex.activity_groups(model.policy, trace)
    assert list(groups) == ['sensory', 'inter', 'command', 'motor']
    # Issue 16 item 10: the names the node publishes on ~/neurons and replay writes into its bags
    # (motor0.., command0.., inter0..), not n<id>, and each group in its own rank order.
    from liquid_controller.messages.diagnostics import neuron_labels
    node_names = neuron_labels(model.policy.neuron_groups(), trace.neurons.shape[1])
    wiring = model.policy.neuron_groups()
    for g in ('inter', 'command', 'motor'):
        assert groups[g][1] == [node_names[i] for i in wiring[g]]
        assert groups[g][1] == [f'{g}{j}' for j in range(len(wiring[g]))]
    assert groups['motor'][1] == ['motor0', 'motor1']
    assert sum(len(groups[g][1]) for g in ('inter', 'command', 'motor')) == 19
    x, names = groups['sensory']
    assert x.shape == (60, 32 + 6) and names[-1] == 'accel_z'
    x, names = ex.tree_features(model.policy, trace, include_inputs=('gyro_z',))
    assert names[:-1] == groups['command'][1] and names[-1] == 'gyro_z'
    np.testing.assert_array_equal(x[:, -1], groups['sensory'][0][:, 32 + 2])
    with pytest.raises(InputError, match='include_inputs'):
        ex.tree_features(model.policy, trace, include_inputs=('compass',))


def test_attention_metrics_on_bag_frames(cfc_trace):
    model, trace = cfc_trace
    a = ex.attention_metrics(model.policy, trace, max_frames=4)
    assert a['frames'] == 4 and np.isnan(a['attention_on_road'])   # no road mask in a bag
    assert 0.0 < a['saliency_ssim'] <= 1.0
    big = ex.attention_metrics(model.policy, trace, max_frames=4, noise_std=0.3)
    assert big['saliency_ssim'] < a['saliency_ssim']         # more noise, less stable


def test_html_report_from_a_tiny_model_and_bag(model_dir, tiny_bag, tmp_path):
    import base64
    import json
    import re
    result = ex.run_explanation(model_dir / 'cfc.json', tmp_path, bag=tiny_bag,
                                baseline=model_dir / 'lstm.json', max_leaves=4, leaf_counts=(2, 4),
                                attention_frames=2)
    html = (tmp_path / 'report.html').read_text()
    for section in ('summary', 'attention', 'neurons', 'tree', 'fidelity', 'comparison'):
        assert f'id="{section}"' in html
    assert 'tiny_cfc' in html and 'tiny_lstm' in html and 'UNTRAINED' in html
    uris = re.findall(r'src="data:image/png;base64,([A-Za-z0-9+/=]+)"', html)
    assert len(uris) >= 6                                    # attention, neurons, tree, fidelity + baseline
    assert all(base64.b64decode(u).startswith(b'\x89PNG') for u in uris)
    assert 'http://' not in html and 'https://' not in html and '<script' not in html
    assert html.count('src=') == len(uris)                   # nothing loaded from outside the file
    assert result.tree['leaves'] <= 4 and 'command' in result.tree['rules']
    assert any(name in result.tree['rules'] for name in result.tree['feature_names'])
    summary = json.loads((tmp_path / 'summary.json').read_text())
    assert summary['baseline']['tree']['feature_names'][0] == 'hidden0'   # as the node names LSTM states
    # held-out R^2 values come with what they mean, the hold-out in words (not "blocks stretches")
    assert 'blocks stretches' not in html
    assert summary['tree']['r2_comment'] and summary['tree']['speed_r2_comment']
    assert f"held out: {summary['tree']['holdout_text']}" in html
    assert html.count(summary['tree']['speed_r2_comment'].split(':')[0] + ':') >= 1
    assert [f['max_leaves'] for f in summary['fidelity']] == [2, 4]


def test_explain_command(model_dir, tiny_bag, tmp_path, capsys):
    from liquid_controller.cli import main
    rc = main(['explain', '--model', str(model_dir / 'cfc.json'), '--bag', str(tiny_bag), '--out',
               str(tmp_path / 'out'), '--no-sim', '--max-leaves', '3', '--attention-frames', '2', '--quiet'])
    out = capsys.readouterr().out
    assert rc == 0
    assert 'steering tree' in out and '|---' in out and 'fidelity vs size' in out
    assert (tmp_path / 'out' / 'report.html').is_file()
    rc = main(['explain', '--model', str(tmp_path / 'missing.json'), '--bag', str(tiny_bag), '--no-sim',
               '--out', str(tmp_path / 'x')])
    err = capsys.readouterr().err
    assert rc == 1 and 'missing.json' in err and err.startswith('liquid-controller explain: error: ')


# ----------------------------------------------------------------------------------- simulator run
def test_sim_run_gives_road_masks_and_table_columns(model_dir):
    model = load_model(model_dir / 'cfc.json')
    trace = ex.run_sim(model, scene='summer', seconds=0.3, seed=0)
    assert len(trace) == 10 and trace.road_masks.shape == (10, 16, 32)   # frames at 0, 1/30, ..., 0.3 s
    frac = trace.road_masks.mean()
    assert 0.05 < frac < 0.95                                # the lane is in view, not the whole image
    cols = ex.attention_metrics(model.policy, trace, max_frames=10)
    assert cols['frames'] == 10
    assert 0.0 <= cols['attention_on_road'] <= 1.0 and 0.0 < cols['saliency_ssim'] <= 1.0
    assert cols['road_pixel_fraction'] == pytest.approx(frac)
    # the expert drove: the car stayed in its lane and the truth rows are the simulator's
    assert np.abs(trace.truth[:, 0]).max() < 0.2


def test_frame_attention_matches_the_trace_measures(cfc_trace):
    model, trace = cfc_trace
    mask = np.zeros((16, 32), bool)
    mask[8:] = True
    one = ex.frame_attention(model.policy, trace.frames[5], mask)
    m = ex.saliency_map(model.policy, trace, 5)
    assert one['attention_on_road'] == pytest.approx(m[8:].sum() / m.sum())
    assert 0.0 < one['saliency_ssim'] <= 1.0
    assert np.isnan(ex.frame_attention(model.policy, trace.frames[5])['attention_on_road'])
    with pytest.raises(InputError, match='method'):
        ex.frame_attention(model.policy, trace.frames[5], method='occlusion')


# ------------------------------------------------------------------- report readability (issue 16)
def test_r2_comment_says_what_a_low_fidelity_means():
    low = ex.r2_comment(0.11)
    assert low.startswith('low') and '11%' in low and 'rough tendencies' in low
    assert ex.r2_comment(0.95).startswith('high')
    assert ex.r2_comment(0.6).startswith('moderate')
    assert ex.r2_comment(-0.4).startswith('worse than predicting the mean')
    assert ex.r2_comment(float('nan')).startswith('undefined')


def test_short_run_reports_the_hold_out_actually_used():
    rng = np.random.default_rng(0)
    x = rng.normal(size=(30, 3))            # < 40 frames: _split holds out the tail, not blocks
    fit = ex.fit_tree(x, x[:, 0], ['a', 'b', 'c'], max_leaves=4)
    assert fit.holdout == 'tail' and fit.to_dict()['holdout_text'] == ex.HOLDOUT_TEXT['tail']


def test_tree_diagram_fits_a_page_and_the_text_export_has_the_whole_tree(tmp_path):
    from PIL import Image
    rng = np.random.default_rng(1)
    x = rng.normal(size=(400, 6))
    y = np.sin(3 * x[:, 0]) + np.cos(2 * x[:, 1]) * x[:, 2]
    fit = ex.fit_tree(x, y, [f'command{i}' for i in range(6)], max_leaves=16)
    assert fit.tree.get_depth() > ex.TREE_DIAGRAM_DEPTH        # deep enough to need cutting
    path = ex.plot_tree(fit, tmp_path / 'tree.png')
    with Image.open(path) as img:
        assert img.width <= 1100                               # was 2300 px for 16 leaves
    text = (tmp_path / 'tree.txt').read_text()
    assert fit.rules in text and 'held-out R^2' in text
    assert text.count('value:') == fit.leaves                   # every leaf, not only the drawn levels
    with pytest.raises(InputError, match='max_depth'):
        ex.plot_tree(fit, tmp_path / 'bad.png', max_depth=0)


def test_attention_png_has_column_labels(cfc_trace, tmp_path):
    from PIL import Image
    model, trace = cfc_trace
    path = ex.save_attention_examples(model.policy, trace, tmp_path / 'attention.png', count=2, samples=2)
    with Image.open(path) as img:
        pixels = np.asarray(img.convert('L'))
    header = pixels[:ex.ATTENTION_HEADER_PX]
    tile = pixels.shape[1] // 3                                # bag trace: frame, VisualBackProp, SmoothGrad
    for column in range(3):
        part = header[:, column * tile:(column + 1) * tile]
        assert (part < 100).sum() > 20, f'column {column} has no label'   # dark text on the white band
    assert (header > 250).mean() > 0.7                          # a white band, not image content
