"""Rows of a batch gathered across data-parallel processes, for losses whose negatives are the batch.

InfoNCE on a process's slice alone would see only ``1/world`` of the negatives, so N processes would
train another model than one process with the same global batch. Gathering the embeddings of every
process (with gradients, as open_clip's ``gather_with_grad``) gives each process the global batch's
loss; the gather's backward sums the gradients of all processes' (identical) losses for each slice, and
DDP's averaging over processes then leaves exactly the one-process gradient.

Torch only (no Lightning), so cores can import it at module level.
"""

from __future__ import annotations

import torch


def world_size() -> int:
    """Processes in the default process group (1 when none is set up)."""
    import torch.distributed as dist

    return dist.get_world_size() if dist.is_available() and dist.is_initialized() else 1


def gather_rows(rows: torch.Tensor) -> torch.Tensor:
    """``rows`` of every process concatenated in rank order (the process's own rows unchanged when
    alone); differentiable, so the loss of the global batch trains every slice."""
    if world_size() == 1:
        return rows
    from torch.distributed.nn.functional import all_gather

    return torch.cat(all_gather(rows.contiguous()), dim=0)
