"""`liquid-controller bench core`: the liquid core against ncps 1.0.1 and an LSTM cell.

Streaming step latency (p50/p99, batch 1, one thread, 32 inputs, AutoNCP(19, 2) wiring, hidden state
carried, irregular dt) for our CfC, our LTC, ncps CfC and LTC (identical wiring and weights copied in;
equal outputs asserted on the benchmarked weights and recorded), torch.nn.LSTMCell(32, 19) and our
exported TorchScript step; training step (sequence 32, batch 16, forward + backward + Adam) ours vs
ncps for CfC and LTC. Ratios come from the same run; models are timed in interleaved rounds so that
load from other processes on the machine hits all of them alike.
"""
import os
import time

import numpy as np
import torch

from liquid_controller.policy.cfc import CfC
from liquid_controller.policy.export import export_step
from liquid_controller.policy.ltc import LTC
from liquid_controller.tools.benchmarks.ncps_compat import paired_cfc, paired_ltc
from liquid_controller.policy.numpy_inference import cfc_step as cfc_kernel
from liquid_controller.policy.wiring import auto_ncp

INPUTS, UNITS, OUTPUTS = 32, 19, 2
SEQ, BATCH = 32, 16
EQUAL_TOL = 1e-5
TARGETS = {
    'cfc_step_speedup_min': 4.0,
    'cfc_step_p99_us_max': 60.0,
    'ltc_step_speedup_min': 3.0,
    'cfc_train_speedup_min': 3.0,
}


def _build_models(seed=0):
    """Our cells and their ncps twins sharing wiring and weights."""
    torch.manual_seed(seed)
    wiring = auto_ncp(UNITS, OUTPUTS, sparsity_level=0.5, seed=seed)
    cfc, ltc = CfC(INPUTS, wiring), LTC(INPUTS, wiring)
    ncps_cfc, ncps_ltc = paired_cfc(cfc), paired_ltc(ltc)
    return cfc, ltc, ncps_cfc, ncps_ltc


def _steppers(cfc, ltc, ncps_cfc, ncps_ltc):
    """name -> (make_state, step(x (1, F), state, dt float) -> (y, state))."""
    lstm = torch.nn.LSTMCell(INPUTS, UNITS)
    cfc_exported = export_step(cfc)
    ncps_cfc_cell, ncps_ltc_cell = ncps_cfc.rnn_cell, ncps_ltc.rnn_cell

    def ours(cell):
        return (lambda: cell.initial_state(1), lambda x, h, dt: cell.step(x, h, dt))

    def ncps_module(model):
        # the public ncps API for one frame: a length-1 sequence with its timespan
        def step(x, h, dt):
            y, h = model(x.unsqueeze(1), h, torch.full((1, 1), dt))
            return y[:, 0], h
        return (lambda: torch.zeros(1, UNITS), step)

    def ncps_cell(cell):
        # the cheapest ncps call: the cell itself (no sequence wrapper)
        return (lambda: torch.zeros(1, UNITS), lambda x, h, dt: cell(x, h, dt))

    cfc_weights = cfc.numpy_weights()

    def kernel_step(x, h, dt):
        # the numpy kernel alone, on numpy arrays: no validation, no tensor conversion; the gap to
        # ours_cfc is what the checks and the torch interface cost per step
        return cfc_kernel(cfc_weights, x.numpy(), h, dt)

    def lstm_step(x, hc, dt):
        h, c = lstm(x, hc)
        return h, (h, c)

    return {
        'ours_cfc': ours(cfc),
        'ours_ltc': ours(ltc),
        'ours_cfc_numpy_kernel': (lambda: np.zeros((1, UNITS), np.float32), kernel_step),
        'ours_cfc_torchscript': (lambda: cfc.initial_state(1),
                                 lambda x, h, dt: cfc_exported(x, h, torch.full((1,), dt))),
        'ncps_cfc': ncps_module(ncps_cfc),
        'ncps_cfc_cell': ncps_cell(ncps_cfc_cell),
        'ncps_ltc': ncps_module(ncps_ltc),
        'ncps_ltc_cell': ncps_cell(ncps_ltc_cell),
        'lstm_cell': (lambda: (torch.zeros(1, UNITS), torch.zeros(1, UNITS)), lstm_step),
    }


def _check_equal(cfc, ltc, ncps_cfc, ncps_ltc, steps=60, seed=1):
    """Max |ours - ncps| over a streamed sequence with irregular dt, ours via step(), ncps as a
    sequence (batch 1)."""
    gen = torch.Generator().manual_seed(seed)
    x = torch.randn(1, steps, INPUTS, generator=gen)
    ts = torch.rand(1, steps, generator=gen) * 0.06 + 0.01
    out = {}
    with torch.no_grad():
        for name, ours, theirs in (('cfc', cfc, ncps_cfc), ('ltc', ltc, ncps_ltc)):
            y_ref, _ = theirs(x, timespans=ts)
            h = ours.initial_state(1)
            worst = 0.0
            for t in range(steps):
                y, h = ours.step(x[:, t], h, float(ts[0, t]))
                worst = max(worst, (y - y_ref[:, t]).abs().max().item())
            out[name] = worst
    return out


def _latency(steppers, n_steps, warmup, rounds=4, seed=2):
    """Interleaved rounds of n_steps/rounds steps per model; returns name -> times in us."""
    gen = torch.Generator().manual_seed(seed)
    xs = torch.randn(n_steps + warmup, 1, INPUTS, generator=gen)
    dts = (torch.rand(n_steps + warmup, generator=gen) * 0.02 + 0.025).tolist()  # ~30 Hz jitter
    times = {name: [] for name in steppers}
    states = {name: make() for name, (make, _) in steppers.items()}
    per_round = max(n_steps // rounds, 1)
    with torch.no_grad():
        for name, (_, step) in steppers.items():
            for i in range(warmup):
                _, states[name] = step(xs[i], states[name], dts[i])
        clock = time.perf_counter_ns
        for r in range(rounds):
            for name, (_, step) in steppers.items():
                h = states[name]
                record = times[name]
                for i in range(warmup + r * per_round, warmup + (r + 1) * per_round):
                    x, dt = xs[i], dts[i]
                    t0 = clock()
                    _, h = step(x, h, dt)
                    record.append(clock() - t0)
                states[name] = h
    return {name: np.asarray(t, dtype=np.float64) / 1e3 for name, t in times.items()}


def _train_step_fn(model, seed=3):
    """One optimiser step on a fixed batch: (B, T, F) inputs, MSE on the motor outputs."""
    gen = torch.Generator().manual_seed(seed)
    x = torch.randn(BATCH, SEQ, INPUTS, generator=gen)
    target = torch.randn(BATCH, SEQ, OUTPUTS, generator=gen)
    # ncps mishandles batched timespans (issues 81-83): both use the default 1.0 per step
    opt = torch.optim.Adam(model.parameters(), lr=1e-3)

    def step():
        opt.zero_grad(set_to_none=True)
        y, _ = model(x)
        loss = (y[..., :OUTPUTS] - target).square().mean()
        loss.backward()
        opt.step()
        return loss.item()
    return step


def _training(models, n_iter, warmup):
    """name -> per-iteration ms (interleaved); also the first losses (equal weights -> equal loss)."""
    fns = {name: _train_step_fn(m) for name, m in models.items()}
    first_loss = {name: fn() for name, fn in fns.items()}  # first call: same weights everywhere
    for fn in fns.values():
        for _ in range(warmup):
            fn()
    times = {name: [] for name in fns}
    for _ in range(n_iter):
        for name, fn in fns.items():
            t0 = time.perf_counter_ns()
            fn()
            times[name].append((time.perf_counter_ns() - t0) / 1e6)
    return {name: np.asarray(t) for name, t in times.items()}, first_loss


def _stats(samples):
    return {'p50': float(np.percentile(samples, 50)), 'p90': float(np.percentile(samples, 90)),
            'p99': float(np.percentile(samples, 99)), 'mean': float(samples.mean()),
            'n': int(samples.size)}


def run(args):
    """Run the suite; returns the JSON-ready results (raises AssertionError if ours != ncps)."""
    quick = bool(getattr(args, 'quick', False))
    load_before = os.getloadavg()[0]
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        cfc, ltc, ncps_cfc, ncps_ltc = _build_models()
        equal = _check_equal(cfc, ltc, ncps_cfc, ncps_ltc)
        assert equal['cfc'] < EQUAL_TOL and equal['ltc'] < EQUAL_TOL, \
            f'ours and ncps differ on the benchmarked weights: {equal}'

        n_steps, warmup = (400, 50) if quick else (2000, 200)
        lat = _latency(_steppers(cfc, ltc, ncps_cfc, ncps_ltc), n_steps, warmup)
        step = {name: _stats(t) for name, t in lat.items()}

        # training copies: fresh models with identical weights, so the first losses must agree
        t_cfc, t_ltc, t_ncps_cfc, t_ncps_ltc = _build_models(seed=4)
        n_iter, t_warm = (5, 2) if quick else (30, 5)
        train_times, first_loss = _training(
            {"ours_cfc": t_cfc, "ncps_cfc": t_ncps_cfc}, n_iter, t_warm)
        ltc_times, ltc_loss = _training(
            {"ours_ltc": t_ltc, "ncps_ltc": t_ncps_ltc},
            max(n_iter // 3, 3), 1 if quick else 2)
        train_times.update(ltc_times)
        first_loss.update(ltc_loss)
        train = {name: _stats(t) for name, t in train_times.items()}
    finally:
        torch.set_num_threads(threads)

    def faster(ref, ours, key='p50', table=step):
        return table[ref][key] / table[ours][key]

    # conservative: compare with the faster of ncps's module call and bare cell call
    ncps_cfc_best = min(('ncps_cfc', 'ncps_cfc_cell'), key=lambda n: step[n]['p50'])
    ncps_ltc_best = min(('ncps_ltc', 'ncps_ltc_cell'), key=lambda n: step[n]['p50'])
    ratios = {
        'cfc_step_speedup_p50': faster(ncps_cfc_best, 'ours_cfc'),
        'cfc_step_speedup_p99': faster(ncps_cfc_best, 'ours_cfc', 'p99'),
        'cfc_step_speedup_vs_ncps_module_p50': faster('ncps_cfc', 'ours_cfc'),
        'ltc_step_speedup_p50': faster(ncps_ltc_best, 'ours_ltc'),
        'ltc_step_speedup_p99': faster(ncps_ltc_best, 'ours_ltc', 'p99'),
        'ltc_step_speedup_vs_ncps_module_p50': faster('ncps_ltc', 'ours_ltc'),
        'cfc_step_interface_overhead_us_p50': step['ours_cfc']['p50']
        - step['ours_cfc_numpy_kernel']['p50'],
        'cfc_step_vs_lstm_cell_p50': step['ours_cfc']['p50'] / step['lstm_cell']['p50'],
        'cfc_train_speedup': faster('ncps_cfc', 'ours_cfc', table=train),
        'ltc_train_speedup': faster('ncps_ltc', 'ours_ltc', table=train),
    }
    met = {
        'cfc_step_speedup': ratios['cfc_step_speedup_p50'] >= TARGETS['cfc_step_speedup_min'],
        'cfc_step_p99': step['ours_cfc']['p99'] < TARGETS['cfc_step_p99_us_max'],
        'ltc_step_speedup': ratios['ltc_step_speedup_p50'] >= TARGETS['ltc_step_speedup_min'],
        'cfc_train_speedup': ratios['cfc_train_speedup'] >= TARGETS['cfc_train_speedup_min'],
    }
    loss_gap = {'cfc': abs(first_loss['ours_cfc'] - first_loss['ncps_cfc']),
                'ltc': abs(first_loss['ours_ltc'] - first_loss['ncps_ltc'])}
    return {
        'config': {'inputs': INPUTS, 'units': UNITS, 'outputs': OUTPUTS,
                   'wiring': 'auto_ncp(19, 2, sparsity_level=0.5)', 'threads': 1, 'batch': 1,
                   'steps_timed': n_steps, 'warmup': warmup, 'train_seq': SEQ,
                   'train_batch': BATCH, 'train_iters': n_iter, 'quick': quick,
                   'ncps_step_reference': {'cfc': ncps_cfc_best, 'ltc': ncps_ltc_best},
                   'train_timespans': 'None (1.0): ncps batched timespans are broken',
                   # other processes on the machine: tails (p99) are preemption when this is high
                   'load_average_1min': [load_before, os.getloadavg()[0]],
                   'cpu_count': os.cpu_count()},
        'equal_outputs': {'tolerance': EQUAL_TOL, 'max_abs_diff': equal, 'passed': True,
                          'first_train_loss_abs_diff': loss_gap},
        'step_us': step,
        'train_ms': train,
        'ratios': ratios,
        'targets': TARGETS,
        'targets_met': met,
    }


def format_table(results):
    """Plain-text table of the results."""
    lines = ['streaming step, batch 1, 1 thread (microseconds)',
             f'  {"model":24s} {"p50":>8s} {"p90":>8s} {"p99":>8s}']
    for name, s in results['step_us'].items():
        lines.append(f'  {name:24s} {s["p50"]:8.1f} {s["p90"]:8.1f} {s["p99"]:8.1f}')
    lines += ['training step, seq 32 x batch 16, fwd+bwd+Adam (milliseconds)',
              f'  {"model":24s} {"p50":>8s} {"p90":>8s}']
    for name, s in results['train_ms'].items():
        lines.append(f'  {name:24s} {s["p50"]:8.2f} {s["p90"]:8.2f}')
    lines.append('ratios (same run)')
    for name, value in results['ratios'].items():
        lines.append(f'  {name:38s} {value:6.2f}')
    eq = results['equal_outputs']
    lines.append(f'equal to ncps (max |diff|): cfc {eq["max_abs_diff"]["cfc"]:.2e}, '
                 f'ltc {eq["max_abs_diff"]["ltc"]:.2e} (tolerance {eq["tolerance"]:.0e})')
    load = results['config']['load_average_1min']
    lines.append(f'machine load average (1 min) before/after: {load[0]:.1f}/{load[1]:.1f} on '
                 f'{results["config"]["cpu_count"]} cores (p99 reflects preemption when high)')
    lines.append('targets: ' + ', '.join(
        f'{k} {"met" if v else "MISSED"}' for k, v in results['targets_met'].items()))
    return '\n'.join(lines)
