"""Benchmark `replay`: offline bag replay throughput, in frames per second and relative to real time.

A bag is recorded in the MuJoCo world first (expert driver, 64x128 camera at 30 Hz, IMU 200 Hz; 2 s
with --quick, 10 s otherwise) and an untrained model of the default configuration is created (same
compute as a trained one). Then the bag is replayed (a) without an output bag (decode + controller)
and (b) writing the full output bag (inputs copied + computed topics), ``repeats`` times each; the
median run is reported. Real time is the reference: ``realtime_factor`` = bag seconds / wall seconds
(1.0 = as fast as the robot produced the data), measured in the same run.
"""
from __future__ import annotations

import tempfile
import time
from pathlib import Path


def _replay(bag, model, out, config):
    from liquid_controller.data.replay import replay_bag
    t0 = time.perf_counter()
    result = replay_bag(bag, model, out=out, config=config)
    wall = time.perf_counter() - t0  # includes opening the bag and building the controller
    m = result.metrics()
    # steady: the replay loop alone (ReplayResult.wall_s starts after the controller is built)
    return {'frames': m['frames'], 'bag_s': m['bag_seconds'], 'wall_s': wall,
            'frames_per_s': m['frames'] / wall, 'realtime_factor': m['bag_seconds'] / wall,
            'steady_frames_per_s': m['frames_per_s'], 'steady_realtime_factor': m['realtime_factor'],
            'stage_mean_ms': {k: v['mean_ms'] for k, v in m['stages'].items()}}


def run(args):
    """Record, replay ``repeats`` times with and without an output bag; return the median runs."""
    import torch

    from liquid_controller.data.recording import record_expert
    from liquid_controller.data.replay import ReplayConfig
    from liquid_controller.runtime.model_file import create_random_model, load_model
    torch.set_num_threads(1)
    quick = bool(getattr(args, 'quick', False))
    seconds, repeats = (2.0, 1) if quick else (10.0, 3)
    with tempfile.TemporaryDirectory(prefix='lc-bench-replay-') as tmp:
        tmp = Path(tmp)
        record_expert('summer', minutes=seconds / 60.0, out=tmp / 'bag', seed=0, progress=False)
        create_random_model(tmp / 'model.json', seed=0)
        model = load_model(tmp / 'model.json')
        config = ReplayConfig()
        results = {}
        for name, with_out in (('no_output', False), ('output_bag', True)):
            runs = []
            for k in range(repeats):
                out = tmp / f'out_{name}_{k}' if with_out else None
                runs.append(_replay(tmp / 'bag', model, out, config))
            runs.sort(key=lambda r: r['frames_per_s'])
            results[name] = runs[len(runs) // 2]
            results[name]['frames_per_s_runs'] = [r['frames_per_s'] for r in runs]
    return {'bag_seconds': seconds, 'camera_hz': 30.0, 'image': '64x128 rgb8 Image', 'repeats': repeats,
            'model': 'untrained, default PolicyConfig', **results}


def format_table(results):
    lines = [f"offline replay of a {results['bag_seconds']:.0f} s bag ({results['image']} at "
             f"{results['camera_hz']:.0f} Hz + IMU 200 Hz), median of {results['repeats']} run(s); "
             f"reference: real time",
             f"{'mode':<14}{'frames':>8}{'wall s':>9}{'frames/s':>10}{'x real time':>13}"
             f"{'loop frames/s':>15}{'loop x rt':>11}"]
    for name in ('no_output', 'output_bag'):
        r = results[name]
        lines.append(f"{name:<14}{r['frames']:>8}{r['wall_s']:>9.2f}{r['frames_per_s']:>10.1f}"
                     f"{r['realtime_factor']:>13.2f}{r['steady_frames_per_s']:>15.1f}"
                     f"{r['steady_realtime_factor']:>11.2f}")
    stages = results['output_bag']['stage_mean_ms']
    lines.append('wall s / frames/s include loading the bag and building + warming up the controller; '
                 'loop = the replay loop alone')
    lines.append('per-frame stage means (ms, output_bag): ' + ', '.join(f'{k} {v:.2f}' for k, v in stages.items()))
    return '\n'.join(lines)
