"""Compare several models in closed loop: same scenes, same seeds, same end conditions, one table.

Every model is driven through the runtime Controller by :mod:`liquid_controller.evaluation.evaluate`. Rows:
one per (model, image-noise level, scene). Noise level 0 runs on every scene; the added Gaussian image
noise levels (robustness to input noise) run on ``noise_scenes`` (default: the first scene, the training
scene) to keep the cost bounded. Optionally the privileged expert is added as a reference row.

Attention columns (issue 8, :class:`AttentionSettings`; ``attention=None`` skips them): for every model
and scene of the noise-free rows, :func:`liquid_controller.explain.analysis.attention_columns` runs the
simulator with the expert driving (every model sees the same views) and measures the share of saliency
mass on the ground-truth road (``attention_on_road``; its chance level ``road_pixel_fraction`` is the
share a uniform map would score) and the saliency stability under input noise (``saliency_ssim``).
"""
from __future__ import annotations

import dataclasses
import json
import math
import time
from pathlib import Path

from liquid_controller.config_base import config_from_dict, config_to_dict
from liquid_controller.errors import InputError
from liquid_controller.evaluation.evaluate import (ControllerDriver, EvalConfig, ExpertDriverAdapter,
                                              check_scene, evaluate_driver)
from liquid_controller.validation import check_int, check_number

TABLE_COLUMNS = (
    ('model', 'Model'), ('core', 'Core'), ('liquid_neurons', 'Liquid neurons'),
    ('parameters', 'Parameters'), ('scene', 'Scene'), ('image_noise_std', 'Image noise std'),
    ('lap_completion_pct', 'Completion %'), ('mean_abs_lateral_offset_m', 'Mean abs offset (m)'),
    ('lane_departures', 'Departures'), ('collisions', 'Collisions'),
    ('filter_interventions', 'Filter interventions'), ('step_p50_us', 'Step p50 (us)'),
    ('attention_on_road', 'Attention on road (chance)'), ('saliency_ssim', 'Saliency SSIM'),
)
ATTENTION_KEYS = ('attention_on_road', 'saliency_ssim', 'road_pixel_fraction')
ATTENTION_METHODS = ('visual_backprop', 'gradient', 'smoothgrad')


@dataclasses.dataclass(frozen=True)
class AttentionSettings:
    """How the attention columns are measured (:func:`liquid_controller.explain.analysis.attention_columns`).

    seconds: simulated seconds of expert driving per scene; max_frames: frames scored (evenly spaced);
    noise_std: std of the Gaussian noise (image in [0, 1]) for the SSIM stability measure.
    """
    seconds: float = 3.0
    max_frames: int = 30
    method: str = 'visual_backprop'
    noise_std: float = 0.05

    def __post_init__(self):
        for name in ('seconds', 'noise_std'):
            check_number(f'attention.{name}', getattr(self, name), 0.0, low_open=True)
        check_int('attention.max_frames', self.max_frames, 1)
        if self.method not in ATTENTION_METHODS:
            raise InputError('attention.method', self.method, f'must be one of {ATTENTION_METHODS}')

    def to_dict(self):
        return config_to_dict(self)

    @classmethod
    def from_dict(cls, d):
        return config_from_dict(cls, d, 'attention')


def _noise_levels(levels):
    out = []
    for level in levels:
        if not isinstance(level, (int, float)) or isinstance(level, bool) or not math.isfinite(level) \
                or level < 0:
            raise InputError('noise', level, 'every image-noise level must be a finite number >= 0')
        out.append(float(level))
    if len(set(out)) != len(out):
        raise InputError('noise', levels, 'noise levels must be distinct')
    return tuple(sorted(out))


def compare_models(models, config, noise_levels=(0.0,), noise_scenes=None, out_dir=None, progress=True,
                   include_expert=False, command=None, workers=1, ray=None, attention=AttentionSettings(),
                   settings=None):
    """Evaluate every model (names or paths) with ``config`` (EvalConfig; its image_noise_std is
    replaced by each of ``noise_levels``). All model files are loaded first, so a missing one fails
    before any driving. Returns the JSON-able comparison (``rows``, ``models``, ``evaluations``); with
    ``out_dir`` also writes ``compare.json``, ``compare.md`` and the per-model evaluations and plots.
    ``workers``: processes per evaluation, or Ray tasks with ``ray`` (see
    :func:`~liquid_controller.evaluation.evaluate.evaluate_driver`).
    ``attention``: :class:`AttentionSettings` for the attention columns of the noise-free rows of every
    model (not the expert, which has no network); None skips them (the columns are then None).
    ``settings``: the controller node's settings for every model (None: config/controller.yaml).
    """
    if attention is not None and not isinstance(attention, AttentionSettings):
        raise InputError('attention', type(attention).__name__, 'must be AttentionSettings or None')
    if not models and not include_expert:
        raise InputError('models', models, 'give at least one model')
    levels = _noise_levels(noise_levels)
    noise_scenes = tuple(noise_scenes) if noise_scenes else config.scenes[:1]
    for scene in noise_scenes:
        check_scene(scene)
    drivers = [ControllerDriver(m, settings) for m in models]  # ModelFileError naming a bad model
    if include_expert:
        drivers.append(ExpertDriverAdapter())
    labels = _unique_labels([d.name for d in drivers])
    out_dir = Path(out_dir) if out_dir is not None else None
    rows, evaluations, infos = [], {}, []
    wall0 = time.perf_counter()
    for driver, label in zip(drivers, labels):
        info = dict(driver.info(), label=label)
        infos.append(info)
        # the expert does not look at the image: added image noise would change nothing
        driver_levels = levels if driver.needs_image else tuple(v for v in levels if v == 0.0) or (0.0,)
        for level in driver_levels:
            scenes = config.scenes if level == 0.0 else noise_scenes
            cfg = dataclasses.replace(config, image_noise_std=level, scenes=scenes)
            key = f'{label}@noise{level:g}'
            report = evaluate_driver(driver, cfg, out_dir=out_dir / 'evaluations' if out_dir else None,
                                     progress=progress, label=key.replace('@', '_'), workers=workers,
                                     ray=ray)
            evaluations[key] = report
            for scene, agg in report['scenes'].items():
                row = _row(info, scene, level, agg)
                if level == 0.0 and attention is not None and hasattr(driver, 'model'):
                    row.update(_attention(driver.model, scene, config.seeds[0], attention))
                rows.append(row)
    result = {
        'command': command,
        'created_utc': time.strftime('%Y-%m-%dT%H:%M:%SZ', time.gmtime()),
        'config': config.to_dict(),
        'noise_levels': list(levels),
        'noise_scenes': list(noise_scenes),
        'attention': attention.to_dict() if attention is not None else None,
        'models': infos,
        'rows': rows,
        'evaluations': evaluations,
        'wall_s': time.perf_counter() - wall0,
    }
    if out_dir is not None:
        from liquid_controller.evaluation.results import write_report
        write_report(result, out_dir, 'compare', format_markdown(result))
    return result


def _unique_labels(names):
    seen, out = {}, []
    for name in names:
        seen[name] = seen.get(name, 0) + 1
        out.append(name if seen[name] == 1 else f'{name}#{seen[name]}')
    return out


def _attention(model, scene, seed, settings):
    """The attention columns of one model in one scene (values in [0, 1])."""
    from liquid_controller.explain.analysis import attention_columns
    cols = attention_columns(model, scene=scene, seconds=settings.seconds, seed=seed,
                             method=settings.method, max_frames=settings.max_frames,
                             noise_std=settings.noise_std)
    return {k: float(cols[k]) for k in ATTENTION_KEYS}


def _row(info, scene, level, agg):
    return {
        'model': info['label'], 'core': info.get('core'), 'liquid_neurons': info.get('liquid_neurons'),
        'parameters': info.get('parameters'), 'untrained': bool(info.get('untrained')),
        'scene': scene, 'image_noise_std': level,
        'episodes': agg['episodes'], 'completed_episodes': agg['completed_episodes'],
        'lap_completion_pct': agg['lap_completion_pct'],
        'mean_abs_lateral_offset_m': agg['mean_abs_lateral_offset_m'],
        'max_abs_lateral_offset_m': agg['max_abs_lateral_offset_m'],
        'lane_departures': agg['lane_departures'], 'collisions': agg['collisions'],
        'off_road_ends': agg['off_road_ends'],
        'filter_interventions': agg['filter_interventions'],
        'filter_intervention_rate': agg['filter_intervention_rate'],
        'step_p50_us': agg['step_time_us']['p50'],
        'step_p95_us': agg['step_time_us']['p95'],
        **{k: None for k in ATTENTION_KEYS},
    }


def _cell(key, value, row=None):
    if value is None:
        return '-'
    if key == 'attention_on_road':
        chance = (row or {}).get('road_pixel_fraction')
        return f'{value:.2f}' + (f' ({chance:.2f})' if chance is not None else '')
    if key == 'saliency_ssim':
        return f'{value:.3f}'
    if key == 'lap_completion_pct':
        return f'{value:.1f}'
    if key == 'mean_abs_lateral_offset_m':
        return f'{value:.3f}'
    if key == 'step_p50_us':
        return f'{value:.0f}'
    if key == 'image_noise_std':
        return f'{value:g}'
    if key == 'parameters':
        return f'{value:,}' if value else '-'
    return str(value)


def format_markdown(result):
    """The comparison as one markdown table (one row per model, noise level and scene)."""
    head = [title for _, title in TABLE_COLUMNS]
    lines = ['| ' + ' | '.join(head) + ' |', '|' + '|'.join('---' for _ in head) + '|']
    for row in result['rows']:
        cells = [_cell(k, row.get(k), row) for k, _ in TABLE_COLUMNS]
        if row.get('untrained'):
            cells[0] += ' (untrained)'
        lines.append('| ' + ' | '.join(cells) + ' |')
    cfg = result['config']
    lines.append('')
    from liquid_controller.evaluation.results import trials_note
    lines.append(f"{cfg['laps']:g} lap(s) per episode, seeds {cfg['seeds']}{trials_note(cfg)}, time limit "
                 f"{cfg['max_seconds'] or cfg['seconds_per_lap'] * cfg['laps']:g} s; completion and mean "
                 f"abs offset are means over seeds, departures, collisions and interventions are totals; "
                 f"step p50 = median Controller.step time (preprocess + policy + safety filter).")
    note = attention_note(result)
    if note:
        lines += ['', note]
    return '\n'.join(lines)


def attention_note(result):
    """One sentence explaining the attention columns ('' when they were not measured)."""
    a = result.get('attention')
    if not a:
        return ''
    return (f"Attention on road: share of the {a['method']} saliency mass on the simulator's ground-truth "
            f"road, in brackets the chance level (the road's share of the pixels, what a uniform map "
            f"scores); saliency SSIM: mean SSIM between the saliency of clean frames and of frames with "
            f"Gaussian noise std {a['noise_std']:g} (1 = stable). {a['seconds']:g} s of expert driving per "
            f"scene (first seed), up to {a['max_frames']} frames; noise-free rows only.")


def format_table(result):
    """Fixed-width text version of :func:`format_markdown` for the terminal."""
    from liquid_controller.evaluation.evaluate import _table
    rows = []
    for row in result['rows']:
        cells = [_cell(k, row.get(k), row) for k, _ in TABLE_COLUMNS]
        if row.get('untrained'):
            cells[0] += ' (untrained)'
        rows.append(cells)
    short = ('model', 'core', 'liquid', 'params', 'scene', 'noise', 'compl %', 'mean|off| m', 'depart',
             'collide', 'interv', 'p50 us', 'road att (chance)', 'sal ssim')
    note = attention_note(result)
    return _table(short, rows) + (f'\n{note}' if note else '')


def load_compare(path):
    """Read a compare JSON written by :func:`compare_models` (InputError naming the file if not)."""
    from liquid_controller.evaluation.results import read_report
    return read_report(path, 'compare json', ('rows', 'models'), 'liquid-controller compare')


def eval_config_from_args(scenes, laps, seeds, seconds_per_lap=90.0, max_seconds=None, plots=True,
                          random_start=False, disturbance_rate_hz=0.0):
    """EvalConfig from command-line style values (comma-separated text or sequences)."""
    from liquid_controller.evaluation.evaluate import parse_list
    scenes = parse_list(scenes, 'scenes') if isinstance(scenes, str) else tuple(scenes)
    seeds = parse_list(seeds, 'seeds', int) if isinstance(seeds, str) else tuple(seeds)
    return EvalConfig(scenes=scenes, laps=laps, seeds=seeds, seconds_per_lap=seconds_per_lap,
                      max_seconds=max_seconds, plots=plots, random_start=random_start,
                      disturbance_rate_hz=disturbance_rate_hz)
