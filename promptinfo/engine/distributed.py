"""One run on several processes (torch.distributed, launched by `torchrun`), and GPUs for parallel runs.

Only the prompt learns, so instead of wrapping the method in DistributedDataParallel the loop
all-reduces the prompt's gradients after each step's backward passes:

- every rank draws the same epoch order (`EpochBatchSampler`, a function of seed and epoch) and
  keeps its contiguous share of each batch (`ShardedBatchSampler`); the shares of a step add up to
  the single-process batch;
- rank r's loss is the mean over its n_r samples, and the synchronised gradient is
  sum_r n_r * g_r / sum_r n_r: the gradient of the mean over the global batch. A loss that is a
  mean over samples (cross-entropy and the methods' per-sample terms) gives the numbers of a
  single process to float tolerance; batch-level terms (CMA, the information terms) are computed
  per share, exactly as one process computes them per micro-batch with `trainer.grad_accum` set
  to the number of processes;
- evaluation splits the test set the same way and sums correct/total counts over ranks;
- rank 0 alone writes the run folder (`run_folder`).

Outside a process group every function here is the single-process identity, so the engine calls
them unconditionally.
"""

from __future__ import annotations

import atexit
import contextlib
import logging
import os
import tempfile
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

import torch
import torch.distributed as dist
from filelock import FileLock, Timeout
from torch.utils.data import Sampler

from promptinfo.engine import rundir as rf
from promptinfo.errors import ConfigError

logger = logging.getLogger("promptinfo.engine")

MAX_RUNS_PER_GPU = 64
"""GPU slots per device for parallel runs on one machine (runs beyond that wait for a free slot)."""


# --------------------------------------------------------------------------------------------- process group
@dataclass(frozen=True)
class DistEnv:
    """Where this process sits in a multi-process run (torchrun's RANK, LOCAL_RANK and WORLD_SIZE)."""

    rank: int
    local_rank: int
    world_size: int


def env_from_environ(environ: Mapping[str, str] | None = None) -> DistEnv | None:
    """The launch described by torchrun's variables, or None for a single process.

    Raises:
        ConfigError: the variables are present but not integers, or RANK lies outside the world.
    """
    environ = os.environ if environ is None else environ
    if "WORLD_SIZE" not in environ:
        return None
    try:
        world = int(environ["WORLD_SIZE"])
        rank = int(environ.get("RANK", "0"))
        local = int(environ.get("LOCAL_RANK", str(rank)))
    except ValueError:
        raise ConfigError(
            f"WORLD_SIZE={environ.get('WORLD_SIZE')!r}, RANK={environ.get('RANK')!r}, "
            f"LOCAL_RANK={environ.get('LOCAL_RANK')!r} must be integers; launch several processes with torchrun."
        ) from None
    if world < 2:
        return None
    if not 0 <= rank < world or local < 0:
        raise ConfigError(f"RANK={rank} (LOCAL_RANK={local}) lies outside WORLD_SIZE={world}; launch with torchrun.")
    return DistEnv(rank=rank, local_rank=local, world_size=world)


def uses_cuda(device: str) -> bool:
    """Whether `trainer.device` puts this run on CUDA."""
    return device.startswith("cuda") or (device == "auto" and torch.cuda.is_available())


def join_process_group(env: DistEnv, device: str) -> None:
    """Join the default process group of `env` once per process: gloo for CPU tensors, NCCL for CUDA ones.

    Later calls (the next runs of a sweep launched under torchrun) reuse it; it is destroyed when the
    process exits. On CUDA each process trains on the GPU of its LOCAL_RANK (the current device,
    which `trainer.device=auto` or `cuda` picks up). Ranks other than 0 log warnings only.

    Raises:
        ConfigError: a fixed `cuda:N` device (every rank would share it), fewer GPUs than local ranks,
            or a process group of another shape already exists.
    """
    cuda = uses_cuda(device)
    if cuda and ":" in device:
        raise ConfigError(
            f"trainer.device={device} pins every process to one GPU; with torchrun use trainer.device=auto "
            "(or cuda): each process takes the GPU of its LOCAL_RANK."
        )
    if cuda and env.local_rank >= torch.cuda.device_count():
        raise ConfigError(f"LOCAL_RANK={env.local_rank} but only {torch.cuda.device_count()} GPU(s) are visible; "
                          "start at most one process per GPU (torchrun --nproc_per_node).")
    if dist.is_initialized():
        if (dist.get_rank(), dist.get_world_size()) != (env.rank, env.world_size):
            raise ConfigError(f"this process already belongs to a process group of rank {dist.get_rank()} of "
                              f"{dist.get_world_size()}, not {env.rank} of {env.world_size}.")
    else:
        if cuda:
            torch.cuda.set_device(env.local_rank)
        dist.init_process_group(backend="cpu:gloo,cuda:nccl" if cuda else "gloo", rank=env.rank,
                                world_size=env.world_size)
        atexit.register(_leave_process_group)
        if env.rank != 0:
            logging.getLogger("promptinfo").setLevel(logging.WARNING)
    if cuda:
        torch.cuda.set_device(env.local_rank)


def _leave_process_group() -> None:
    if dist.is_initialized():
        dist.destroy_process_group()


def world_size() -> int:
    """Processes of this run (1 outside a process group)."""
    return dist.get_world_size() if dist.is_available() and dist.is_initialized() else 1


def rank() -> int:
    """This process's rank (0 outside a process group)."""
    return dist.get_rank() if dist.is_available() and dist.is_initialized() else 0


def is_main() -> bool:
    """Whether this process writes the run folder (rank 0)."""
    return rank() == 0


def barrier() -> None:
    if world_size() > 1:
        dist.barrier()


# --------------------------------------------------------------------------------------------- sharding
def shard_bounds(n: int, rank_: int | None = None, world: int | None = None) -> tuple[int, int]:
    """[start, stop) of `rank_`'s contiguous share of n items: the first n % world shares hold one more.

    The shares are those of `torch.tensor_split(range(n), world)`, so with world processes a batch
    is split as one process splits it into `trainer.grad_accum=world` micro-batches.
    """
    rank_ = rank() if rank_ is None else rank_
    world = world_size() if world is None else world
    base, extra = divmod(n, world)
    start = rank_ * base + min(rank_, extra)
    return start, start + base + (rank_ < extra)


class ShardedBatchSampler(Sampler):
    """This rank's contiguous share of every batch of an `EpochBatchSampler` (same order on every rank)."""

    def __init__(self, batches, rank_: int, world: int) -> None:
        smallest = min(batches.n, batches.batch_size)  # every batch has batch_size items, or one batch of n
        if smallest < world:
            raise ConfigError(
                f"A training batch holds {smallest} image(s) (trainer.batch_size={batches.batch_size}, {batches.n} "
                f"training images) but {world} processes share it: every process needs at least one image per step. "
                "Raise trainer.batch_size or start fewer processes."
            )
        self.batches, self.rank, self.world = batches, rank_, world

    def set_epoch(self, epoch: int) -> None:
        self.batches.set_epoch(epoch)

    def __iter__(self) -> Iterator[list]:
        for keys in self.batches:
            start, stop = shard_bounds(len(keys), self.rank, self.world)
            yield keys[start:stop]

    def __len__(self) -> int:
        return len(self.batches)


def shard_batches(batches):
    """`batches` itself in one process, else this rank's `ShardedBatchSampler` over it."""
    world = world_size()
    return batches if world == 1 else ShardedBatchSampler(batches, rank(), world)


# --------------------------------------------------------------------------------------------- collectives
def sync_gradients(params: Sequence[torch.nn.Parameter], local_samples: int) -> None:
    """Replace every rank's gradients by the gradient of the mean loss over the global batch.

    Each rank's gradients are those of the mean over its `local_samples`; the result is
    sum_r n_r g_r / sum_r n_r, summed in float64 in one all-reduce. A parameter without a gradient
    on every rank keeps none (as in one process, the optimiser then skips it).
    """
    if world_size() == 1 or not params:
        return
    device = params[0].device
    parts = [p.grad.detach().reshape(-1).double() * local_samples if p.grad is not None else
             torch.zeros(p.numel(), dtype=torch.float64, device=device) for p in params]
    present = torch.tensor([p.grad is not None for p in params], dtype=torch.float64, device=device)
    buffer = torch.cat([*parts, present, torch.tensor([float(local_samples)], dtype=torch.float64, device=device)])
    dist.all_reduce(buffer)
    total = buffer[-1]
    seen = buffer[-1 - len(params):-1].tolist()
    offset = 0
    for p, has_grad in zip(params, seen):
        grad = (buffer[offset : offset + p.numel()] / total).view_as(p).to(p.dtype)
        offset += p.numel()
        if has_grad > 0:
            p.grad = grad


def reduce_epoch_stats(stats):
    """An epoch's `EpochStats` summed over ranks (samples, correct, loss and term sums), in place."""
    if world_size() == 1:
        return stats
    names = list(stats.terms)
    values = torch.tensor([stats.samples, stats.correct, stats.loss, *(stats.terms[k] for k in names)],
                          dtype=torch.float64)
    dist.all_reduce(values)
    stats.samples, stats.correct, stats.loss = int(values[0]), int(values[1]), float(values[2])
    stats.terms = {k: float(v) for k, v in zip(names, values[3:].tolist())}
    return stats


def sum_counts(correct: int, total: int) -> tuple[int, int]:
    """Correct and total counts summed over ranks."""
    if world_size() == 1:
        return correct, total
    counts = torch.tensor([correct, total], dtype=torch.long)
    dist.all_reduce(counts)
    return int(counts[0]), int(counts[1])


def gather_rows(local: torch.Tensor, n: int) -> torch.Tensor:
    """The rows `[n, ...]` of which each rank holds its `shard_bounds(n)` share, on every rank, in order."""
    world = world_size()
    if world == 1:
        return local
    bounds = [shard_bounds(n, r, world) for r in range(world)]
    size = max(stop - start for start, stop in bounds)
    padded = local.new_zeros((size, *local.shape[1:]))
    padded[: local.shape[0]] = local
    pieces = [torch.empty_like(padded) for _ in range(world)]
    dist.all_gather(pieces, padded)
    return torch.cat([piece[: stop - start] for piece, (start, stop) in zip(pieces, bounds)])


# --------------------------------------------------------------------------------------------- run folder
class FollowerRunFolder(rf.RunFolder):
    """The run folder as seen by ranks other than 0: readable, never written, not locked."""

    def __enter__(self) -> FollowerRunFolder:
        return self

    def __exit__(self, *exc) -> None:
        return None

    def clear(self) -> None:
        return None

    def write_config(self, cfg) -> None:
        return None

    def write_results(self, results: dict) -> None:
        return None

    def append_metrics(self, row: dict) -> None:
        return None

    def remove_leftover_temps(self) -> None:
        return None

    def write_metric_lines(self, lines: list[str]) -> None:
        return None

    def hold_log(self, level: int = logging.INFO) -> logging.Handler:
        return logging.NullHandler()

    def attach_log(self, level: int = logging.INFO, held=None) -> logging.Handler:
        return logging.NullHandler()


@contextlib.contextmanager
def run_folder(path: str | os.PathLike) -> Iterator[rf.RunFolder]:
    """The run folder, locked and written by rank 0 only; the other ranks wait until rank 0 holds it."""
    folder = rf.RunFolder(path) if is_main() else FollowerRunFolder(path)
    with folder:
        barrier()
        yield folder


# --------------------------------------------------------------------------------------------- parallel runs
def gpu_slot_order(job_num: int, n_gpus: int, per_gpu: int = MAX_RUNS_PER_GPU) -> list[tuple[int, int]]:
    """(gpu, slot) pairs in the order run `job_num` of a sweep tries them.

    Its own GPU (job_num mod n_gpus) first, then the next ones; the first slot of every GPU before
    any second slot, so concurrent runs spread over the GPUs before any two share one.
    """
    if n_gpus < 1 or per_gpu < 1:
        raise ValueError(f"need at least one GPU and one slot per GPU, got n_gpus={n_gpus}, per_gpu={per_gpu}")
    gpus = [(job_num + i) % n_gpus for i in range(n_gpus)]
    return [(gpu, slot) for slot in range(per_gpu) for gpu in gpus]


def default_slot_dir() -> Path:
    """Machine-local folder of the GPU slot locks shared by every sweep of this user."""
    return Path(tempfile.gettempdir()) / f"promptinfo-gpu-slots-{os.getuid() if hasattr(os, 'getuid') else 'user'}"


@contextlib.contextmanager
def claim_gpu(job_num: int, n_gpus: int, slot_dir: str | os.PathLike | None = None,
              per_gpu: int = MAX_RUNS_PER_GPU) -> Iterator[int]:
    """Hold the first free (gpu, slot) of `gpu_slot_order` for the block and yield the GPU index.

    Each slot is a file lock, released when the block ends or the process dies, so runs that start
    and finish at different times never pile onto one GPU while another is idle. When every slot is
    taken the run waits for its first one.
    """
    folder = Path(slot_dir) if slot_dir is not None else default_slot_dir()
    folder.mkdir(parents=True, exist_ok=True)
    order = gpu_slot_order(job_num, n_gpus, per_gpu)
    for gpu, slot in order:
        lock = FileLock(str(folder / f"gpu{gpu}-slot{slot}.lock"), timeout=0)
        try:
            lock.acquire()
        except Timeout:
            continue
        with _held(lock):
            yield gpu
        return
    gpu, slot = order[0]
    lock = FileLock(str(folder / f"gpu{gpu}-slot{slot}.lock"))
    lock.acquire()
    with _held(lock):
        yield gpu


@contextlib.contextmanager
def _held(lock: FileLock) -> Iterator[None]:
    try:
        yield
    finally:
        lock.release()
