"""Self-contained HTML report of an explanation (explain/analysis.py): one file, images embedded as base64
PNG, no scripts, no external resources, so it opens from disk in any browser without a server.

Sections (ids used by the tests and for linking): ``summary``, ``attention``, ``neurons``, ``tree``,
``fidelity``, and ``comparison`` when a baseline model was analysed too.
"""
from __future__ import annotations

import base64
import html
import math
from pathlib import Path

from liquid_controller.errors import InputError
from liquid_controller.explain.analysis import HOLDOUT_TEXT, r2_comment

__all__ = ['png_data_uri', 'build_report', 'write_report']


def png_data_uri(path) -> str:
    """``data:image/png;base64,...`` for a PNG file (checked by its signature)."""
    data = Path(path).read_bytes()
    if not data.startswith(b'\x89PNG\r\n\x1a\n'):
        raise InputError('image', str(path), 'is not a PNG file')
    return 'data:image/png;base64,' + base64.b64encode(data).decode('ascii')


def _fmt(v, digits=3):
    if v is None or (isinstance(v, float) and not math.isfinite(v)):
        return 'n/a'
    if isinstance(v, float):
        return f'{v:.{digits}f}'
    return html.escape(str(v))


def _img(path, alt):
    return f'<figure><img src="{png_data_uri(path)}" alt="{html.escape(alt)}"><figcaption>{html.escape(alt)}' \
           f'</figcaption></figure>'


def _table(header, rows):
    head = ''.join(f'<th>{html.escape(h)}</th>' for h in header)
    body = ''.join('<tr>' + ''.join(f'<td>{_fmt(c)}</td>' for c in r) + '</tr>' for r in rows)
    return f'<table><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>'


_CSS = """
body{font-family:system-ui,sans-serif;max-width:1100px;margin:2em auto;padding:0 1em;color:#222}
h1{font-size:1.6em} h2{border-bottom:1px solid #ccc;padding-bottom:.2em;margin-top:1.6em}
table{border-collapse:collapse;margin:.6em 0} td,th{border:1px solid #ccc;padding:.25em .6em;text-align:right}
th{background:#f3f3f3} pre{background:#f7f7f7;padding:.8em;overflow:auto;font-size:.85em}
img{max-width:100%;border:1px solid #ddd} figure{margin:.8em 0} figcaption{font-size:.85em;color:#555}
.warn{background:#fff3cd;border:1px solid #e0c36a;padding:.6em}
"""


def _attention_rows(result):
    return [[m, a.get('frames'), a.get('attention_on_road'), a.get('road_pixel_fraction'),
             a.get('saliency_ssim'), a.get('saliency_ssim_min')] for m, a in result.attention.items()]


def _holdout_text(tree):
    """What was held out, in words (older summaries carry only the hold-out's name)."""
    return tree.get('holdout_text') or HOLDOUT_TEXT.get(tree.get('holdout'), str(tree.get('holdout')))


def _with_comment(r2, target_std=None):
    """An R^2 cell with what it means (a bare 0.11 reads like a failure or like nothing)."""
    text = f'{_fmt(r2)} ({r2_comment(r2)})'
    if target_std is not None and math.isfinite(target_std):
        text += f'; the command varied by {target_std:.3f} (std) over the run'
    return text


def build_report(result) -> str:
    """HTML text for an :class:`~liquid_controller.explain.analysis.ExplainResult` (with its baseline)."""
    r = result
    card = r.card or {}
    policy = card.get('policy', {}) or {}
    parts = [f'<!DOCTYPE html><html lang="en"><head><meta charset="utf-8">'
             f'<title>Explanation: {html.escape(r.name)}</title><style>{_CSS}</style></head><body>',
             f'<h1>How {html.escape(r.name)} drives</h1>']
    if card.get('untrained'):
        parts.append('<p class="warn">This model is UNTRAINED (random weights): the numbers below describe '
                     'a random network and say nothing about a trained policy.</p>')
    groups = (card.get('wiring') or {}).get('neuron_groups') or {}
    parts.append('<h2 id="summary">Summary</h2>' + _table(
        ['item', 'value'],
        [['core', policy.get('core')],
         ['liquid neurons', policy.get('units') if policy.get('core') in ('cfc', 'ltc') else 0],
         ['neuron groups', ', '.join(f'{k}: {len(v)}' for k, v in groups.items()) or 'n/a'],
         ['data', r.source], ['frames analysed', r.frames],
         ['tree leaves', r.tree.get('leaves')],
         ['steering tree held-out R^2', _with_comment(r.tree.get('r2_test'))],
         ['speed tree held-out R^2', _with_comment(r.tree.get('speed_r2_test'), r.tree.get('speed_std'))]]))
    parts.append('<h2 id="attention">Attention</h2><p>Where the network looks: VisualBackProp (conv '
                 'features, as in the NCP paper) and SmoothGrad (|d steering / d pixel|). '
                 '<b>attention on road</b>: share of saliency mass on the simulator\'s ground-truth lane '
                 'mask (chance level = road pixel fraction). <b>SSIM</b>: similarity of the saliency '
                 'of a frame with and without pixel noise (1 = stable).</p>')
    parts.append(_table(['method', 'frames', 'attention on road', 'road pixel fraction (chance)',
                         'SSIM under noise (mean)', 'SSIM (min)'], _attention_rows(r)))
    if 'attention' in r.images:
        parts.append(_img(r.images['attention'], 'columns: camera frame, VisualBackProp overlay, '
                                                 'SmoothGrad overlay, road mask (sim runs)'))
    parts.append('<h2 id="neurons">Neuron activity</h2><p>Every neuron over the run, grouped by layer '
                 '(sensory = the conv features and IMU features entering the core).</p>')
    if 'neuron activity' in r.images:
        parts.append(_img(r.images['neuron activity'], 'neuron activity by layer'))
    parts.append(f'<h2 id="tree">Decision tree</h2><p>A regression tree on '
                 f'{html.escape(", ".join(r.tree.get("feature_names", [])[:12]))}'
                 f'{" ..." if len(r.tree.get("feature_names", [])) > 12 else ""} predicting the steering '
                 f'command {html.escape(str(r.tree.get("target_name")))}: {r.tree.get("leaves")} leaves, '
                 f'R^2 train {_fmt(r.tree.get("r2_train"))}, held-out {_fmt(r.tree.get("r2_test"))} '
                 f'({r.tree.get("n_train")} train / {r.tree.get("n_test")} held-out frames; held out: '
                 f'{html.escape(_holdout_text(r.tree))}). Fidelity '
                 f'{html.escape(r2_comment(r.tree.get("r2_test")))}. The diagram shows the top levels; '
                 f'the rules below are the whole tree.</p>'
                 f'<pre>{html.escape(r.tree.get("rules", ""))}</pre>')
    if 'decision tree' in r.images:
        parts.append(_img(r.images['decision tree'], 'decision tree diagram'))
    parts.append('<h2 id="fidelity">Fidelity against tree size</h2>' + _table(
        ['max leaves', 'leaves', 'R^2 train', 'R^2 held-out'],
        [[f['max_leaves'], f['leaves'], f['r2_train'], f['r2_test']] for f in r.fidelity]))
    if 'fidelity' in r.images:
        parts.append(_img(r.images['fidelity'], 'held-out R^2 against number of leaves'))
    if r.baseline is not None:
        b = r.baseline
        by_size = {f['max_leaves']: f['r2_test'] for f in b.fidelity}
        rows = [[f['max_leaves'], f['r2_test'], by_size.get(f['max_leaves'])] for f in r.fidelity]
        parts.append(f'<h2 id="comparison">Comparison with {html.escape(b.name)}</h2>'
                     f'<p>Held-out fidelity of trees of equal size: {html.escape(r.name)} '
                     f'({html.escape(", ".join(r.tree.get("feature_names", [])[:8]))}...) vs '
                     f'{html.escape(b.name)} '
                     f'({html.escape(", ".join(b.tree.get("feature_names", [])[:8]))}...).</p>')
        parts.append(_table(['max leaves', f'{r.name} R^2', f'{b.name} R^2'], rows))
        parts.append(_table(['model', 'method', 'frames', 'attention on road', 'road pixel fraction',
                             'SSIM mean', 'SSIM min'],
                            [[m.name] + row for m in (r, b) for row in _attention_rows(m)]))
        for label in ('attention', 'neuron activity'):
            if label in b.images:
                parts.append(_img(b.images[label], f'{b.name}: {label}'))
    parts.append('</body></html>\n')
    return '\n'.join(parts)


def write_report(result, path) -> Path:
    """Write :func:`build_report` to ``path`` (UTF-8); returns the path."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(build_report(result), encoding='utf-8')
    return path
