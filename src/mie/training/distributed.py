"""Data-parallel training with ``torchrun``: process-group set-up, DDP wrapping and collectives.

Launch ``torchrun --nproc_per_node N ...``; :func:`init_distributed` reads ``RANK``, ``WORLD_SIZE``
and ``LOCAL_RANK`` from the environment. Without them everything here degrades to the
single-process case (rank 0 of 1), so the trainer calls these functions unconditionally.
"""

from __future__ import annotations

import contextlib
import datetime
import functools
import gc
import os
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any, TypeVar

import torch
import torch.distributed as dist
from torch import nn
from torch.nn.parallel import DistributedDataParallel

from mie.errors import DistributedError

F = TypeVar("F", bound=Callable[..., Any])
DEFAULT_TIMEOUT_S = 600.0
# Words in the errors gloo / NCCL / the TCP store raise when a peer died, stalled or vanished.
_COMM_FAILURE = ("timed out", "timeout", "connection closed", "connection reset", "connection refused",
                 "broken pipe", "gloo", "nccl", "socket", "peer", "store", "unable to write", "read error")


@dataclass(frozen=True)
class DistributedInfo:
    """Where this process sits in the job."""

    rank: int
    world_size: int
    local_rank: int
    device: torch.device


def _env_int(name: str, default: int) -> int:
    value = os.environ.get(name)
    if value is None or value == "":
        return default
    try:
        return int(value)
    except ValueError as err:
        raise ValueError(f"environment variable {name}={value!r} must be an integer (set by torchrun)") from err


def init_distributed(backend: str | None = None, timeout_s: float = DEFAULT_TIMEOUT_S) -> DistributedInfo:
    """Join the process group described by the torchrun environment (no-op for one process).

    ``backend`` defaults to ``nccl`` when CUDA is available, else ``gloo``. On CUDA each process
    is pinned to ``cuda:LOCAL_RANK``. ``timeout_s`` bounds every collective (and joining): a rank
    that fails or stalls makes the others stop with a :class:`~mie.errors.DistributedError` within
    it, instead of torch's default of 30 minutes.
    """
    world_size = _env_int("WORLD_SIZE", 1)
    rank = _env_int("RANK", 0)
    local_rank = _env_int("LOCAL_RANK", rank)
    use_cuda = torch.cuda.is_available()
    device = torch.device(f"cuda:{local_rank}") if use_cuda else torch.device("cpu")
    if use_cuda:
        torch.cuda.set_device(device)
    if world_size > 1 and not dist.is_initialized():
        try:
            dist.init_process_group(backend=backend or ("nccl" if use_cuda else "gloo"), rank=rank,
                                    world_size=world_size, timeout=datetime.timedelta(seconds=timeout_s))
        except (RuntimeError, ValueError) as exc:
            raise DistributedError(f"could not join the process group of {world_size} within {timeout_s:g} s "
                                   f"({_first_line(exc)})", where=f"rank {rank}",
                                   fix="check that every rank started (MASTER_ADDR/MASTER_PORT) and see their logs"
                                   ) from exc
    return DistributedInfo(rank=rank, world_size=world_size, local_rank=local_rank, device=device)


def _first_line(exc: BaseException) -> str:
    text = " ".join(str(exc).split())
    return (text[:240] + "...") if len(text) > 240 else (text or type(exc).__name__)


def distributed_failure(exc: BaseException) -> DistributedError | None:
    """The :class:`~mie.errors.DistributedError` an exception from a collective stands for, else None.

    A peer that died closes its connections; one that stalled makes the collective time out. Either
    way this rank names itself and says what to look at; the failed rank's own log holds the cause.
    """
    if isinstance(exc, DistributedError) or not (dist.is_available() and dist.is_initialized()):
        return None
    backend_error = getattr(dist, "DistBackendError", ())
    text = str(exc).lower()
    if not (isinstance(exc, backend_error) or any(word in text for word in _COMM_FAILURE)):
        return None
    rank, world = dist.get_rank(), dist.get_world_size()
    stalled = "timed out" in text or "timeout" in text
    what = ("a collective timed out: another rank stalled or failed" if stalled
            else "lost contact with another rank: it failed or was killed")
    return DistributedError(f"{what} ({_first_line(exc)})", where=f"rank {rank} of {world}",
                            fix="see the other ranks' logs for the first error; raise ddp_timeout_s if a rank "
                                "is just slow (e.g. rank 0 evaluating)")


def guard_collectives(function: F) -> F:
    """Decorator: a collective that fails inside ``function`` becomes a :class:`~mie.errors.DistributedError`."""

    @functools.wraps(function)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        try:
            return function(*args, **kwargs)
        except RuntimeError as exc:
            failure = distributed_failure(exc)
            if failure is None:
                raise
            raise failure from exc

    return wrapper  # type: ignore[return-value]


def is_distributed() -> bool:
    """True inside an initialised process group of more than one process."""
    return dist.is_available() and dist.is_initialized() and dist.get_world_size() > 1


def get_rank() -> int:
    """This process's rank (0 when not distributed)."""
    return dist.get_rank() if is_distributed() else 0


def get_world_size() -> int:
    """Number of processes (1 when not distributed)."""
    return dist.get_world_size() if is_distributed() else 1


def is_main_process() -> bool:
    """Only rank 0 writes files, logs and shows progress."""
    return get_rank() == 0


def rank_seed(seed: int) -> int:
    """A per-process seed (``seed + rank``): ranks draw different dropout/augmentation noise.

    Data order is not affected: a ``DistributedSampler`` shuffles with its own seed and
    ``set_epoch``, identically on every rank, and then takes this rank's shard.
    """
    return seed + get_rank()


def wrap_ddp(model: nn.Module, device: torch.device | None = None,
             find_unused_parameters: bool = False) -> nn.Module:
    """Wrap ``model`` in ``DistributedDataParallel`` when distributed; return it unchanged otherwise.

    ``find_unused_parameters`` lets a step leave trainable parameters without a gradient (a loss
    that ignores the model's logit scale).
    """
    if not is_distributed():
        return model
    if device is not None and device.type == "cuda":
        return DistributedDataParallel(model, device_ids=[device.index or 0], output_device=device.index or 0,
                                       find_unused_parameters=find_unused_parameters)
    return DistributedDataParallel(model, find_unused_parameters=find_unused_parameters)


def unwrap_model(model: nn.Module) -> nn.Module:
    """The bare model inside a DDP wrapper (the one whose ``state_dict`` has clean names)."""
    return model.module if isinstance(model, DistributedDataParallel) else model


@guard_collectives
def barrier() -> None:
    """Wait for every process (no-op when not distributed)."""
    if is_distributed():
        dist.barrier()


@contextlib.contextmanager
def main_process_first() -> Iterator[None]:
    """Run the body on rank 0 first and on the other ranks after it: for work that writes shared files
    (generating a dataset, training a tokenizer) that the other ranks then read."""
    if not is_main_process():
        barrier()
    try:
        yield
    finally:
        if is_main_process():
            barrier()


def all_reduce_mean(values: dict[str, float], device: torch.device | None = None) -> dict[str, float]:
    """Average a dict of floats over all processes (same keys on every rank); identity when alone."""
    if not is_distributed() or not values:
        return dict(values)
    keys = sorted(values)
    tensor = torch.tensor([float(values[k]) for k in keys], dtype=torch.float64, device=device)
    dist.all_reduce(tensor, op=dist.ReduceOp.SUM)
    tensor /= get_world_size()
    return dict(zip(keys, tensor.tolist()))


def broadcast_int(value: int, device: torch.device | None = None) -> int:
    """Rank 0's ``value`` on every rank, so time-based decisions agree across processes."""
    if not is_distributed():
        return value
    tensor = torch.tensor([value], dtype=torch.int64, device=device)
    dist.broadcast(tensor, src=0)
    return int(tensor.item())


def cleanup() -> None:
    """Leave the process group (safe to call when none exists).

    Garbage is collected first: a DDP wrapper or gloo work object left for interpreter shutdown can
    abort the process ("terminate called without an active exception") after a successful run.
    """
    if dist.is_available() and dist.is_initialized():
        gc.collect()
        dist.destroy_process_group()
