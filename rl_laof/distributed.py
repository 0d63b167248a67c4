"""Data-parallel training under ``torchrun`` (gloo on CPU, nccl on GPU); a no-op in one process.

Every process draws the same global batch (same seeds) and trains on its own contiguous slice of
it; DDP averages the gradients, so N processes compute what one process computes on the whole
batch, up to the order of floating-point sums.
"""

from __future__ import annotations

import os

import torch
import torch.distributed as tdist


def world_size() -> int:
    return tdist.get_world_size() if tdist.is_available() and tdist.is_initialized() else 1


def rank() -> int:
    return tdist.get_rank() if tdist.is_available() and tdist.is_initialized() else 0


def is_main() -> bool:
    return rank() == 0


def init_from_env() -> tuple[int, int]:
    """Join the process group torchrun describes (WORLD_SIZE > 1); returns (rank, world size)."""
    world = int(os.environ.get("WORLD_SIZE", "1"))
    if world > 1 and not tdist.is_initialized():
        backend = "nccl" if torch.cuda.is_available() else "gloo"
        if backend == "nccl":
            torch.cuda.set_device(int(os.environ.get("LOCAL_RANK", "0")))
        tdist.init_process_group(backend)
    return rank(), world_size()


def shutdown() -> None:
    if tdist.is_available() and tdist.is_initialized():
        tdist.destroy_process_group()


def barrier() -> None:
    if world_size() > 1:
        tdist.barrier()


def all_gather_cat(x: torch.Tensor) -> torch.Tensor:
    """Concatenate every process's x along dim 0, in rank order (x itself in one process)."""
    if world_size() == 1:
        return x
    parts = [torch.empty_like(x) for _ in range(world_size())]
    tdist.all_gather(parts, x.contiguous())
    return torch.cat(parts)


def my_slice(n: int) -> slice:
    """This process's contiguous share of a global batch of n."""
    w, r = world_size(), rank()
    if n % w:
        raise ValueError(f"batch of {n} does not split over {w} processes: use a multiple of {w}")
    return slice(r * n // w, (r + 1) * n // w)
