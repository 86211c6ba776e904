"""Caption sequences packed into a few long rows for one pass through the frozen causal LM.

A VLAP batch is ``[<bos>] + prefix + prompt + caption`` per image, and captions differ in length; padded
to the longest, a quarter or more of the positions the LM computes carry no token (emoji names: 1,216
positions for 900 tokens). Packed, several whole sequences share a row, each with its own position ids
and a block-diagonal causal mask, so no position attends across sequences and every sequence sees
exactly what it sees alone: the same loss, in one call with large matrix products (several calls on
small groups were measured slower than the padded batch: docs/speed.md).

The mask is a ready 4D mask ``[rows, 1, width, width]`` (boolean for "sdpa", additive for "eager"),
which transformers' attention takes as given. It replaces the model's own causal and sliding-window masks,
so it is used only where it is exact: those two attention implementations, and rows no wider than the
model's sliding window.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

PACKABLE_ATTENTION = ("sdpa", "eager")


@dataclass(frozen=True)
class Packing:
    """Where sequence ``i`` (``lengths[i]`` positions) sits: row ``row[i]`` from column ``start[i]``."""

    lengths: torch.Tensor  # [N]
    row: torch.Tensor  # [N]
    start: torch.Tensor  # [N]
    rows: int
    width: int

    @property
    def positions(self) -> int:
        return self.rows * self.width


def pack(lengths: torch.Tensor, width: int) -> Packing:
    """First-fit decreasing: the longest sequence first, each into the first row with room for it."""
    if int(lengths.max()) > width:
        raise ValueError(f"a sequence of {int(lengths.max())} positions does not fit rows of {width}")
    free: list[int] = []
    row = torch.empty_like(lengths)
    start = torch.empty_like(lengths)
    for i in torch.argsort(lengths, descending=True, stable=True).tolist():
        n = int(lengths[i])
        r = next((r for r, room in enumerate(free) if room >= n), len(free))
        if r == len(free):
            free.append(width)
        row[i], start[i] = r, width - free[r]
        free[r] -= n
    return Packing(lengths, row, start, len(free), width)


def row_width(lengths: torch.Tensor, lm: nn.Module, target: int = 128) -> int | None:
    """The packed rows' width for ``lm`` (``target``, at most its sliding window, or the longest sequence
    if longer), or None where packing would not be exact (another attention implementation, or a sequence
    longer than the sliding window)."""
    config = getattr(lm, "config", None)
    if getattr(config, "_attn_implementation", None) not in PACKABLE_ATTENTION:
        return None
    window = getattr(config, "sliding_window", None)
    width = max(target if window is None else min(target, window), int(lengths.max()))
    return None if window is not None and width > window else width


def packed_inputs(sequences: torch.Tensor, lengths: torch.Tensor, packing: Packing
                  ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
    """``(inputs_embeds [rows, width, D], position_ids [rows, width], allowed [rows, 1, width, width],
    source [rows, width])`` from left-aligned ``sequences [N, T, D]`` (``allowed[r, 0, q, k]``: query ``q``
    may attend to key ``k``); ``source`` holds each packed
    position's flat index ``i * T + t`` into ``sequences`` (-1 for padding). Differentiable in
    ``sequences``."""
    n, t, d = sequences.shape
    device = sequences.device
    offsets = torch.arange(t, device=device)
    valid = offsets < lengths.unsqueeze(1)  # [N, T]
    seq_index, seq_pos = valid.nonzero(as_tuple=True)
    dest = (packing.row[seq_index] * packing.width + packing.start[seq_index] + seq_pos).to(device)
    origin = seq_index * t + seq_pos
    source = torch.full((packing.positions,), -1, dtype=torch.long, device=device)
    source[dest] = origin
    flat = sequences.reshape(n * t, d)
    inputs = flat.new_zeros(packing.positions, d).index_copy(0, dest, flat[origin])
    # padding: each position a sequence of its own, at position 0, seeing only itself
    segment = torch.full((packing.positions,), -1, dtype=torch.long, device=device)
    segment[dest] = seq_index
    position = torch.zeros(packing.positions, dtype=torch.long, device=device)
    position[dest] = seq_pos
    segment = segment.view(packing.rows, packing.width)
    column = torch.arange(packing.width, device=device)
    pad = segment < 0
    same = (segment.unsqueeze(2) == segment.unsqueeze(1)) & ~pad.unsqueeze(2)
    allowed = (same & (column.view(1, 1, -1) <= column.view(1, -1, 1))) | torch.diag_embed(pad)
    return (inputs.view(packing.rows, packing.width, d), position.view(packing.rows, packing.width),
            allowed.unsqueeze(1), source.view(packing.rows, packing.width))


def attention_mask(allowed: torch.Tensor, lm: nn.Module, dtype: torch.dtype = torch.float32) -> torch.Tensor:
    """``allowed`` as ``lm``'s attention takes a ready 4D mask: boolean for "sdpa" (it also runs under
    autocast, where an additive mask would have to match the query's dtype), additive for "eager"."""
    if lm.config._attn_implementation == "sdpa":
        return allowed
    return torch.zeros(allowed.shape, dtype=dtype, device=allowed.device).masked_fill(~allowed, torch.finfo(dtype).min)
