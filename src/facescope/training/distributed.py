"""Multi-process training: `facescope train` under `torchrun --nproc-per-node N` (DistributedDataParallel).

    torchrun --nproc-per-node 2 .venv/bin/facescope train --config configs/default.yaml     # CPU: gloo
    torchrun --nproc-per-node 4 .venv/bin/facescope train ...                               # 4 GPUs: nccl

Without torchrun (no WORLD_SIZE in the environment, or 1) everything here is a no-op and training is
the single process it always was. Under torchrun, the run is the single-process run with each global
batch split between the processes:

- Sampling: every process draws the same global order of samples (the same seeded permutation, or the
  same seeded balanced multinomial draw when `balance: sampler`) and takes its own slice of each batch
  (`shard`): a distributed sampler that keeps the balanced draw exactly as a single process makes it.
- Augmentation is drawn for the whole global batch, then sliced, so each sample gets the augmentation
  it gets in a single process.
- Loss: each head's loss is a weighted mean over the samples that have its label. Its denominator is the
  global batch's (`global_denominator`: an all-reduce), not the slice's, so that after DDP averages the
  gradients they are the single-process gradients, loss weights (`balance: loss`) included.
- Batch norm: on GPUs, SyncBatchNorm computes batch statistics over the global batch. PyTorch's
  SyncBatchNorm has no CPU kernel, so on CPU (gloo) batch norm uses each process's slice, the usual
  DDP behaviour: in heads-first epochs (frozen backbone: running statistics) the run matches a single
  process up to float noise; once the backbone trains, it differs as smaller-batch statistics do.
- Only rank 0 writes: the run folder's files, checkpoints, the log, the curves, the bundle and the
  evaluation. Data preparation and the crop cache are made by rank 0 first; the others then read them.
"""

from __future__ import annotations

import contextlib
import os

import torch
import torch.distributed as dist
from torch.nn.parallel import DistributedDataParallel


def world_size() -> int:
    return dist.get_world_size() if dist.is_available() and dist.is_initialized() else 1


def rank() -> int:
    return dist.get_rank() if dist.is_available() and dist.is_initialized() else 0


def is_main() -> bool:
    """True in a single process and in rank 0: the process that writes."""
    return rank() == 0


@contextlib.contextmanager
def session():
    """Joins the torchrun process group for the body (gloo on CPU, nccl on GPUs), one GPU per process;
    outside torchrun, does nothing."""
    if int(os.environ.get("WORLD_SIZE", "1")) <= 1 or dist.is_initialized():
        yield
        return
    backend = "nccl" if torch.cuda.is_available() else "gloo"
    if backend == "nccl":
        torch.cuda.set_device(int(os.environ.get("LOCAL_RANK", "0")))
    dist.init_process_group(backend)
    try:
        if backend == "gloo" and "OMP_NUM_THREADS" not in os.environ:
            # The processes of a node share its cores rather than each taking all of them.
            local = int(os.environ.get("LOCAL_WORLD_SIZE", dist.get_world_size()))
            torch.set_num_threads(max(1, (os.cpu_count() or 1) // local))
        yield
    finally:
        dist.destroy_process_group()


def device() -> str:
    """This process's device: its own GPU under torchrun on GPUs."""
    if not torch.cuda.is_available():
        return "cpu"
    return f"cuda:{int(os.environ.get('LOCAL_RANK', '0'))}" if world_size() > 1 else "cuda"


@contextlib.contextmanager
def main_first():
    """Rank 0 runs the body first (writing shared files: splits, the crop cache), the others after it."""
    if world_size() == 1:
        yield
        return
    if not is_main():
        dist.barrier()
    yield
    if is_main():
        dist.barrier()


def wrap(model: torch.nn.Module) -> torch.nn.Module:
    """The model as DDP trains it (the model itself in a single process). Build the optimizer, and save
    checkpoints, from the unwrapped model: the wrapper adds nothing to the weights."""
    if world_size() == 1:
        return model
    # Every process built the same initial weights from the same seed (DDP checks); from here on each
    # draws its own dropout masks, rather than all masking their slices alike.
    torch.manual_seed(torch.initial_seed() + rank())
    parameter = next(model.parameters())
    if parameter.device.type == "cuda":
        model = torch.nn.SyncBatchNorm.convert_sync_batchnorm(model)
    # find_unused_parameters: in heads-first epochs the frozen backbone has no gradients to reduce.
    return DistributedNet(model, device_ids=[parameter.device.index] if parameter.device.type == "cuda" else None,
                        find_unused_parameters=True)


class DistributedNet(DistributedDataParallel):
    """DDP that also answers the network's own attributes (features, outputs, input_spec, ...), so the
    training loop uses one model object whether or not it is distributed."""

    def __getattr__(self, name):
        try:
            return super().__getattr__(name)
        except AttributeError:
            return getattr(self.module, name)


def shard(batch: int) -> slice:
    """This process's slice of a global batch of `batch` samples (all of it in a single process)."""
    return slice(rank(), batch, world_size())


def global_denominator(local_total: torch.Tensor) -> torch.Tensor:
    """The denominator that makes a per-process weighted mean average, under DDP, to the global batch's
    weighted mean: the global total divided by the number of processes. In a single process: the total."""
    if world_size() == 1:
        return local_total
    total = local_total.detach().clone()
    dist.all_reduce(total)
    return total / world_size()


def average(values: dict[str, float]) -> dict[str, float]:
    """Means over the processes of per-process figures (each slice's share of the global loss)."""
    if world_size() == 1:
        return values
    tensor = torch.tensor(list(values.values()), dtype=torch.float64)
    dist.all_reduce(tensor)
    return dict(zip(values, (tensor / world_size()).tolist()))
