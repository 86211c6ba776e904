"""Bag-of-word-embeddings text encoder over any embedding table (``table:<table name>``).

A caption's feature is the mean *raw* row of its non-special tokens. This is the text feature VLAP
assigns to the vocabulary (papers.md §3.3, adapted to a causal LM), so registering it as a text
encoder lets every feature-based aligner (ridge, procrustes, ASIF, contrastive) be fitted into exactly
the space VLAP maps images into: the fair baseline for a VLAP comparison.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch

from align.registry import EMBEDDING_TABLES, TEXT_ENCODERS
from align.text.base import EmbeddingTable, TextEncoder, check_texts


def mean_word_embedding(weight: torch.Tensor, special: torch.Tensor, ids: torch.Tensor,
                        mask: torch.Tensor) -> torch.Tensor:
    """``[N, D]`` mean of ``weight[ids]`` over positions that are in ``mask`` and not ``special``.

    ``special [V]`` is a boolean row mask; a caption made only of special tokens gets a zero vector."""
    keep = (mask.bool() & ~special[ids]).to(weight.dtype)
    return (weight[ids] * keep.unsqueeze(-1)).sum(1) / keep.sum(1, keepdim=True).clamp_min(1)


def pad_rows(rows: Sequence[Sequence[int]], pad: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    """Token-id rows right-padded with ``pad`` to one width: ``(ids [N, L], mask [N, L])`` (L >= 1)."""
    width = max(1, max((len(r) for r in rows), default=0))
    ids = torch.full((len(rows), width), pad, dtype=torch.long)
    mask = torch.zeros((len(rows), width), dtype=torch.long)
    for i, row in enumerate(rows):
        ids[i, : len(row)] = torch.tensor(row, dtype=torch.long)
        mask[i, : len(row)] = 1
    return ids, mask


def special_mask(table: EmbeddingTable) -> torch.Tensor:
    special = torch.zeros(table.vocab_size, dtype=torch.bool)
    special[list(table.special_ids)] = True
    return special


class TableMeanEncoder(TextEncoder):
    """Mean raw word embedding of a text's tokens (no normalisation: compare by cosine)."""

    def __init__(self, table: EmbeddingTable) -> None:
        super().__init__()
        if table.tokenizer is None:
            raise ValueError(f"table {table.name} has no tokenizer, so texts cannot be split into its rows")
        self.table = table
        self.name = f"table:{table.name}"
        self.embed_dim = table.embed_dim
        self.special = special_mask(table)

    @torch.no_grad()
    def encode_text(self, texts: Sequence[str], batch_size: int = 256) -> torch.Tensor:
        texts = check_texts(texts)
        out = []
        for start in range(0, len(texts), batch_size):
            ids, mask = pad_rows([self.table.encode_ids(t) for t in texts[start:start + batch_size]])
            out.append(mean_word_embedding(self.table.weight, self.special, ids, mask).float())
        return torch.cat(out)


@TEXT_ENCODERS.register(
    "table:gguf:gemma-3-270m.q4_k_m",
    embed_dim=640,
    weights="gemma-3-270m.q4_k_m",
    description="mean Gemma-3 270M raw word embedding of a text's tokens (VLAP's text feature), 640-d",
)
def _gemma_mean(**kwargs: Any) -> TableMeanEncoder:
    return TableMeanEncoder(EMBEDDING_TABLES.create("gguf:gemma-3-270m.q4_k_m", **kwargs))


@TEXT_ENCODERS.register_source(
    "table",
    description="table:<embedding table name>: mean raw word embedding of a text's tokens (bag of words)",
)
def table_mean_source(identifier: str, **kwargs: Any) -> TableMeanEncoder:
    return TableMeanEncoder(EMBEDDING_TABLES.create(identifier, **kwargs))
