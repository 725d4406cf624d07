"""Multi-process training: ``torchrun`` launch, DDP wrapping, per-rank data sharding.

Launch ``torchrun --nproc_per_node=G -m burstjdd train ...`` (or ``torchrun ... $(which
burstjdd) train ...``): torchrun sets RANK, WORLD_SIZE, LOCAL_RANK, MASTER_ADDR and MASTER_PORT,
:func:`from_env` reads them and :func:`init_process_group` joins the group (NCCL when the
training device is a GPU, gloo on CPU). Without these variables a run is one process and
nothing here touches ``torch.distributed``.

Data: ``optim.batch_size`` is the GLOBAL batch B; each of the W ranks draws b = B / W samples
per step. The samples of step s are the global indices s·B .. s·B + B − 1 of ONE seeded stream
(:func:`rank_indices`: rank r takes s·B + r·b + j, j < b), so the data of a run do not depend on
the number of processes, and W processes of batch b see exactly the samples of one process of
batch W·b. DDP averages the gradients over the ranks; the loss of each rank is a batch MEAN
(of per-sample sums, :mod:`burstjdd.train.losses`), so the averaged gradient is the gradient of
the mean over the global batch, as in one process: equal up to float rounding (the sums run in
another order), and Adam turns that rounding into differences of about lr in weights whose
gradient is near 0, so a W-process run and a one-process run agree closely, not bit for bit.

Only rank 0 writes (checkpoints, scalars, logs; :attr:`DistContext.is_main`).
"""

from __future__ import annotations

import datetime
import gc
import os
from collections.abc import Mapping
from dataclasses import dataclass

import torch
import torch.distributed as dist
from torch import Tensor, nn

from burstjdd.errors import ConfigError

__all__ = [
    "DistContext", "all_reduce_mean", "barrier", "broadcast_from_main", "from_env",
    "init_process_group", "local_batch_size", "rank_indices", "shutdown", "training_device", "wrap_model",
]


@dataclass(frozen=True)
class DistContext:
    """Where this process stands: ``rank`` of ``world_size`` processes, ``local_rank`` on its
    machine (picks the GPU). ``DistContext()`` is a single-process run."""

    rank: int = 0
    world_size: int = 1
    local_rank: int = 0

    def __post_init__(self) -> None:
        if not 0 <= self.rank < self.world_size or self.local_rank < 0:
            raise ConfigError(f"bad process placement: rank {self.rank} of {self.world_size}, "
                              f"local rank {self.local_rank}")

    @property
    def is_main(self) -> bool:
        """Rank 0: the only process that writes files."""
        return self.rank == 0

    @property
    def distributed(self) -> bool:
        return self.world_size > 1


def from_env(environ: Mapping[str, str] | None = None) -> DistContext:
    """The placement torchrun gives this process (RANK, WORLD_SIZE, LOCAL_RANK); a single
    process when WORLD_SIZE is unset. ConfigError when a variable is not an integer."""
    env = os.environ if environ is None else environ
    try:
        world = int(env.get("WORLD_SIZE", "1"))
        rank = int(env.get("RANK", "0"))
        local = int(env.get("LOCAL_RANK", str(rank)))
    except ValueError:
        raise ConfigError("RANK, WORLD_SIZE and LOCAL_RANK must be integers (set by torchrun)") \
            from None
    return DistContext(rank, world, local)


def training_device(requested: str, ctx: DistContext) -> torch.device:
    """The device of this process: ``requested`` ("auto" | "cpu" | "cuda" | "cuda:N" | "mps",
    run.device); "auto" is the GPU of this local rank when CUDA works, else the CPU. A
    multi-process CUDA run always uses ``cuda:local_rank``. ConfigError if CUDA/MPS is asked for
    and absent."""
    if requested == "auto":
        requested = "cuda" if torch.cuda.is_available() else "cpu"
    device = torch.device(requested)
    if device.type == "cuda":
        if not torch.cuda.is_available():
            raise ConfigError(f"run.device={requested!r} but CUDA is not available")
        index = ctx.local_rank if ctx.distributed or device.index is None else device.index
        if index >= torch.cuda.device_count():
            raise ConfigError(f"no CUDA device {index} ({torch.cuda.device_count()} visible)")
        return torch.device("cuda", index)
    if device.type == "mps" and not torch.backends.mps.is_available():
        raise ConfigError("run.device='mps' but MPS is not available")
    return device


def init_process_group(ctx: DistContext, device: torch.device, init_method: str | None = None,
                       timeout_s: float = 1800.0) -> None:
    """Join the process group of ``ctx`` (no-op for one process): NCCL on CUDA, gloo otherwise.
    ``init_method`` defaults to ``env://`` (MASTER_ADDR/MASTER_PORT from torchrun)."""
    if not ctx.distributed or dist.is_initialized():
        return
    # DDP's constructor imports torch._dynamo, which keeps ten references to the default group
    # when the group exists at its import (measured, torch 2.13). The group, with gloo's threads
    # and rank 0's TCPStore server thread, then outlives destroy_process_group and dies with
    # the interpreter, the likely source of a rare "terminate called without an active
    # exception" abort of rank 0 at exit. Imported before the group, it keeps none.
    import torch._dynamo
    if device.type == "cuda":
        torch.cuda.set_device(device)
    dist.init_process_group(
        "nccl" if device.type == "cuda" else "gloo", init_method=init_method or "env://",
        rank=ctx.rank, world_size=ctx.world_size, timeout=datetime.timedelta(seconds=timeout_s))


def shutdown() -> None:
    """Leave the process group, if one was joined.

    A DDP wrapper sits in a reference cycle (its hooks refer back to it) and holds the group, so
    after a run the group would live on until the next garbage collection, possibly at
    interpreter exit (see :func:`init_process_group`). Collecting first lets
    destroy_process_group end the group's threads here, while the interpreter is whole."""
    if dist.is_initialized():
        gc.collect()
        dist.destroy_process_group()


def barrier(ctx: DistContext) -> None:
    """Wait until every rank gets here (no-op for one process or without a process group)."""
    if ctx.distributed and dist.is_initialized():
        dist.barrier()


def broadcast_from_main(value: object, ctx: DistContext) -> object:
    """Rank 0's ``value`` (any picklable object) on every rank; ``value`` itself for one process
    or when no process group is joined. A collective: every rank must call it."""
    if not ctx.distributed or not dist.is_initialized():
        return value
    box = [value if ctx.is_main else None]
    dist.broadcast_object_list(box, src=0)
    return box[0]


def local_batch_size(global_batch: int, ctx: DistContext) -> int:
    """Samples per step on each rank: global_batch / world_size (ConfigError unless it divides)."""
    if global_batch % ctx.world_size:
        raise ConfigError(f"optim.batch_size={global_batch} (the global batch) must be a multiple "
                          f"of the number of processes ({ctx.world_size})")
    return global_batch // ctx.world_size


def rank_indices(step: int, global_batch: int, ctx: DistContext) -> range:
    """Global sample indices rank ``ctx.rank`` trains on at ``step`` (0-based update index):
    s·B + r·b + j for j < b, b = B / W. The step's W slices are disjoint and together are the
    global batch s·B .. s·B + B − 1, so the sample at (step, rank, batch position) is fixed by the
    seed alone, whatever the number of workers and whether the run was resumed."""
    b = local_batch_size(global_batch, ctx)
    start = step * global_batch + ctx.rank * b
    return range(start, start + b)


def wrap_model(model: nn.Module, ctx: DistContext, device: torch.device, n_frames: int = 5
               ) -> nn.Module:
    """``model`` in DistributedDataParallel for a multi-process run, else ``model`` itself.

    DDP must be told (find_unused_parameters) when a step can leave a parameter without a
    gradient, or it stops with an error at the next step. Every parameter of every variant is on
    the path of the reconstruction loss at every step (the zero-initialised DCN offset
    convolutions get zero gradients, not none; checked for every variant, and the DDP test runs
    the full model without the flag), except the DSNet when a burst has ``n_frames`` = 1: no
    frame is searched, so its features reach no loss. Only then is the extra graph traversal of
    every step paid for.
    """
    if not ctx.distributed:
        return model
    find_unused = getattr(model, "dsnet", None) is not None and n_frames < 2
    ids = [device.index] if device.type == "cuda" else None
    return nn.parallel.DistributedDataParallel(model, device_ids=ids,
                                               find_unused_parameters=find_unused)


def all_reduce_mean(values: Tensor, ctx: DistContext) -> Tensor:
    """Mean of ``values`` (any shape, float) over the ranks; ``values`` itself for one process.
    NaN entries (terms a rank skipped) stay NaN."""
    if not ctx.distributed:
        return values
    out = values.clone()
    dist.all_reduce(out, op=dist.ReduceOp.SUM)
    return out / ctx.world_size
