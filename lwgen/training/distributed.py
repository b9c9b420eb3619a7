"""Data-parallel training over several processes started by torchrun: one process group, a slice of every
batch per process, gradients averaged by DistributedDataParallel, and the bookkeeping done by rank 0 only.

torchrun sets RANK, WORLD_SIZE and LOCAL_RANK (plus MASTER_ADDR / MASTER_PORT) in every process it starts;
without them everything here is a no-op and training is the plain single-process loop.

Why not `torch.utils.data.DistributedSampler`: that sampler partitions a data set into epochs (a shuffle
without replacement, padded to equal shares). lwgen has no epochs: every step draws its batch class-balanced
*with replacement* from a generator seeded by (seed, step), which is what makes a resume at any step exact.
`rank_batch` keeps that: every process draws the same global batch of `batch * world_size` indices from the
same per-step generator and takes its own slice. The processes never see the same draw twice, the union of
their slices is exactly the batch one process would draw with `--batch batch * world_size`, and resuming at
step n replays the same draws whatever the number of processes was.
"""
from __future__ import annotations

import hashlib
import os
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

import torch
import torch.distributed as dist
from torch import nn


@dataclass(frozen=True)
class Dist:
    """Where this process stands: its global rank, the number of processes, its rank on this machine."""

    rank: int = 0
    world_size: int = 1
    local_rank: int = 0

    @property
    def enabled(self) -> bool:
        """More than one process takes part."""
        return self.world_size > 1

    @property
    def is_main(self) -> bool:
        """Rank 0: the process that logs, shows progress, writes checkpoints and TensorBoard files."""
        return self.rank == 0


def from_env(environ: Mapping[str, str] | None = None) -> Dist:
    """The torchrun variables RANK, WORLD_SIZE, LOCAL_RANK (absent: one process, rank 0)."""
    environ = os.environ if environ is None else environ
    values = {}
    for name, default in (("RANK", 0), ("WORLD_SIZE", 1), ("LOCAL_RANK", 0)):
        raw = environ.get(name, "")
        try:
            values[name] = int(raw) if raw.strip() else default
        except ValueError:
            raise ValueError(f"environment variable {name}={raw!r} is not an integer") from None
    env = Dist(values["RANK"], values["WORLD_SIZE"], values["LOCAL_RANK"])
    if env.world_size < 1 or not 0 <= env.rank < env.world_size or env.local_rank < 0:
        raise ValueError(f"inconsistent torchrun environment: RANK={env.rank}, WORLD_SIZE={env.world_size}, "
                         f"LOCAL_RANK={env.local_rank}")
    return env


def backend_for(device: str | torch.device = "cpu") -> str:
    """The collective backend: NCCL between CUDA devices, gloo between CPU processes."""
    return "nccl" if torch.device(device).type == "cuda" else "gloo"


def setup(device: str | torch.device = "cpu", environ: Mapping[str, str] | None = None) -> Dist:
    """Join the process group that torchrun's variables describe (no-op for a single process)."""
    env = from_env(environ)
    if env.enabled and not dist.is_initialized():
        if torch.device(device).type == "cuda":
            torch.cuda.set_device(env.local_rank)
        dist.init_process_group(backend_for(device), rank=env.rank, world_size=env.world_size)
    return env


def current() -> Dist:
    """This process's place in the initialised process group; a single process when there is none."""
    if dist.is_available() and dist.is_initialized():
        return Dist(dist.get_rank(), dist.get_world_size(), from_env().local_rank)
    return Dist()


def teardown() -> None:
    """Leave the process group, if this process joined one."""
    if dist.is_available() and dist.is_initialized():
        dist.destroy_process_group()


@contextmanager
def session(device: str | torch.device = "cpu") -> Iterator[Dist]:
    """`setup()` on entry, `teardown()` on exit."""
    env = setup(device)
    try:
        yield env
    finally:
        teardown()


def barrier() -> None:
    """Wait until every process gets here (no-op for a single process)."""
    if current().enabled:
        dist.barrier()


@contextmanager
def local_main_first(env: Dist | None = None) -> Iterator[None]:
    """Run the body on each machine's first process before the others (it fills caches the others then read)."""
    env = env or current()
    if env.enabled and env.local_rank != 0:
        dist.barrier()
    try:
        yield
    finally:
        if env.enabled and env.local_rank == 0:
            dist.barrier()


def rank_batch(weights: torch.Tensor, batch: int, env: Dist, generator: torch.Generator) -> torch.Tensor:
    """This process's `batch` indices: its slice of one global draw of `batch * world_size` indices.

    For a single process this is exactly `torch.multinomial(weights, batch, replacement=True, generator=...)`.
    """
    idx = torch.multinomial(weights, batch * env.world_size, replacement=True, generator=generator)
    return idx[env.rank * batch:(env.rank + 1) * batch]


def rank_generator(seed: int, step: int, rank: int) -> torch.Generator:
    """The random stream of one process at one step (noise, timesteps, dropout): differs between processes,
    replays on resume."""
    return torch.Generator().manual_seed(((seed * 1_000_003 + step) * 7_919 + rank + 1) % (2**63))


def mean(value: torch.Tensor | float) -> torch.Tensor:
    """The mean of a scalar over all processes (the same bytes on every process)."""
    t = torch.as_tensor(value, dtype=torch.float64).detach().reshape(1).clone()
    env = current()
    if env.enabled:
        dist.all_reduce(t, op=dist.ReduceOp.SUM)
        t /= env.world_size
    return t[0]


def broadcast_object(obj: Any, src: int = 0) -> Any:
    """Rank src's (picklable) object on every process."""
    if not current().enabled:
        return obj
    box = [obj]
    dist.broadcast_object_list(box, src=src)
    return box[0]


def state_digest(state: Mapping[str, torch.Tensor]) -> str:
    """SHA-256 (first 16 hex digits) over the names, dtypes and bytes of a state dict: equal digests mean
    bit-identical weights."""
    h = hashlib.sha256()
    for name, value in sorted(state.items()):
        h.update(f"{name}:{value.dtype}:{tuple(value.shape)}".encode())
        h.update(value.detach().cpu().contiguous().reshape(-1).view(torch.uint8).numpy().tobytes())
    return h.hexdigest()[:16]


def weights_digest(module: nn.Module) -> str:
    """`state_digest` of a module's state dict (what a checkpoint stores under `model.`)."""
    return state_digest(module.state_dict())


def gather_digests(module: nn.Module) -> list[str]:
    """Every process's `weights_digest` of its copy of the module, in rank order."""
    digest = weights_digest(module)
    if not current().enabled:
        return [digest]
    out: list[Any] = [None] * current().world_size
    dist.all_gather_object(out, digest)
    return [str(d) for d in out]


class _TaskLoss(nn.Module):
    """A task's loss as a module, so that DistributedDataParallel sees the whole forward that uses the weights
    (the diffusion task embeds the condition outside the U-Net's forward)."""

    def __init__(self, task: Any):
        super().__init__()
        self.task = task
        self.model = task.model  # registered: DDP averages the gradients of exactly these parameters

    def forward(self, idx: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
        return self.task.loss(idx, generator)


def data_parallel(task: Any, env: Dist) -> Callable[[torch.Tensor, torch.Generator], torch.Tensor]:
    """`task.loss`, wrapped in DistributedDataParallel when several processes take part.

    DDP broadcasts rank 0's weights and buffers when it is built, then all-reduces (averages) the gradients in
    backward, so every process applies the same update. Buffers are not re-broadcast every step: lwgen's
    networks have no running statistics (GroupNorm only) and their buffers never change during training.
    """
    if not env.enabled:
        return task.loss
    import inspect
    import warnings

    from torch.nn.parallel import DistributedDataParallel

    # a 1x1 convolution's gradient may arrive with other (equivalent) strides than its bucket: a copy, no error
    warnings.filterwarnings("ignore", message="Grad strides do not match bucket view strides")
    params = inspect.signature(DistributedDataParallel).parameters
    no_buffer_sync = ({"forward_sync_buffers": False} if "forward_sync_buffers" in params
                      else {"broadcast_buffers": False})
    return DistributedDataParallel(_TaskLoss(task), **no_buffer_sync)
