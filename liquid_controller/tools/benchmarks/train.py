"""`liquid-controller bench train`: cost of one training step of every model type, same run, same data.

A step is what the trainer does per batch (:func:`liquid_controller.train.trainer.tbptt_update`): the
full policy (conv head + core + readouts) over ``batch`` windows of ``seq`` frames, truncated BPTT in
chunks of ``tbptt`` frames, loss through the BarrierNet layer, backward, gradient clipping and AdamW.
Models come from the shipped configs (config/train_<core>.yaml) and see the same synthetic batch. They
are timed in interleaved rounds so load from other processes on the machine hits all of them alike;
ratios (``<core>_vs_cfc``: time of the core / time of cfc) come from the same run.
"""
import time

import numpy as np
import torch

CORES = ('cfc', 'ltc', 'lstm', 'cnn')


def _batch(config, batch, seq, seed=0):
    """Synthetic batch with the trainer's layout (images already float in [0, 1])."""
    g = torch.Generator().manual_seed(seed)
    pc = config.policy_config()
    return {
        'images': torch.rand(batch, seq, 3, pc.image_height, pc.image_width, generator=g),
        'imu': torch.randn(batch, seq, 6, generator=g),
        'dt': torch.full((batch, seq), 1.0 / 30.0),
        'command': torch.rand(batch, seq, 2, generator=g) * torch.tensor([pc.v_max, 2 * pc.w_max])
        - torch.tensor([0.0, pc.w_max]),
        'prev_command': torch.zeros(batch, seq, 2) + torch.tensor([1.0, 0.0]),
        'truth': torch.randn(batch, seq, 2, generator=g) * 0.1,
        'truth_mask': torch.ones(batch, seq, dtype=torch.bool),
        'mask': torch.ones(batch, seq, dtype=torch.bool),
    }


def _setup(core, batch, seq, tbptt):
    from liquid_controller.paths import config_file
    from liquid_controller.policy.driving_policy import DrivingPolicy
    from liquid_controller.train.config import TrainConfig
    from liquid_controller.train.losses import barrier_layer
    data = TrainConfig.load(config_file(f'train_{core}.yaml')).to_dict()
    data['train'].update(seq_len=seq, tbptt_steps=min(tbptt, seq), batch_size=batch)
    config = TrainConfig.from_dict(data)
    policy = DrivingPolicy(config.policy_config())
    optimizer = torch.optim.AdamW(policy.parameters(), lr=config.lr, weight_decay=config.weight_decay)
    pc = config.policy_config()
    scale = torch.tensor([pc.v_max, pc.w_max])
    layer = barrier_layer(config.safety_config())
    return config, policy, optimizer, scale, layer, _batch(config, batch, seq)


def run(args):
    """Time one training step per core (median over rounds). ``args.quick``: small batch, 2 rounds."""
    from liquid_controller.train.trainer import tbptt_update
    quick = bool(getattr(args, 'quick', False))
    batch, seq, tbptt = (4, 8, 4) if quick else (16, 32, 16)
    rounds = 2 if quick else 5
    threads = torch.get_num_threads()
    setups = {core: _setup(core, batch, seq, tbptt) for core in CORES}
    times = {core: [] for core in CORES}
    losses = {}
    for core, (config, policy, opt, scale, layer, data) in setups.items():  # warm-up (allocations)
        tbptt_update(policy, opt, data, config, scale, layer)
    for _ in range(rounds):
        for core, (config, policy, opt, scale, layer, data) in setups.items():
            t0 = time.perf_counter()
            terms = tbptt_update(policy, opt, data, config, scale, layer)
            times[core].append(time.perf_counter() - t0)
            losses[core] = terms['loss']
    results = {'batch': batch, 'seq': seq, 'tbptt': tbptt, 'rounds': rounds, 'threads': threads, 'models': {}}
    base = float(np.median(times['cfc']))
    for core in CORES:
        policy = setups[core][1]
        med = float(np.median(times[core]))
        results['models'][core] = {
            'step_ms': round(med * 1e3, 2),
            'frames_per_s': round(batch * seq / med, 1),
            'parameters': policy.num_parameters(),
            'liquid_neurons': policy.liquid_neurons,
            'vs_cfc': round(med / base, 3),
            'finite_loss': bool(np.isfinite(losses[core])),
        }
    results['ltc_vs_cfc_training_time'] = results['models']['ltc']['vs_cfc']
    return results


def format_table(results):
    """Plain-text table of :func:`run`'s results."""
    lines = [f"training step: batch {results['batch']} x {results['seq']} frames, TBPTT {results['tbptt']}, "
             f"{results['threads']} threads, median of {results['rounds']} rounds",
             f"{'model':6} {'step ms':>10} {'frames/s':>10} {'params':>9} {'liquid':>7} {'x cfc':>7}"]
    for core, m in results['models'].items():
        lines.append(f"{core:6} {m['step_ms']:10.1f} {m['frames_per_s']:10.1f} {m['parameters']:9d} "
                     f"{m['liquid_neurons']:7d} {m['vs_cfc']:7.2f}")
    lines.append(f"LTC / CfC training time per step: {results['ltc_vs_cfc_training_time']:.2f}")
    return '\n'.join(lines)
