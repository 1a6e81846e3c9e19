"""The README's results sections: one generated from a comparison JSON (``liquid-controller compare``),
one from the held-out benchmark (``liquid-controller benchmark --readme``, evaluation/benchmark.py).

:func:`results_section` renders markdown: the closed-loop table per model in the training scene and the
held-out scenes, robustness to added image noise, training time of each model (from its model card) and
the CfC vs LTC training-speed ratio, where the network looks (attention on the road vs its chance level,
saliency stability under noise; when the comparison measured it), followed by the command that
regenerates it. :func:`update_readme` replaces only the text between ``<!-- results:begin -->`` and
``<!-- results:end -->``; :func:`update_marked_section` does the same for any pair of markers (the
benchmark's block sits between ``<!-- benchmark:begin -->`` and ``<!-- benchmark:end -->``).
"""
from __future__ import annotations

import json
from pathlib import Path

from liquid_controller.errors import InputError

BEGIN = '<!-- results:begin -->'
END = '<!-- results:end -->'
BENCHMARK_BEGIN = '<!-- benchmark:begin -->'
BENCHMARK_END = '<!-- benchmark:end -->'
TRAINING_SCENE = 'summer'


def _pct(v):
    return '-' if v is None else f'{v:.0f}%'


def _train_time(info):
    s = info.get('train_seconds')
    if not isinstance(s, (int, float)):
        return '-'
    steps = info.get('train_steps')
    text = f'{s / 60:.1f} min' if s >= 60 else f'{s:.0f} s'
    return f'{text} ({steps} steps)' if isinstance(steps, int) else text


def _seconds_per_step(info):
    s, n = info.get('train_seconds'), info.get('train_steps')
    if isinstance(s, (int, float)) and isinstance(n, int) and n > 0:
        return s / n
    return None


def training_speed_ratio(models, train_bench=None):
    """LTC / CfC training time per step and where it comes from.

    Preferred: ``train_bench`` (the ``train`` results of ``liquid-controller bench train --json``, both
    cores timed in the same run on the same batch). Otherwise the model cards' training seconds per
    step, only when a cfc and an ltc model trained with the same batch size and sequence length.
    Returns (ratio or None, sentence explaining it).
    """
    if train_bench:
        ratio = train_bench.get('ltc_vs_cfc_training_time')
        if isinstance(ratio, (int, float)):
            m = train_bench.get('models', {})
            return float(ratio), (
                f"LTC takes {ratio:.2f}x the time of CfC per training step "
                f"(`liquid-controller bench train`: batch {train_bench.get('batch')} x "
                f"{train_bench.get('seq')} frames, CfC {m.get('cfc', {}).get('step_ms')} ms, "
                f"LTC {m.get('ltc', {}).get('step_ms')} ms per step, same run).")
    by_core = {}
    for info in models:
        if _seconds_per_step(info) is not None:
            by_core.setdefault(info.get('core'), info)
    cfc, ltc = by_core.get('cfc'), by_core.get('ltc')
    if cfc and ltc:
        same = (cfc.get('train_batch'), cfc.get('train_seq_len')) == (ltc.get('train_batch'),
                                                                      ltc.get('train_seq_len'))
        if same:
            ratio = _seconds_per_step(ltc) / _seconds_per_step(cfc)
            return ratio, (f"LTC takes {ratio:.2f}x the time of CfC per training step (model cards: "
                           f"{_seconds_per_step(cfc):.2f} s vs {_seconds_per_step(ltc):.2f} s per step, "
                           f"batch {cfc.get('train_batch')} x {cfc.get('train_seq_len')} frames).")
        return None, ('CfC vs LTC training speed: not comparable from the model cards (different batch '
                      'or sequence length); run `liquid-controller bench train`.')
    return None, ('CfC vs LTC training speed: not measured here (needs a trained cfc and ltc model in '
                  'the comparison, or `--train-bench` from `liquid-controller bench train --json`).')


def trials_note(cfg):
    """', each from its own random start ...' when the seeds of an EvalConfig dict are real trials
    (random start, pushes), else '' (then seeds differ only in sensor noise)."""
    parts = []
    if cfg.get('random_start'):
        parts.append('each from its own random start on the lap')
    if cfg.get('disturbance_rate_hz'):
        parts.append(f"with random yaw-rate pushes ({cfg['disturbance_rate_hz']:g}/s)")
    return (', ' + ' '.join(parts)) if parts else ' (seeds change only the sensor noise)'


def results_section(compare, train_bench=None):
    """Markdown for the README from a comparison dict (see :mod:`liquid_controller.evaluation.compare`)."""
    rows = compare['rows']
    cfg = compare['config']
    scenes = list(dict.fromkeys(r['scene'] for r in rows if r['image_noise_std'] == 0.0))
    models = compare['models']
    lines = ['## Results', '',
             f"Closed loop in the embedded simulator through the same runtime Controller as the ROS node "
             f"(generated {compare.get('created_utc', '')}): {cfg['laps']:g} lap(s) per episode, seeds "
             f"{cfg['seeds']}{trials_note(cfg)}, episode ends at the laps, a collision, leaving the road or "
             f"{cfg['max_seconds'] or cfg['seconds_per_lap'] * cfg['laps']:g} s. Cells: lap completion "
             f"(mean over seeds) / mean abs lateral offset / lane departures (total). "
             f"`{TRAINING_SCENE}` is the training scene; the others are held out.", '']
    head = ['Model', 'Core', 'Liquid neurons', 'Parameters', 'Training time'] + \
        [f'{s}{" (train)" if s == TRAINING_SCENE else ""}' for s in scenes] + \
        ['Collisions', 'Filter interventions', 'Step p50 (us)']
    lines += ['| ' + ' | '.join(head) + ' |', '|' + '|'.join('---' for _ in head) + '|']
    for info in models:
        mine = [r for r in rows if r['model'] == info['label'] and r['image_noise_std'] == 0.0]
        by_scene = {r['scene']: r for r in mine}
        cells = [info['label'] + (' (untrained)' if info.get('untrained') else ''), str(info.get('core')),
                 str(info.get('liquid_neurons')),
                 f"{info['parameters']:,}" if info.get('parameters') else '-', _train_time(info)]
        for s in scenes:
            r = by_scene.get(s)
            cells.append('-' if r is None else
                         f"{_pct(r['lap_completion_pct'])} / {r['mean_abs_lateral_offset_m']:.3f} m / "
                         f"{r['lane_departures']}")
        cells.append(str(sum(r['collisions'] for r in mine)))
        interventions = sum(r['filter_interventions'] for r in mine)
        cells.append(str(interventions) if info.get('core') != 'expert (privileged)' else '-')
        p50 = [r['step_p50_us'] for r in mine if r['step_p50_us'] is not None]
        cells.append(f'{sorted(p50)[len(p50) // 2]:.0f}' if p50 else '-')
        lines.append('| ' + ' | '.join(cells) + ' |')
    noisy = [lv for lv in compare.get('noise_levels', []) if lv > 0]
    if noisy:
        nscenes = compare.get('noise_scenes', [])
        lines += ['', f"Robustness to input noise: Gaussian noise of the given standard deviation (8-bit "
                      f"intensity units) added to every camera frame, scene(s) {', '.join(nscenes)}; cells "
                      f"as above.", '']
        head = ['Model'] + [f'{s}, noise {lv:g}' for s in nscenes for lv in [0.0] + noisy]
        lines += ['| ' + ' | '.join(head) + ' |', '|' + '|'.join('---' for _ in head) + '|']
        for info in models:
            if info.get('core') == 'expert (privileged)':
                continue
            cells = [info['label']]
            for s in nscenes:
                for lv in [0.0] + noisy:
                    r = next((r for r in rows if r['model'] == info['label'] and r['scene'] == s
                              and r['image_noise_std'] == lv), None)
                    cells.append('-' if r is None else
                                 f"{_pct(r['lap_completion_pct'])} / {r['mean_abs_lateral_offset_m']:.3f} m"
                                 f" / {r['lane_departures']}")
            lines.append('| ' + ' | '.join(cells) + ' |')
    lines += _attention_table(compare, models, scenes)
    _, sentence = training_speed_ratio(models, train_bench)
    lines += ['', sentence]
    if any(m.get('untrained') for m in models):
        lines += ['', 'Models marked untrained have random weights: their rows show the evaluation '
                      'running, not driving ability.']
    command = compare.get('command')
    if command:
        lines += ['', 'Regenerate this section:', '', '```bash', command, '```']
    return '\n'.join(lines)


def _attention_table(compare, models, scenes):
    """Markdown lines of the 'where the network looks' table ([] when not measured)."""
    rows = [r for r in compare['rows']
            if r['image_noise_std'] == 0.0 and r.get('attention_on_road') is not None]
    if not rows:
        return []
    from liquid_controller.evaluation.compare import attention_note
    lines = ['', f'Where the network looks: cells are attention on road (chance level) / saliency SSIM '
                 f'under noise. {attention_note(compare)}', '']
    head = ['Model'] + list(scenes)
    lines += ['| ' + ' | '.join(head) + ' |', '|' + '|'.join('---' for _ in head) + '|']
    for info in models:
        by_scene = {r['scene']: r for r in rows if r['model'] == info['label']}
        if not by_scene:
            continue
        cells = [info['label'] + (' (untrained)' if info.get('untrained') else '')]
        for s in scenes:
            r = by_scene.get(s)
            cells.append('-' if r is None else
                         f"{r['attention_on_road']:.2f} ({r['road_pixel_fraction']:.2f}) / "
                         f"{r['saliency_ssim']:.3f}")
        lines.append('| ' + ' | '.join(cells) + ' |')
    return lines


def read_report(path, what, keys, written_by):
    """Read the JSON report at ``path`` that must be a dict holding ``keys``; InputError naming
    ``what`` and the file when it cannot be read or is not one (``written_by``: the command that
    writes such reports, for the message)."""
    path = Path(path)
    try:
        data = json.loads(path.read_text())
    except (OSError, json.JSONDecodeError) as exc:
        raise InputError(what, str(path), f'cannot read: {exc}') from None
    if not isinstance(data, dict) or any(k not in data for k in keys):
        raise InputError(what, str(path), f'not a report written by {written_by}')
    return data


def replace_marked_block(text, content, where='README', begin=BEGIN, end=END):
    """Return ``text`` with everything between the ``begin`` and ``end`` markers replaced by ``content``.

    Text outside the markers is kept byte for byte. When neither marker exists, a marked block is
    appended at the end; a single marker, markers in the wrong order or repeated markers are an
    InputError naming ``where``."""
    nb, ne = text.count(begin), text.count(end)
    if nb == 0 and ne == 0:
        sep = '' if text.endswith('\n\n') or not text else ('\n' if text.endswith('\n') else '\n\n')
        return f'{text}{sep}{begin}\n{content.rstrip()}\n{end}\n'
    if nb != 1 or ne != 1:
        raise InputError(where, f'{nb} x {begin}, {ne} x {end}',
                         'needs exactly one begin and one end marker')
    i, j = text.index(begin), text.index(end)
    if j < i:
        raise InputError(where, end, f'the end marker comes before {begin}')
    return text[:i + len(begin)] + '\n' + content.rstrip() + '\n' + text[j:]


def update_marked_section(readme, section, begin, end):
    """Rewrite the block of ``readme`` (path) between ``begin`` and ``end`` with ``section`` (text).
    InputError naming the file when it is missing or its markers are broken."""
    path = Path(readme)
    if not path.is_file():
        raise InputError('readme', str(path), 'file not found')
    path.write_text(replace_marked_block(path.read_text(), section, where=str(path), begin=begin, end=end))
    return section


def update_readme(readme, compare, train_bench=None):
    """Rewrite the marked results block of ``readme`` (path) from ``compare`` (dict or JSON path).
    Returns the section text written."""
    if not isinstance(compare, dict):
        from liquid_controller.evaluation.compare import load_compare
        compare = load_compare(compare)
    if train_bench is not None and not isinstance(train_bench, dict):
        try:
            train_bench = json.loads(Path(train_bench).read_text())
        except (OSError, json.JSONDecodeError) as exc:
            raise InputError('train bench json', str(train_bench), f'cannot read: {exc}') from exc
        train_bench = train_bench.get('train', train_bench)
    if not Path(readme).is_file():
        raise InputError('readme', str(readme), 'file not found')
    return update_marked_section(readme, results_section(compare, train_bench), BEGIN, END)


def write_report(result, out_dir, stem, markdown):
    """Write ``result`` as ``out_dir/stem.json`` and ``markdown`` as ``out_dir/stem.md``; records both
    paths in ``result`` (``json``, ``markdown``) and returns it."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    (out / f'{stem}.json').write_text(json.dumps(result, indent=1) + '\n')
    (out / f'{stem}.md').write_text(markdown + '\n')
    result['json'] = str(out / f'{stem}.json')
    result['markdown'] = str(out / f'{stem}.md')
    return result
