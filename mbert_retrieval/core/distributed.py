"""This process's place in a ``torchrun`` job: rank, world size, the barrier. Index build, eval and
training split their work by it; without ``torchrun`` it is rank 0 of 1 and nothing is imported."""

from __future__ import annotations

import os
from dataclasses import dataclass
from datetime import timedelta
from typing import Any

from mbert_retrieval.core.errors import ConfigError

DIST_TIMEOUT = timedelta(hours=24)  # ranks wait at the barrier while the slowest one encodes


@dataclass
class Distributed:
    """This process's place in a ``torchrun`` job (rank 0 of 1 without one)."""

    rank: int = 0
    world_size: int = 1
    local_rank: int = 0
    backend: str | None = None
    owns_group: bool = False

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    def barrier(self) -> None:
        if self.world_size > 1:
            import torch.distributed as dist

            dist.barrier()

    def broadcast(self, value: Any) -> Any:
        """Rank 0's ``value`` on every rank (any picklable object); ``value`` itself without ``torchrun``."""
        if self.world_size <= 1:
            return value
        import torch.distributed as dist

        box = [value if self.is_main else None]
        dist.broadcast_object_list(box, src=0)
        return box[0]

    def close(self) -> None:
        if self.owns_group:
            import torch.distributed as dist

            dist.destroy_process_group()
            self.owns_group = False


def leave_process_group() -> None:
    """Under ``torchrun``, after the work is done: wait for every rank (rank 0 may still be writing), then
    leave the process group that a third party (the Hugging Face trainer) joined. A rank that exits with
    gloo's threads still running aborts ("terminate called without an active exception", SIGABRT: seen
    once in CI on rank 1 of the 2-rank training test, which returned while rank 0 published the model)."""
    if int(os.environ.get("WORLD_SIZE", "1") or 1) <= 1:
        return
    import torch.distributed as dist

    if dist.is_available() and dist.is_initialized():
        dist.barrier()
        dist.destroy_process_group()


def distributed_context() -> Distributed:
    """Join the process group when ``torchrun`` set ``WORLD_SIZE`` > 1: gloo on CPU, nccl on CUDA."""
    try:
        world_size = int(os.environ.get("WORLD_SIZE", "1") or 1)
    except ValueError:
        raise ConfigError(f"WORLD_SIZE must be an integer, got {os.environ['WORLD_SIZE']!r}") from None
    if world_size <= 1:
        return Distributed()
    import torch
    import torch.distributed as dist

    local_rank = int(os.environ.get("LOCAL_RANK", "0") or 0)
    cuda = torch.cuda.is_available()
    owns = False
    if not dist.is_initialized():
        if cuda:
            torch.cuda.set_device(local_rank)
        dist.init_process_group("nccl" if cuda else "gloo", timeout=DIST_TIMEOUT)
        owns = True
    return Distributed(dist.get_rank(), dist.get_world_size(), local_rank, dist.get_backend(), owns)
