"""`liquid-controller bench safety`: exact QP speed, torch layer vs qpth, closed-loop harness.

Measured in one run: NumPy solve latency at batch 1 (1, 3, 6 rows) and the whole per-tick filter;
torch forward + backward at batch 2048 with 3 rows, and qpth (bench-only extra, ``qpth==0.0.18``;
skipped with a note when absent) on the same problems for the ratio and its error vs the exact
answer; the closed-loop harness per nominal family and control period (10^4 rollouts; ``--quick``
1000) for the filter and the clip-after-QP baseline; minimal intervention on safe nominals.
Targets (issue 3): NumPy p99 <= 50 us up to 3 rows; torch >= 10x faster than qpth; 0 violations;
no intervention when the nominal is safe.
"""
import time

import numpy as np
import torch

from liquid_controller.safety import RobotState, SafetyConfig, SafetyFilter
from liquid_controller.safety.constraints import build_rows, speed_interval
from liquid_controller.safety.harness import FAMILIES, HarnessConfig, run_harness
from liquid_controller.safety.qp_numpy import solve_qp
from liquid_controller.safety.qp_torch import solve_qp_torch

TARGET_NUMPY_P99_US = 50.0
TARGET_QPTH_RATIO = 10.0


def _instances(rng, n, m):
    """Random problems whose answers are a mix of free, projected and vertex solutions."""
    ang = rng.uniform(0, 2 * np.pi, (n, m))
    G = np.stack([np.cos(ang), np.sin(ang)], -1) * rng.uniform(0.5, 2.0, (n, m, 1))
    h = rng.uniform(0.2, 1.5, (n, m))                 # the origin is feasible: never infeasible
    r = rng.normal(0, 1.5, (n, 2))
    return G, h, r


def bench_numpy(quick):
    """p50/p99 latency (us) of one solve at batch 1, per row count; plus the full filter tick."""
    rng = np.random.default_rng(0)
    out = {}
    reps = 2000 if quick else 20000
    for m in (1, 3, 6):
        G, h, r = _instances(rng, 256, m)
        for i in range(200):                          # warm-up
            solve_qp(G[i % 256], h[i % 256], r[i % 256])
        ts = np.empty(reps)
        for i in range(reps):
            k = i % 256
            t0 = time.perf_counter()
            solve_qp(G[k], h[k], r[k])
            ts[i] = time.perf_counter() - t0
        ts *= 1e6
        out[f'rows_{m}'] = {'p50_us': float(np.percentile(ts, 50)),
                            'p99_us': float(np.percentile(ts, 99)), 'solves': reps}
    f = SafetyFilter(SafetyConfig())
    states = [RobotState(float(s), 0.0, 0.0, float(d), float(y), float(p))
              for s, d, y, p in zip(rng.uniform(0, 2, 64), rng.uniform(0.3, 4, 64),
                                    rng.uniform(-0.4, 0.4, 64), rng.uniform(-0.3, 0.3, 64))]
    noms = rng.uniform(-1, 3, (64, 2))
    ts = np.empty(reps // 4)
    for i in range(len(ts)):
        t0 = time.perf_counter()
        f.filter(noms[i % 64], states[i % 64], (2.0, 2.0))
        ts[i] = time.perf_counter() - t0
    ts *= 1e6
    out['filter_tick_10_rows'] = {'p50_us': float(np.percentile(ts, 50)),
                                  'p99_us': float(np.percentile(ts, 99)), 'ticks': len(ts)}
    return out


def _time(fn, reps):
    fn()                                               # warm-up
    ts = []
    for _ in range(reps):
        t0 = time.perf_counter()
        fn()
        ts.append(time.perf_counter() - t0)
    return float(np.median(ts))


def bench_torch(quick):
    """Forward + backward at batch 2048 with 3 rows: ours vs qpth (same problems, 1 thread)."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        rng = np.random.default_rng(1)
        G, h, r = _instances(rng, 2048, 3)
        reps = 3 if quick else 10
        out = {'batch': 2048, 'rows': 3, 'threads': 1}
        try:
            from qpth.qp import QPFunction
        except ImportError:
            QPFunction = None
            out['qpth'] = 'not installed (pip install qpth==0.0.18, bench-only extra): skipped'
        for dtype in (torch.float32, torch.float64):
            name = str(dtype).replace('torch.', '')
            Gt, ht = torch.tensor(G, dtype=dtype), torch.tensor(h, dtype=dtype)
            rt = torch.tensor(r, dtype=dtype, requires_grad=True)

            def ours():
                u = solve_qp_torch(Gt, ht, rt).u
                u.sum().backward()
                return u
            res = {'ours_ms': 1e3 * _time(ours, reps)}
            exact = solve_qp(G, h, r).u
            if QPFunction is not None:
                Q = torch.eye(2, dtype=dtype).expand(2048, 2, 2)
                e = torch.empty(0, dtype=dtype)

                def qpth():
                    u = QPFunction(verbose=-1)(Q, -rt, Gt, ht, e, e)    # min 1/2 u'u - r'u
                    u.sum().backward()
                    return u
                res['qpth_ms'] = 1e3 * _time(qpth, max(2, reps // 3))
                res['qpth_over_ours'] = res['qpth_ms'] / res['ours_ms']
                res['qpth_max_abs_error'] = float(np.abs(qpth().detach().double().numpy()
                                                         - exact).max())
            res['ours_max_abs_error'] = float(np.abs(ours().detach().double().numpy()
                                                     - exact).max())
            out[name] = res
        return out
    finally:
        torch.set_num_threads(threads)


def bench_harness(quick, progress=True):
    """Harness per family and period: the filter and the clip-after-QP baseline."""
    n = 1000 if quick else 10_000
    runs = []
    for period in (0.1, 0.05):
        for family in FAMILIES:
            for variant in ('filter', 'clip_after_qp'):
                t0 = time.perf_counter()
                r = run_harness(HarnessConfig(family=family, variant=variant, rollouts=n,
                                              control_period=period, seed=2026),
                                progress=progress)
                r['wall_s'] = time.perf_counter() - t0
                runs.append(r)
    return runs


def bench_intervention(quick):
    """Safe nominal commands (meeting every row) on random states: fraction returned unchanged."""
    c = SafetyConfig()
    f = SafetyFilter(c)
    rng = np.random.default_rng(3)
    safe = unchanged = 0
    for _ in range(2000 if quick else 20000):
        s = rng.uniform(0, c.v_max)
        st = RobotState(s, 0.0, 0.0, float(rng.uniform(0, 6)), float(rng.uniform(-0.4, 0.4)),
                        float(rng.uniform(-0.3, 0.3)))
        p = rng.uniform(*c.barrier_param_range, 2)
        lo, hi = speed_interval(c, np.array([s]))
        u = np.array([rng.uniform(lo[0], hi[0]), rng.uniform(-c.w_max, c.w_max)])
        G, h, _ = build_rows(c, np.array([s]), u[None], np.array([st.obstacle_distance]),
                             np.array([st.lane_offset]), np.array([st.heading_error]), p[None])
        if not np.all(G[0] @ u <= h[0]):
            continue
        safe += 1
        out, _ = f.filter(u, st, p)
        unchanged += bool(out[0] == u[0] and out[1] == u[1])
    return {'safe_nominals': safe, 'returned_unchanged': unchanged,
            'fraction_unchanged': unchanged / max(safe, 1)}


def run(args):
    """Run the safety suite; returns results with targets checked."""
    quick = bool(getattr(args, 'quick', False))
    res = {'numpy': bench_numpy(quick), 'torch': bench_torch(quick),
           'intervention': bench_intervention(quick), 'harness': bench_harness(quick)}
    filt = [r for r in res['harness'] if r['variant'] == 'filter']
    base = [r for r in res['harness'] if r['variant'] == 'clip_after_qp']
    t64 = res['torch'].get('float64', {})
    res['targets'] = {
        'numpy_p99_le_50us_up_to_3_rows': all(
            res['numpy'][f'rows_{m}']['p99_us'] <= TARGET_NUMPY_P99_US for m in (1, 3)),
        'torch_10x_faster_than_qpth': (t64['qpth_over_ours'] >= TARGET_QPTH_RATIO
                                       if 'qpth_over_ours' in t64 else None),
        'zero_violations_all_families_periods': all(r['violations'] == 0 for r in filt),
        'baseline_shows_violations': all(r['violations'] > 0 for r in base),
        'no_intervention_when_safe': res['intervention']['fraction_unchanged'] == 1.0,
        'rollouts_per_family_and_period': filt[0]['rollouts'],
    }
    return res


def format_table(results):
    """Human-readable summary."""
    lines = ['NumPy exact QP, batch 1:']
    for k, v in results['numpy'].items():
        lines.append(f'  {k:<22} p50 {v["p50_us"]:8.1f} us   p99 {v["p99_us"]:8.1f} us')
    t = results['torch']
    lines.append(f'torch fwd+bwd, batch {t["batch"]}, {t["rows"]} rows, {t["threads"]} thread:')
    if 'qpth' in t:
        lines.append(f'  qpth: {t["qpth"]}')
    for dt in ('float32', 'float64'):
        r = t[dt]
        line = f'  {dt}: ours {r["ours_ms"]:8.2f} ms (max err {r["ours_max_abs_error"]:.1e})'
        if 'qpth_ms' in r:
            line += (f' | qpth {r["qpth_ms"]:8.2f} ms (max err {r["qpth_max_abs_error"]:.1e})'
                     f' | qpth/ours {r["qpth_over_ours"]:.1f}x')
        lines.append(line)
    iv = results['intervention']
    lines.append(f'minimal intervention: {iv["returned_unchanged"]}/{iv["safe_nominals"]} safe '
                 f'nominals returned unchanged')
    lines.append(f'{"variant":<14}{"family":<11}{"T":>6}{"rollouts":>9}{"viol":>7}'
                 f'{"worst clr":>10}{"interv":>8}{"fallbk":>8}{"progress":>9}{"wall":>7}')
    for r in results['harness']:
        lines.append(f'{r["variant"]:<14}{r["family"]:<11}{r["control_period"]:>6.2f}'
                     f'{r["rollouts"]:>9}{r["violations"]:>7}{r["worst_clearance_m"]:>10.3f}'
                     f'{r["intervention_rate"]:>8.3f}{r["fallback_rate"]:>8.3f}'
                     f'{r["mean_progress_m"]:>9.2f}{r["wall_s"]:>7.1f}')
    lines.append('targets: ' + ', '.join(f'{k}={v}' for k, v in results['targets'].items()))
    return '\n'.join(lines)
