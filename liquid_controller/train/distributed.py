"""Training on several processes with PyTorch's own DistributedDataParallel, launched by torchrun.

    torchrun --standalone --nproc-per-node=2 .venv/bin/liquid-controller train --config ... --out ...

torchrun sets RANK / WORLD_SIZE / LOCAL_RANK / MASTER_ADDR / MASTER_PORT; :func:`context_from_env`
reads them and joins the process group (gloo on CPU, nccl on CUDA). Without them (a plain
``liquid-controller train``) the context is the single process and every collective is a no-op, so the
trainer has one code path.

How a run stays identical to one process with the same global batch (``train.batch_size``):
- every rank draws the same global batch of windows (the epoch order is seeded, not per rank), builds and
  augments the whole batch with the same generator, then keeps its shard ``rows[rank::world_size]``;
- each rank's loss is normalised by the *global* number of frames of the chunk (one all-reduce), and
  scaled by ``world_size`` because DDP averages gradients: the summed gradient is then exactly the
  one-process gradient (up to the order of float additions);
- gradient clipping and the optimiser run after DDP's all-reduce, on identical gradients.
torch's DistributedSampler is not used: it pads the index list with repeated windows so that every rank
gets as many, which would change the batches compared with one process.
"""
from __future__ import annotations

import os
from dataclasses import dataclass

import torch

from liquid_controller.errors import InputError

__all__ = ['DistributedContext', 'context_from_env']


@dataclass
class DistributedContext:
    """Rank and world size of this process; ``active`` when there is more than one process."""

    rank: int = 0
    world_size: int = 1
    local_rank: int = 0
    backend: str = ''

    @property
    def active(self) -> bool:
        return self.world_size > 1

    @property
    def is_main(self) -> bool:
        """Rank 0: the one process that logs, writes checkpoints and the model file."""
        return self.rank == 0

    def barrier(self):
        if self.active:
            torch.distributed.barrier()

    def all_sum(self, tensor):
        """Sum a tensor over ranks (in place; returned for chaining). A no-op for one process."""
        if self.active:
            torch.distributed.all_reduce(tensor, op=torch.distributed.ReduceOp.SUM)
        return tensor

    def all_sum_floats(self, values):
        """Sum a list of Python floats over ranks (float64)."""
        if not self.active:
            return [float(v) for v in values]
        t = torch.tensor([float(v) for v in values], dtype=torch.float64)
        if self.backend == 'nccl':
            t = t.cuda()
        return self.all_sum(t).cpu().tolist()

    def shard(self, rows):
        """This rank's rows of a global batch: ``rows[rank::world_size]``."""
        return rows[self.rank::self.world_size]

    def wrap(self, module, device):
        """The module wrapped in DistributedDataParallel (itself for one process)."""
        if not self.active:
            return module
        from torch.nn.parallel import DistributedDataParallel
        ids = [device.index] if device.type == 'cuda' else None
        return DistributedDataParallel(module, device_ids=ids)

    def close(self):
        if self.active and torch.distributed.is_initialized():
            torch.distributed.destroy_process_group()


def _env_int(name, default):
    value = os.environ.get(name)
    if value is None or value == '':
        return default
    try:
        return int(value)
    except ValueError:
        raise InputError(name, value, 'environment variable must be an integer (set by torchrun)') from None


def context_from_env(device) -> DistributedContext:
    """The context of this process from torchrun's environment; joins the process group when the
    world has more than one process (gloo for a CPU device, nccl for CUDA)."""
    world = _env_int('WORLD_SIZE', 1)
    rank = _env_int('RANK', 0)
    local = _env_int('LOCAL_RANK', 0)
    if world < 1 or not 0 <= rank < world:
        raise InputError('RANK/WORLD_SIZE', (rank, world), 'need 0 <= RANK < WORLD_SIZE')
    if world == 1:
        return DistributedContext()
    backend = 'nccl' if device.type == 'cuda' else 'gloo'
    if backend == 'nccl':
        torch.cuda.set_device(local)
    if not torch.distributed.is_initialized():
        torch.distributed.init_process_group(backend=backend)
    return DistributedContext(rank=rank, world_size=world, local_rank=local, backend=backend)
