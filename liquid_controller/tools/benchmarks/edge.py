"""`liquid-controller bench edge`: the torch backend against the torch-free onnx backend.

Per backend, each in a fresh subprocess (the onnx one with torch made unimportable, as on an edge
install):

- import + load: seconds from a bare interpreter to a ready Controller (import the runtime, load and
  check the model, build the Controller including its warm-up steps);
- resident memory (VmRSS) after warm-up, of the Controller alone and of the controller node (rclpy
  imported, the ``ControllerNode`` created and configured: the node's own model load and Controller);
- the policy step (conv head + core + readouts, batch 1, preprocessed inputs, hidden state carried,
  irregular dt) and the whole Controller step (preprocess + policy + safety filter) p50/p99, with the
  process free to use every core and pinned to one core (``os.sched_setaffinity``, a stand-in for a
  small board); both backends run one intra-op thread (the runtime's setting);
- the commands of both backends over the same frames (max |difference|).

The conv head's arithmetic limit: its multiply-adds (counted from the layer shapes) at this core's
measured float32 peak (a large single-threaded matrix product), against the measured policy step.
"""
from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
import time

import numpy as np

MODEL = 'cfc'
TARGETS = {
    'onnx_node_rss_mb_max': 120.0,
    'onnx_import_load_s_max': 1.0,
    'onnx_step_speedup_pinned_min': 2.0,       # torch p50 / onnx p50, one core
    'max_abs_command_diff_max': 1e-5,
}
_BLOCK_TORCH = '''
import importlib.abc, sys
class _BlockTorch(importlib.abc.MetaPathFinder):
    def find_spec(self, name, path=None, target=None):
        if name == 'torch' or name.startswith('torch.'):
            raise ImportError('torch is blocked (edge benchmark)')
        return None
sys.meta_path.insert(0, _BlockTorch())
'''


def _rss_mb():
    with open('/proc/self/status') as f:
        for line in f:
            if line.startswith('VmRSS:'):
                return int(line.split()[1]) / 1024.0
    return float('nan')


def _percentiles(seconds):
    a = np.asarray(seconds) * 1e6
    return {'p50_us': float(np.percentile(a, 50)), 'p99_us': float(np.percentile(a, 99)),
            'mean_us': float(a.mean())}


def worker(backend, model, steps, mode):
    """One measurement in this (fresh) process; returns a JSON-able dict. ``mode``: 'load' (import
    + load + RSS + commands), 'node' (RSS of a configured ControllerNode), 'steps_all' or
    'steps_pinned' (step latencies)."""
    t0 = time.perf_counter()
    from liquid_controller.runtime.controller import Controller, MeasuredState
    from liquid_controller.runtime.policy_backend import load_runtime_model
    from liquid_controller.runtime.preprocess import ImuWindow
    from liquid_controller.runtime.settings import Settings
    if mode == 'node':
        import rclpy

        from liquid_controller.ros.controller_node import ControllerNode
        rclpy.init(args=['--ros-args', '-p', f'model:={model}', '-p', f'backend:={backend}'])
        node = ControllerNode()
        node.trigger_configure()
        ok = node.controller is not None
        rss = _rss_mb()
        node.destroy_node()
        rclpy.shutdown()
        return {'node_configured': ok, 'node_rss_mb': rss,
                'torch_imported': 'torch' in sys.modules}
    settings = Settings({'backend': backend})
    loaded = load_runtime_model(model, backend)
    ctl = Controller(loaded, settings.controller_config(), settings.safety_config())
    import_load_s = time.perf_counter() - t0
    ctl.start(now=0.0)
    rng = np.random.default_rng(0)
    frames = rng.integers(0, 256, (8, 64, 128, 3), dtype=np.uint8)
    stamp, commands = 0.0, []
    for i in range(60):                                     # warm-up and the compared commands
        stamp += float(rng.uniform(0.02, 0.06))
        window = ImuWindow(np.array([stamp]), rng.normal(0, 0.2, (1, 3)), np.array([[0, 0, 9.81]]))
        commands.append(ctl.step(frames[i % 8], stamp, window, MeasuredState(speed=1.0),
                                 now=stamp).command.tolist())
    out = {'backend': ctl.backend, 'torch_imported': 'torch' in sys.modules}
    if mode == 'load':
        out.update(import_load_s=import_load_s, controller_rss_mb=_rss_mb(), commands=commands)
        return out
    if mode == 'steps_pinned':
        os.sched_setaffinity(0, {sorted(os.sched_getaffinity(0))[0]})
    stepper = ctl._stepper
    image = (frames[0].transpose(2, 0, 1)[None] / np.float32(255)).astype(np.float32)
    imu = np.zeros(6, np.float32)
    state = stepper.initial_state()
    policy_s, controller_s = [], []
    for i in range(steps):                                  # the policy step alone
        dt = float(rng.uniform(0.02, 0.05))
        t = time.perf_counter()
        state = stepper.step(image, imu, dt, state).state
        policy_s.append(time.perf_counter() - t)
    for i in range(steps):                                  # the whole Controller step
        stamp += float(rng.uniform(0.02, 0.05))
        window = ImuWindow(np.array([stamp]), np.zeros((1, 3)), np.array([[0, 0, 9.81]]))
        t = time.perf_counter()
        ctl.step(frames[i % 8], stamp, window, MeasuredState(speed=1.0), now=stamp)
        controller_s.append(time.perf_counter() - t)
    out.update(cpus=len(os.sched_getaffinity(0)), policy_step=_percentiles(policy_s),
               controller_step=_percentiles(controller_s))
    return out


def _run_worker(backend, model, steps, mode):
    code = (_BLOCK_TORCH if backend == 'onnx' else '') + (
        'import json, sys\n'
        'from liquid_controller.tools.benchmarks.edge import worker\n'
        f'print("RESULT " + json.dumps(worker({backend!r}, {str(model)!r}, {steps}, {mode!r})))\n')
    env = dict(os.environ, OMP_NUM_THREADS='1', OPENBLAS_NUM_THREADS='1')
    proc = subprocess.run([sys.executable, '-c', code], capture_output=True, text=True, env=env,
                          timeout=600)
    lines = [ln for ln in proc.stdout.splitlines() if ln.startswith('RESULT ')]
    if proc.returncode != 0 or not lines:
        raise RuntimeError(f'edge benchmark worker ({backend}, {mode}) failed: '
                           f'{proc.stderr[-2000:]}')
    return json.loads(lines[-1][len('RESULT '):])


def conv_head_macs(policy):
    """Multiply-adds of the conv head for one frame (convolutions + the linear layer)."""
    import torch
    macs, shape = 0, (policy.config.image_channels, policy.config.image_height,
                      policy.config.image_width)
    x = torch.zeros((1,) + shape)
    with torch.no_grad():
        for module in policy.head.convs:
            y = module(x)
            if isinstance(module, torch.nn.Conv2d):
                k = module.in_channels * module.kernel_size[0] * module.kernel_size[1]
                macs += y.numel() * k
            x = y
    return macs + policy.head.linear.in_features * policy.head.linear.out_features


def peak_gflops_one_core(seconds=1.0):
    """float32 multiply-add throughput of one core: a 384x384 matrix product, one BLAS thread,
    run in a subprocess pinned to one CPU (GFLOP/s, 2 per multiply-add)."""
    code = ('import os, time, numpy as np\n'
            'os.sched_setaffinity(0, {sorted(os.sched_getaffinity(0))[0]})\n'
            'a = np.random.rand(384, 384).astype(np.float32); b = a.copy(); a @ b\n'
            f't0 = time.perf_counter(); n = 0\nwhile time.perf_counter() - t0 < {seconds}:\n'
            '    a @ b; n += 1\n'
            'print(2 * 384 ** 3 * n / (time.perf_counter() - t0) / 1e9)\n')
    env = dict(os.environ, OMP_NUM_THREADS='1', OPENBLAS_NUM_THREADS='1', MKL_NUM_THREADS='1')
    out = subprocess.run([sys.executable, '-c', code], capture_output=True, text=True, env=env,
                         timeout=120, check=True)
    return float(out.stdout.strip().splitlines()[-1])


def run(args):
    """Export the model, measure both backends (fresh subprocesses), return the results dict."""
    import torch

    from liquid_controller.runtime.model_file import load_model
    from liquid_controller.runtime.onnx_export_folder import export_onnx_folder
    quick = bool(getattr(args, 'quick', False))
    steps = 300 if quick else 2000
    model = load_model(MODEL)
    torch.set_num_threads(1)
    results = {'model': MODEL, 'steps': steps}
    with tempfile.TemporaryDirectory(prefix='lc-edge-') as tmp:
        export = export_onnx_folder(model, os.path.join(tmp, MODEL))
        results['export_max_abs_diff'] = export.max_abs_diff
        where = {'torch': MODEL, 'onnx': os.path.join(tmp, MODEL)}
        per = {}
        for backend in ('torch', 'onnx'):
            load = _run_worker(backend, where[backend], steps, 'load')
            node = _run_worker(backend, where[backend], steps, 'node')
            all_cores = _run_worker(backend, where[backend], steps, 'steps_all')
            pinned = _run_worker(backend, where[backend], steps, 'steps_pinned')
            per[backend] = {
                'import_load_s': load['import_load_s'], 'controller_rss_mb': load['controller_rss_mb'],
                'node_rss_mb': node['node_rss_mb'], 'node_configured': node['node_configured'],
                'torch_imported': load['torch_imported'] or node['torch_imported'],
                'all_cores': {'cpus': all_cores['cpus'], 'policy_step': all_cores['policy_step'],
                              'controller_step': all_cores['controller_step']},
                'pinned_1_core': {'policy_step': pinned['policy_step'],
                                  'controller_step': pinned['controller_step']},
                '_commands': load['commands'],
            }
    diff = float(np.abs(np.array(per['torch'].pop('_commands'))
                        - np.array(per['onnx'].pop('_commands'))).max())
    results['backends'] = per
    results['max_abs_command_diff'] = diff
    macs = conv_head_macs(model.policy)
    gflops = peak_gflops_one_core(0.5 if quick else 1.5)
    limit_us = 2 * macs / (gflops * 1e9) * 1e6
    onnx_p50 = per['onnx']['pinned_1_core']['policy_step']['p50_us']
    torch_p50 = per['torch']['pinned_1_core']['policy_step']['p50_us']
    results['conv_head'] = {'macs': macs, 'peak_gflops_1_core': gflops,
                            'arithmetic_limit_us': limit_us,
                            'onnx_step_over_limit': onnx_p50 / limit_us,
                            'torch_step_over_limit': torch_p50 / limit_us}
    results['ratios'] = {
        'step_speedup_pinned_p50': torch_p50 / onnx_p50,
        'step_speedup_pinned_p99': per['torch']['pinned_1_core']['policy_step']['p99_us']
        / per['onnx']['pinned_1_core']['policy_step']['p99_us'],
        'import_load_speedup': per['torch']['import_load_s'] / per['onnx']['import_load_s'],
        'node_rss_ratio': per['onnx']['node_rss_mb'] / per['torch']['node_rss_mb'],
    }
    results['targets'] = TARGETS
    results['targets_met'] = {
        'onnx_node_rss_mb_max': per['onnx']['node_rss_mb'] <= TARGETS['onnx_node_rss_mb_max'],
        'onnx_import_load_s_max': per['onnx']['import_load_s'] <= TARGETS['onnx_import_load_s_max'],
        'onnx_step_speedup_pinned_min':
            results['ratios']['step_speedup_pinned_p50'] >= TARGETS['onnx_step_speedup_pinned_min'],
        'onnx_p99_no_slower_pinned': results['ratios']['step_speedup_pinned_p99'] >= 1.0,
        'max_abs_command_diff_max': diff <= TARGETS['max_abs_command_diff_max'],
        'onnx_torch_free': not per['onnx']['torch_imported'],
    }
    return results


def format_table(results):
    """Human-readable summary of ``run``'s results."""
    lines = [f"model {results['model']}: export max |onnx - torch| {results['export_max_abs_diff']:.2g}, "
             f"commands max |diff| {results['max_abs_command_diff']:.2g}",
             f"{'backend':8} {'import+load s':>13} {'ctl RSS MB':>10} {'node RSS MB':>11} "
             f"{'policy p50/p99 us (all)':>24} {'policy p50/p99 us (1 core)':>27} "
             f"{'controller p50/p99 us (1 core)':>31}"]
    for name, r in results['backends'].items():
        a, p = r['all_cores']['policy_step'], r['pinned_1_core']['policy_step']
        c = r['pinned_1_core']['controller_step']
        lines.append(f"{name:8} {r['import_load_s']:13.2f} {r['controller_rss_mb']:10.0f} "
                     f"{r['node_rss_mb']:11.0f} {a['p50_us']:11.0f}/{a['p99_us']:<12.0f} "
                     f"{p['p50_us']:13.0f}/{p['p99_us']:<13.0f} {c['p50_us']:15.0f}/{c['p99_us']:<15.0f}")
    h = results['conv_head']
    lines.append(f"conv head {h['macs'] / 1e6:.1f} M multiply-adds; one core peaks at "
                 f"{h['peak_gflops_1_core']:.0f} GFLOP/s -> limit {h['arithmetic_limit_us']:.0f} us; "
                 f"onnx step = {h['onnx_step_over_limit']:.1f}x the limit, torch "
                 f"{h['torch_step_over_limit']:.1f}x")
    lines.append(f"ratios: {json.dumps({k: round(v, 2) for k, v in results['ratios'].items()})}")
    lines.append(f"targets met: {results['targets_met']}")
    return '\n'.join(lines)
