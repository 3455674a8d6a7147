"""Which process of a distributed run this is, and how rank 0's decisions reach the other ranks.

The trainer runs as one process, or as one process per GPU under `torchrun`/`deepspeed` (a
torch.distributed group). Rank 0 alone talks to the services; every rank takes part in the collectives
(ZeRO gathers, gradient reductions, barriers). Each helper works the same without a process group: a
single process is rank 0 of a world of one, and a barrier or a decision has nobody to wait for.

Not here: starting or tearing down the process group (DeepSpeed does, engine.py), or what is decided.
"""

from __future__ import annotations

import torch.distributed as dist


def rank() -> int:
    """This process's global rank (0 without a process group)."""
    return dist.get_rank() if dist.is_initialized() else 0


def rank_world() -> tuple[int, int]:
    """(rank, world size); (0, 1) without a process group."""
    if dist.is_initialized():
        return dist.get_rank(), dist.get_world_size()
    return 0, 1


def barrier() -> None:
    """Wait for every rank (a no-op in one process)."""
    if dist.is_initialized() and dist.get_world_size() > 1:
        dist.barrier()


def rank0_decides(value):
    """Rank 0's `value` on every rank (a no-op in one process): ranks must agree on collectives."""
    if not dist.is_initialized() or dist.get_world_size() == 1:
        return value
    box = [value]
    dist.broadcast_object_list(box, src=0)
    return box[0]
