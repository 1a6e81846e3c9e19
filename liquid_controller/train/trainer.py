"""The trainer: bags -> prepared cache -> sequences -> policy through the BarrierNet layer -> model file.

    result = train(TrainConfig.load('config/train_cfc.yaml'), bags=['bags/'], out='models/cfc')

One training *step* is one batch of ``batch_size`` windows of ``seq_len`` frames, processed by truncated
BPTT: the window is cut into chunks of ``tbptt_steps`` frames, each chunk is one optimiser update, and
the hidden state is carried into the next chunk detached. Every frame is fed with its real elapsed time
(dt from header stamps, clipped to ``max_dt`` like the runtime Controller does).

Everything random is seeded: weights (PolicyConfig.seed), the order of windows in epoch e (seed, e),
the augmentation of step s (seed, s). A resumed run therefore continues exactly where it stopped:
``train(..., resume=True)`` reloads weights, optimiser, history and the position in the epoch.
"""
import math
import platform
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
from torch.utils.data import default_collate

from liquid_controller.data.augment import augment_images, mirror_batch
from liquid_controller.data.dataset import (SequenceDataset, imu_statistics, load_episodes, prepare,
                                            split_episodes)
from liquid_controller.errors import InputError
from liquid_controller.train import checkpoint as ckpt
from liquid_controller.train.config import TrainConfig
from liquid_controller.train.curves import plot_learning_curves
from liquid_controller.train.distributed import DistributedContext, context_from_env
from liquid_controller.train.losses import barrier_layer, compute_loss, filter_commands, lane_input

# TrainConfig fields that may change when a run is resumed (they do not change what was learned so far)
RESUMABLE_CHANGES = ('epochs', 'max_steps', 'patience', 'checkpoint_every', 'num_threads', 'device')


@dataclass
class TrainResult:
    """What a run produced: the model card path, metrics and where the run's files are."""

    model_path: Path
    run_dir: Path
    curves_path: Path
    metrics: dict
    history: dict
    steps: int
    stopped: str                      # 'epochs', 'max_steps' or 'early_stopping'
    card: object = None
    data: dict = field(default_factory=dict)
    rank: int = 0                     # this process's rank; only rank 0 wrote the model file
    world_size: int = 1


def select_device(name):
    """'auto' -> CUDA when available, else CPU; 'cuda' without a GPU is an InputError."""
    if name == 'auto':
        return torch.device('cuda' if torch.cuda.is_available() else 'cpu')
    if name == 'cuda' and not torch.cuda.is_available():
        raise InputError('train.device', name, 'CUDA requested but torch sees no GPU')
    return torch.device(name)


def _to_device(batch, device):
    """Collated batch (uint8 images (B,T,H,W,3)) -> tensors on ``device``, images float (B,T,3,H,W)."""
    from liquid_controller.runtime.preprocess import images_to_tensor
    out = {k: v.to(device) for k, v in batch.items() if k != 'images'}
    out['images'] = images_to_tensor(batch['images'].numpy()).to(device)   # (B, T, 3, H, W) in [0, 1]
    return out


def _chunk(batch, a, b):
    return {k: v[:, a:b] for k, v in batch.items()}


def tbptt_update(policy, optimizer, batch, config, command_scale, layer=None, model=None, dist=None):
    """Truncated BPTT over one batch of windows: one optimiser update per chunk of ``tbptt_steps``
    frames, hidden state carried across chunks and detached between them.

    batch: dict of (B, T, ...) tensors on the policy's device (images float (B, T, 3, H, W)).
    model: what to call forward on (``policy`` itself, or its DistributedDataParallel wrapper);
    dist: the DistributedContext when ``batch`` is this rank's shard of a global batch (see
    train/distributed.py: losses are normalised by the global frame counts, gradients summed).
    Returns the frame-weighted mean loss terms (floats) of the whole (global) batch.
    """
    policy.train()
    model = policy if model is None else model
    world = dist.world_size if dist is not None else 1
    state, sums, frames = None, {}, 0
    steps = batch['images'].shape[1]
    for a in range(0, steps, config.tbptt_steps):
        part = _chunk(batch, a, min(a + config.tbptt_steps, steps))
        counts = None
        if dist is not None and dist.active:
            local = [float(part['mask'].sum()), float((part['truth_mask'] & part['mask']).sum())]
            counts = tuple(int(round(v)) for v in dist.all_sum_floats(local))
            if counts[0] == 0:
                break                                   # only padding left in every rank's windows
        elif not part['mask'].any():
            break                                       # only padding left in every window
        out, state = model(part['images'], part['imu'], part['dt'], state)
        terms = compute_loss(out, part, config, command_scale, layer, counts=counts)
        optimizer.zero_grad(set_to_none=True)
        (terms.total * world).backward()                # DDP averages over ranks: x world = the sum
        torch.nn.utils.clip_grad_norm_(policy.parameters(), config.grad_clip)
        optimizer.step()
        state = state.detach()                          # truncate the gradient between chunks
        values = terms.detached()
        chunk_frames = terms.frames
        if counts is not None:                          # shares of the global means: add them up
            names = sorted(values)
            values = dict(zip(names, dist.all_sum_floats([values[k] for k in names])))
            chunk_frames = counts[0]
        for k, v in values.items():
            sums[k] = sums.get(k, 0.0) + v * chunk_frames
        frames += chunk_frames
    return {k: v / max(1, frames) for k, v in sums.items()}


class Trainer:
    """Owns the data, the policy, the optimiser and the loop. Use :func:`train` for the whole run."""

    def __init__(self, config: TrainConfig, bags, run_dir, cache_dir=None, progress=True, dist=None):
        if not isinstance(config, TrainConfig):
            raise InputError('config', type(config).__name__, 'expected a TrainConfig')
        self.config = config
        self.run_dir = Path(run_dir)
        self.cache_dir = Path(cache_dir) if cache_dir is not None else self.run_dir.parent / 'cache'
        if config.num_threads:
            torch.set_num_threads(config.num_threads)
        self.device = select_device(config.device)
        self.dist = dist if dist is not None else DistributedContext()
        if self.dist.backend == 'nccl':
            self.device = torch.device('cuda', self.dist.local_rank)   # one GPU per process
        self.progress = progress and self.dist.is_main                 # one progress bar, from rank 0
        if self.dist.active and config.batch_size < self.dist.world_size:
            raise InputError('train.batch_size', config.batch_size,
                             f'the global batch must hold at least one window per process '
                             f'(world size {self.dist.world_size})')
        # rank 0 builds the dataset cache; the others wait and read it (nobody rebuilds it)
        if self.dist.is_main:
            self._prepare_data(bags)
        self.dist.barrier()
        if not self.dist.is_main:
            self._prepare_data(bags)
        from liquid_controller.policy.driving_policy import DrivingPolicy
        self.policy_config = config.policy_config()
        self.policy = DrivingPolicy(self.policy_config).to(self.device)
        self.model = self.dist.wrap(self.policy, self.device)   # DDP: broadcasts rank 0's weights
        self.safety_config = config.safety_config()
        self.layer = barrier_layer(self.safety_config).to(self.device) if config.use_barrier else None
        self.command_scale = torch.tensor([self.policy_config.v_max, self.policy_config.w_max],
                                          dtype=torch.float32, device=self.device)
        self.optimizer = torch.optim.AdamW(self.policy.parameters(), lr=config.lr,
                                           weight_decay=config.weight_decay)
        self.step = 0
        self.epoch = 0
        self.batch_in_epoch = 0
        self.history = {'steps': [], 'epochs': []}
        self.best = {'val_loss': None, 'epoch': None, 'step': None}
        self.bad_epochs = 0
        self.train_seconds = 0.0

    # -------------------------------------------------------------------------------------- data
    def _prepare_data(self, bags):
        c = self.config
        self.prepared = prepare(bags, self.cache_dir, c.dataset, progress=self.progress)
        episodes = load_episodes(self.prepared)
        train_eps, val_eps, self.split = split_episodes(episodes, c.val_fraction, c.seed)
        self.imu_mean, self.imu_std = imu_statistics(train_eps)
        kw = dict(imu_mean=self.imu_mean, imu_std=self.imu_std, max_dt=c.max_dt)
        self.train_set = SequenceDataset(train_eps, c.seq_len, c.stride, **kw)
        self.val_set = SequenceDataset(val_eps, c.seq_len, c.seq_len, **kw) if val_eps else None
        if self.val_set is not None and c.val_windows and len(self.val_set) > c.val_windows:
            keep = np.linspace(0, len(self.val_set) - 1, c.val_windows).round().astype(int)
            self.val_set.windows = [self.val_set.windows[i] for i in keep]   # fixed, evenly spaced
        periods = [e['report']['frame_period'] for e in self.prepared.entries]
        self.nominal_dt = float(np.median(periods))
        self.split_counts = {
            'train': {'bags': len({e.bag for e in train_eps}), 'segments': len(train_eps),
                      'windows': len(self.train_set), 'frames': int(sum(len(e) for e in train_eps))},
            'val': {'bags': len({e.bag for e in val_eps}), 'segments': len(val_eps),
                    'windows': len(self.val_set) if self.val_set is not None else 0,
                    'frames': int(sum(len(e) for e in val_eps))}}

    def split_report(self):
        """Lines describing the train/validation split; a line starting with 'warning:' when the actual
        validation share of the frames differs from ``val_fraction`` by more than 10 points."""
        t, v = self.split_counts['train'], self.split_counts['val']
        total = t['frames'] + v['frames']
        share = v['frames'] / total if total else 0.0

        def part(d):
            return (f"{d['bags']} bag(s), {d['segments']} segment(s), {d['windows']} window(s), "
                    f"{d['frames']} frames")
        lines = [f"data split by {self.split.get('by')}: train {part(t)}; validation {part(v)} "
                 f"({100 * share:.0f}% of frames, val_fraction {self.config.val_fraction:g})"]
        if abs(share - self.config.val_fraction) > 0.10:
            lines.append(f'warning: validation holds {100 * share:.0f}% of the frames, not the '
                         f'{100 * self.config.val_fraction:.0f}% of val_fraction: the split takes whole '
                         f"{'bags' if self.split.get('by') == 'bag' else 'segments'}; record more (or "
                         'equal-length) bags to get closer')
        return lines

    def batches_per_epoch(self):
        n = len(self.train_set)
        if self.config.windows_per_epoch:
            n = min(n, self.config.windows_per_epoch)
        return max(1, math.ceil(n / self.config.batch_size))

    def planned_steps(self):
        """Steps the lr schedule spans: all epochs (independent of max_steps, so a run stopped by
        max_steps and resumed with a larger one follows the same schedule)."""
        return self.config.epochs * self.batches_per_epoch()

    def _epoch_order(self, epoch):
        g = torch.Generator().manual_seed(self.config.seed * 1_000_003 + epoch)
        order = torch.randperm(len(self.train_set), generator=g).tolist()
        if self.config.windows_per_epoch:
            order = order[:self.config.windows_per_epoch]
        b = self.config.batch_size
        return [order[i:i + b] for i in range(0, len(order), b)]

    def _lr(self, step):
        c = self.config
        if c.lr_schedule == 'constant':
            return c.lr
        total = max(1, self.planned_steps())
        warm = max(1, total // 50)
        if step < warm:
            return c.lr * (step + 1) / warm
        progress = min(1.0, (step - warm) / max(1, total - warm))
        return c.lr * (0.05 + 0.95 * 0.5 * (1.0 + math.cos(math.pi * progress)))

    # ------------------------------------------------------------------------------------ training
    def train_step(self, indices):
        """One global batch of windows with truncated BPTT; returns the frame-weighted mean loss terms.

        Every rank builds and augments the whole global batch with the same generator, then trains
        on its shard of rows (train/distributed.py), so the result does not depend on the world size.
        """
        c = self.config
        batch = _to_device(default_collate([self.train_set[i] for i in indices]), self.device)
        g = torch.Generator().manual_seed(c.seed * 1_000_003 + 7919 * (self.step + 1))
        if c.augment.mirror > 0:
            batch, _ = mirror_batch(batch, c.augment.mirror, self.imu_mean, self.imu_std, g)
        batch['images'] = augment_images(batch['images'], c.augment, g)
        if self.dist.active:
            rows = torch.arange(len(indices))
            mine = self.dist.shard(rows)
            if mine.numel() == 0:     # a short last batch: train on row 0 with no valid frame (zero loss)
                mine = rows[:1]
                batch = {**batch, 'mask': torch.zeros_like(batch['mask']),
                         'truth_mask': torch.zeros_like(batch['truth_mask'])}
            batch = {k: v[mine.to(v.device)] for k, v in batch.items()}
        for group in self.optimizer.param_groups:
            group['lr'] = self._lr(self.step)
        terms = tbptt_update(self.policy, self.optimizer, batch, c, self.command_scale, self.layer,
                             model=self.model, dist=self.dist)
        self.step += 1
        return terms

    @torch.no_grad()
    def validate(self):
        """Mean loss terms and command errors over the validation windows (None without a val set)."""
        if self.val_set is None:
            return None
        self.policy.eval()
        c = self.config
        sums, frames, abs_err, aux_err, truth_frames = {}, 0, torch.zeros(2), torch.zeros(2), 0
        # the same batches as one process would make; each rank validates its share of them
        for i in self.dist.shard(range(0, len(self.val_set), c.batch_size)):
            idx = range(i, min(i + c.batch_size, len(self.val_set)))
            batch = _to_device(default_collate([self.val_set[j] for j in idx]), self.device)
            out, _ = self.policy(batch['images'], batch['imu'], batch['dt'])
            terms = compute_loss(out, batch, c, self.command_scale, self.layer)
            for k, v in terms.detached().items():
                sums[k] = sums.get(k, 0.0) + v * terms.frames
            frames += terms.frames
            filtered = self._filtered(out, batch)
            m = batch['mask'][..., None].to(filtered.dtype)
            abs_err += ((filtered - batch['command']).abs() * m).sum(dim=(0, 1)).cpu()
            tm = (batch['truth_mask'] & batch['mask'])[..., None].to(filtered.dtype)
            if out.aux.shape[-1] >= 2:
                aux_err += ((out.aux[..., :2] - batch['truth']).abs() * tm).sum(dim=(0, 1)).cpu()
            truth_frames += int(tm.sum())
        if self.dist.active:
            names = ('loss', 'command', 'reference', 'aux', 'intervention', 'infeasible')
            total = self.dist.all_sum_floats([sums.get(k, 0.0) for k in names] + [frames, truth_frames]
                                             + abs_err.tolist() + aux_err.tolist())
            sums = dict(zip(names, total[:6]))
            frames, truth_frames = int(round(total[6])), int(round(total[7]))
            abs_err, aux_err = torch.tensor(total[8:10]), torch.tensor(total[10:12])
        res = {f'val_{k}': v / max(1, frames) for k, v in sums.items()}
        res['val_mae_v'], res['val_mae_w'] = (abs_err / max(1, frames)).tolist()
        if truth_frames:
            res['val_mae_offset'], res['val_mae_heading'] = (aux_err / truth_frames).tolist()
        return res

    def _filtered(self, out, batch):
        if self.layer is None:
            return out.command
        lane = lane_input(out, batch, self.config.barrier_lane_source)
        return filter_commands(self.layer, out.command, out.barrier_params, batch['prev_command'], lane)[0]

    # -------------------------------------------------------------------------------- checkpoints
    def _state(self):
        return {'step': self.step, 'epoch': self.epoch, 'batch_in_epoch': self.batch_in_epoch,
                'history': self.history, 'best': self.best, 'bad_epochs': self.bad_epochs,
                'train_seconds': self.train_seconds, 'config': self.config.to_dict()}

    def save_checkpoint(self):
        """Write the checkpoint (rank 0 only: every rank holds the same weights and state)."""
        if self.dist.is_main:
            ckpt.save_checkpoint(self.run_dir, self.policy, self.optimizer, self._state())

    def resume(self):
        """Continue from the checkpoint in run_dir (same config up to RESUMABLE_CHANGES)."""
        state = ckpt.load_checkpoint(self.run_dir, self.policy, self.optimizer, self.device)
        saved, now = state['config'], self.config.to_dict()
        diff = sorted(k for k in set(saved['train']) | set(now['train'])
                      if k not in RESUMABLE_CHANGES and saved['train'].get(k) != now['train'].get(k))
        diff += [s for s in ('policy', 'safety', 'dataset', 'augment', 'name') if saved[s] != now[s]]
        if diff:
            raise InputError('resume', diff, 'the checkpoint was made with other settings; resume with '
                                             'the same config or start a new run directory')
        self.step, self.epoch = int(state['step']), int(state['epoch'])
        self.batch_in_epoch = int(state['batch_in_epoch'])
        self.history, self.best = state['history'], state['best']
        self.bad_epochs, self.train_seconds = int(state['bad_epochs']), float(state['train_seconds'])
        if self.best.get('step') is not None and not (self.run_dir / ckpt.BEST_FILE).is_file():
            raise InputError('resume', str(self.run_dir / ckpt.BEST_FILE), 'best weights missing')
        return state

    # -------------------------------------------------------------------------------------- loop
    def fit(self):
        """Run epochs until done, max_steps or early stopping. Returns the reason it stopped."""
        from tqdm import tqdm
        c = self.config
        stopped = 'epochs'
        while self.epoch < c.epochs:
            batches = self._epoch_order(self.epoch)
            bar = tqdm(total=len(batches), initial=self.batch_in_epoch, desc=f'epoch {self.epoch + 1}/{c.epochs}',
                       unit='batch', disable=not self.progress, leave=False)
            sums, frames = {}, 0
            t0 = time.perf_counter()
            while self.batch_in_epoch < len(batches):
                if c.max_steps and self.step >= c.max_steps:
                    break
                terms = self.train_step(batches[self.batch_in_epoch])
                self.batch_in_epoch += 1
                self.history['steps'].append((self.step, terms['loss']))
                for k, v in terms.items():
                    sums[k] = sums.get(k, 0.0) + v
                frames += 1
                bar.set_postfix(loss=f"{terms['loss']:.4f}", lr=f'{self._lr(self.step):.1e}')
                bar.update(1)
                if self.step % c.checkpoint_every == 0:
                    self.train_seconds += time.perf_counter() - t0
                    t0 = time.perf_counter()
                    self.save_checkpoint()
            bar.close()
            self.train_seconds += time.perf_counter() - t0
            if self.batch_in_epoch < len(batches):        # max_steps reached inside the epoch
                if frames:                                # validate what was trained (partial epoch)
                    self._end_epoch(sums, frames, complete=False)
                stopped = 'max_steps'
                break
            if self._end_epoch(sums, frames):
                stopped = 'early_stopping'
                break
            if c.max_steps and self.step >= c.max_steps:
                stopped = 'max_steps'
                break
        self.save_checkpoint()
        return stopped

    def _end_epoch(self, sums, batches, complete=True):
        """Validate, record, keep the best weights, checkpoint. Returns True to stop early.

        ``complete`` False records a partial epoch (a run stopped by max_steps): it is validated and
        may become the best, but the position in the epoch is kept so that a resumed run continues it.
        """
        c = self.config
        val = self.validate()
        record = {'epoch': self.epoch + 1, 'partial': not complete, 'step': self.step,
                  'train_loss': sums.get('loss', float('nan')) / max(1, batches),
                  'train_command': sums.get('command', float('nan')) / max(1, batches),
                  'lr': self._lr(self.step), 'seconds': round(self.train_seconds, 3)}
        if val:
            record.update(val)
        self.history['epochs'].append(record)
        score = val['val_loss'] if val else record['train_loss']
        improved = self.best['val_loss'] is None or score < self.best['val_loss'] - c.min_delta
        if improved:
            self.best = {'val_loss': score, 'epoch': self.epoch + 1, 'step': self.step}  # weights of this step
            if self.dist.is_main:
                ckpt.save_tensors(self.run_dir / ckpt.BEST_FILE, self.policy.state_dict(), self.step)
            self.bad_epochs = 0
        elif complete:                                  # patience counts whole epochs only
            self.bad_epochs += 1
        if self.progress:
            shown = ', '.join(f'{k}={v:.4g}' for k, v in record.items() if isinstance(v, float))
            print(f'epoch {self.epoch + 1}: {shown}{" *" if improved else ""}', flush=True)
        if complete:
            self.epoch += 1
            self.batch_in_epoch = 0
        self.save_checkpoint()
        return val is not None and self.bad_epochs >= c.patience

    # ------------------------------------------------------------------------------------- export
    def load_best(self):
        """Load the best weights seen (by validation loss, or training loss without a val set)."""
        from safetensors.torch import load_file
        path = self.run_dir / ckpt.BEST_FILE
        if path.is_file():
            self.policy.load_state_dict(load_file(str(path), device=str(self.device)), strict=True)

    def data_summary(self):
        return {**self.prepared.summary(), 'split': self.split,
                'train_frames': self.train_set.frames, 'train_windows': len(self.train_set),
                'val_frames': self.val_set.frames if self.val_set else 0,
                'val_windows': len(self.val_set) if self.val_set else 0,
                'nominal_dt': self.nominal_dt,
                'topics': {'camera': self.config.dataset.camera_topic, 'imu': self.config.dataset.imu_topic,
                           'command': self.config.dataset.command_topic}}

    def export(self, out, stopped):
        """Write the model file (weights + card with data summary and metrics) via runtime.model_file."""
        from liquid_controller.runtime.model_file import InputSpec, save_model
        self.load_best()
        policy = self.policy.to('cpu').eval()
        pc = self.policy_config
        spec = InputSpec(image_height=pc.image_height, image_width=pc.image_width, imu_size=6,
                         imu_mean=[float(v) for v in self.imu_mean], imu_std=[float(v) for v in self.imu_std])
        last = self.history['epochs'][-1] if self.history['epochs'] else {}
        metrics = {k: v for k, v in last.items() if k.startswith('val_')}
        metrics.update({'best_val_loss' if self.val_set else 'best_train_loss': self.best['val_loss'],
                        'best_epoch': self.best['epoch'], 'train_loss': last.get('train_loss')})
        best_rec = [e for e in self.history['epochs'] if e['step'] == self.best['step']]
        if best_rec:
            metrics.update({k: v for k, v in best_rec[-1].items() if k.startswith('val_')})
            metrics['val_loss' if self.val_set else 'train_loss_at_best'] = self.best['val_loss']
        training = {'data': self.data_summary(), 'config': self.config.to_dict(), 'steps': self.step,
                    'epochs': len(self.history['epochs']), 'stopped': stopped,
                    'train_seconds': round(self.train_seconds, 2), 'device': str(self.device),
                    'world_size': self.dist.world_size, 'global_batch': self.config.batch_size,
                    **({'distributed_backend': self.dist.backend} if self.dist.active else {}),
                    'torch': torch.__version__, 'machine': platform.machine(),
                    'parameters': policy.num_parameters(), 'liquid_neurons': policy.liquid_neurons,
                    'curves': str(self.run_dir / 'curves.png'), 'history_epochs': self.history['epochs']}
        ood = None
        if policy.state_size > 0:   # the run-time OOD monitor models the recurrent state
            from liquid_controller.runtime.controller import ControllerConfig
            from liquid_controller.train.ood_calibration import calibrate_ood
            try:
                ood = calibrate_ood(policy, self.train_set.episodes, self.imu_mean, self.imu_std,
                                    ControllerConfig().max_dt, source='neurons',
                                    progress=self.progress).to_dict()
            except InputError as exc:   # e.g. too few training frames for a covariance
                if self.progress:
                    print(f'warning: no OOD statistics stored in the model card: {exc}', flush=True)
        card = save_model(policy, out, name=Path(out).name, nominal_dt=self.nominal_dt, input_spec=spec, ood=ood,
                          description=f'{pc.core} policy trained by liquid-controller train '
                                      f'({policy.num_parameters()} parameters, '
                                      f'{policy.liquid_neurons} liquid neurons)',
                          training=training, metrics=metrics,
                          topics={'image': self.config.dataset.camera_topic,
                                  'imu': self.config.dataset.imu_topic})
        self.policy.to(self.device)
        return card, metrics


def train(config: TrainConfig, bags, out, run_dir=None, cache_dir=None, resume=False, progress=True,
          log=None):
    """Train a policy on ``bags`` and write the model file ``out`` (.json card + .safetensors).

    ``run_dir`` (default ``out/train/NAME``) holds checkpoints, config.yaml and curves.png;
    ``cache_dir`` (default ``RUN_DIR/../cache``) the prepared data. ``resume`` continues from the
    checkpoint in ``run_dir``; without one there it is an InputError (nothing is started, so a run the
    caller believed it continues is never silently restarted). ``log``: called with each line of the
    data-split report (:meth:`Trainer.split_report`) before training starts.
    """
    out = Path(out)
    run_dir = Path(run_dir) if run_dir is not None else Path('out') / 'train' / out.name
    if resume and not ckpt.has_checkpoint(run_dir):
        raise InputError('resume', str(run_dir), 'no checkpoint to resume in this run directory; run '
                                                 'without --resume to start a new run')
    torch.manual_seed(config.seed)
    np.random.seed(config.seed)
    dist = context_from_env(select_device(config.device))
    try:
        trainer = Trainer(config, bags, run_dir, cache_dir=cache_dir, progress=progress, dist=dist)
        if log is not None and dist.is_main:
            for line in trainer.split_report():
                log(line)
        if resume:
            trainer.resume()
        elif dist.is_main:
            # a fresh run must not inherit an old run's best weights, nor leave its checkpoint to resume
            for name in (ckpt.STATE_FILE, ckpt.MODEL_FILE, ckpt.OPTIM_FILE, ckpt.BEST_FILE):
                (run_dir / name).unlink(missing_ok=True)
        if dist.is_main:
            run_dir.mkdir(parents=True, exist_ok=True)
            config.save(run_dir / 'config.yaml')
        dist.barrier()              # no rank starts before rank 0 has cleared an old run's files
        stopped = trainer.fit()
        card, metrics, curves = None, {}, None
        if dist.is_main:            # one process writes the curves and the model file
            curves = plot_learning_curves(
                trainer.history, run_dir / 'curves.png',
                title=f'{config.name}: {trainer.policy_config.core}, {trainer.policy.num_parameters()} '
                      f'parameters, {trainer.train_set.frames} training frames'
                      + (f', {dist.world_size} processes' if dist.active else ''))
            card, metrics = trainer.export(out, stopped)
        dist.barrier()
    finally:
        dist.close()
    json_path = out.with_suffix('.json') if out.suffix in ('', '.json', '.safetensors') else \
        Path(str(out) + '.json')                       # the naming rule of runtime.model_file.save_model
    return TrainResult(model_path=json_path, run_dir=run_dir, curves_path=curves,
                       metrics=metrics, history=trainer.history, steps=trainer.step, stopped=stopped,
                       card=card, data=trainer.data_summary(), rank=dist.rank, world_size=dist.world_size)
