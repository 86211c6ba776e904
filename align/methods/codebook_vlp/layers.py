"""The towers of Codebook-VLP at CPU scale: BERT-style blocks, a text encoder that starts from a
masked LM's first layers, an image encoder over a frozen encoder's spatial tokens, and cross-attention
fusion (ALBEF's layout, papers.md §5.2).

Blocks are written out here rather than taken from ``transformers.BertLayer``: its forward signature
and cross-attention rules change between transformers releases, while its *weights* (query, key,
value, output, LayerNorms, FFN) have kept their names, so :func:`load_bert_layer` copies those.
"""

from __future__ import annotations

from typing import Any

import torch
import torch.nn.functional as F
from torch import nn


class Attention(nn.Module):
    """Multi-head attention with BERT's separate query/key/value/output projections; keys and values
    come from ``context`` (width ``context_width``) for cross-attention, from ``x`` otherwise."""

    def __init__(self, width: int, heads: int, context_width: int | None = None) -> None:
        super().__init__()
        if width % heads:
            raise ValueError(f"width {width} is not divisible by {heads} heads")
        self.heads = heads
        self.query = nn.Linear(width, width)
        self.key = nn.Linear(context_width or width, width)
        self.value = nn.Linear(context_width or width, width)
        self.out = nn.Linear(width, width)

    def forward(self, x: torch.Tensor, context: torch.Tensor | None = None,
                context_mask: torch.Tensor | None = None, context_index: torch.Tensor | None = None) -> torch.Tensor:
        """``context_mask [B, Lc]`` is True on keys to attend to (False on padding). ``context_index
        [B]`` picks row ``context_index[i]`` of ``context`` for query row i, so keys and values of a
        context used by several rows (ITM's negatives) are projected once."""
        context = x if context is None else context
        b, n, w = x.shape
        key, value = self.key(context), self.value(context)
        if context_index is not None:
            key, value = key[context_index], value[context_index]

        def split(t: torch.Tensor) -> torch.Tensor:
            return t.view(b, t.shape[1], self.heads, w // self.heads).transpose(1, 2)

        mask = None if context_mask is None else context_mask[:, None, None, :].bool()
        out = F.scaled_dot_product_attention(split(self.query(x)), split(key), split(value), attn_mask=mask)
        return self.out(out.transpose(1, 2).reshape(b, n, w))


class Block(nn.Module):
    """BERT's post-LN layer (self-attention, FFN), with ALBEF's cross-attention in between when
    ``context_width`` is given: ``x = LN(x + SelfAttn(x)); x = LN(x + CrossAttn(x, ctx)); x = LN(x + FFN(x))``."""

    def __init__(self, width: int, heads: int, ffn: int, context_width: int | None = None, eps: float = 1e-12) -> None:
        super().__init__()
        self.attn = Attention(width, heads)
        self.attn_norm = nn.LayerNorm(width, eps=eps)
        self.cross = Attention(width, heads, context_width) if context_width else None
        self.cross_norm = nn.LayerNorm(width, eps=eps) if context_width else None
        self.fc1 = nn.Linear(width, ffn)
        self.fc2 = nn.Linear(ffn, width)
        self.ffn_norm = nn.LayerNorm(width, eps=eps)

    def forward(self, x: torch.Tensor, mask: torch.Tensor | None = None, context: torch.Tensor | None = None,
                context_mask: torch.Tensor | None = None, context_index: torch.Tensor | None = None) -> torch.Tensor:
        x = self.attn_norm(x + self.attn(x, context_mask=mask))
        if self.cross is not None:
            x = self.cross_norm(x + self.cross(x, context, context_mask, context_index))
        return self.ffn_norm(x + self.fc2(F.gelu(self.fc1(x))))


@torch.no_grad()
def load_bert_layer(block: Block, layer: nn.Module) -> None:
    """Copy a ``transformers`` ``BertLayer``'s self-attention, LayerNorms and FFN into ``block``
    (its cross-attention, if any, keeps its fresh initialisation, as in ALBEF)."""
    pairs = [(block.attn.query, layer.attention.self.query), (block.attn.key, layer.attention.self.key),
             (block.attn.value, layer.attention.self.value), (block.attn.out, layer.attention.output.dense),
             (block.attn_norm, layer.attention.output.LayerNorm), (block.fc1, layer.intermediate.dense),
             (block.fc2, layer.output.dense), (block.ffn_norm, layer.output.LayerNorm)]
    for mine, theirs in pairs:
        mine.weight.copy_(theirs.weight)
        mine.bias.copy_(theirs.bias)


def bert_shape(lm: Any) -> dict[str, int]:
    """Width, heads, FFN width, layers and positions of a BERT-style masked LM's config."""
    c = lm.config
    return dict(width=c.hidden_size, heads=c.num_attention_heads, ffn=c.intermediate_size,
                layers=c.num_hidden_layers, positions=c.max_position_embeddings)


def bert_layers(lm: Any) -> list[nn.Module] | None:
    """The encoder layers of a BERT-style LM (``lm.bert.encoder.layer``), or None for other layouts."""
    bert = getattr(lm, "bert", None)
    layers = getattr(getattr(bert, "encoder", None), "layer", None)
    return list(layers) if layers is not None else None


class TextEncoder(nn.Module):
    """BERT embeddings (word + position + segment 0, LayerNorm) and ``num_layers`` blocks; with ``lm``
    given, word/position embeddings and the first ``num_layers`` layers are copied from it."""

    def __init__(self, vocab_size: int, width: int, heads: int, ffn: int, num_layers: int, positions: int,
                 lm: Any = None, freeze_words: bool = True) -> None:
        super().__init__()
        self.words = nn.Embedding(vocab_size, width)
        self.positions = nn.Embedding(positions, width)
        self.segment = nn.Parameter(torch.zeros(width))
        self.norm = nn.LayerNorm(width, eps=1e-12)
        self.blocks = nn.ModuleList(Block(width, heads, ffn) for _ in range(num_layers))
        if lm is not None:
            self._load(lm)
        self.words.weight.requires_grad_(not freeze_words)

    @torch.no_grad()
    def _load(self, lm: Any) -> None:
        emb = lm.bert.embeddings
        self.words.weight.copy_(emb.word_embeddings.weight)
        self.positions.weight.copy_(emb.position_embeddings.weight[: self.positions.num_embeddings])
        self.segment.copy_(emb.token_type_embeddings.weight[0])
        self.norm.load_state_dict(emb.LayerNorm.state_dict())
        for block, layer in zip(self.blocks, bert_layers(lm) or []):
            load_bert_layer(block, layer)

    def forward(self, ids: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        """Token states ``[B, L, width]`` of ``ids [B, L]`` (``mask`` 1 on real tokens)."""
        pos = torch.arange(ids.shape[1], device=ids.device)
        x = self.norm(self.words(ids) + self.positions(pos) + self.segment)
        for block in self.blocks:
            x = block(x, mask=mask)
        return x


class FusionEncoder(nn.Module):
    """ALBEF's multimodal encoder: blocks whose queries are one modality's states and whose
    cross-attention reads the other's. Blocks after the text encoder's take the LM's next layers."""

    def __init__(self, width: int, heads: int, ffn: int, num_layers: int, context_width: int,
                 layers_to_copy: list[nn.Module] | None = None) -> None:
        super().__init__()
        self.blocks = nn.ModuleList(Block(width, heads, ffn, context_width) for _ in range(num_layers))
        for block, layer in zip(self.blocks, layers_to_copy or []):
            load_bert_layer(block, layer)

    def forward(self, x: torch.Tensor, mask: torch.Tensor | None, context: torch.Tensor,
                context_mask: torch.Tensor | None = None, context_index: torch.Tensor | None = None) -> torch.Tensor:
        for block in self.blocks:
            x = block(x, mask=mask, context=context, context_mask=context_mask, context_index=context_index)
        return x


class TokenImageEncoder(nn.Module):
    """A small transformer over a frozen encoder's ``[B, T, D]`` spatial tokens: LayerNorm, linear
    projection to ``width``, a [CLS] token, learned positions; masked tokens (for MIM) are replaced by a
    learned [MASK] embedding after the projection, as BEiT does with patch embeddings."""

    def __init__(self, in_dim: int, num_tokens: int, width: int, heads: int, num_layers: int) -> None:
        super().__init__()
        self.in_norm = nn.LayerNorm(in_dim)
        self.proj = nn.Linear(in_dim, width)
        self.cls = nn.Parameter(torch.zeros(1, 1, width))
        self.mask_token = nn.Parameter(torch.zeros(width))
        self.pos = nn.Parameter(torch.randn(1, num_tokens + 1, width) * 0.02)
        self.blocks = nn.ModuleList(Block(width, heads, 4 * width, eps=1e-6) for _ in range(num_layers))

    def embed(self, tokens: torch.Tensor) -> torch.Tensor:
        """The projected tokens ``[B, T, width]`` (shared by a masked and an unmasked pass)."""
        return self.proj(self.in_norm(tokens))

    def forward(self, tokens: torch.Tensor, masked: torch.Tensor | None = None,
                embedded: torch.Tensor | None = None) -> torch.Tensor:
        """States ``[B, 1 + T, width]`` ([CLS] first); ``masked [B, T]`` marks tokens to hide;
        ``embedded`` is ``embed(tokens)`` when the caller has it already."""
        x = self.embed(tokens) if embedded is None else embedded
        if masked is not None:
            x = torch.where(masked[..., None], self.mask_token.to(x.dtype), x)
        x = torch.cat([self.cls.expand(len(x), -1, -1), x], dim=1) + self.pos
        for block in self.blocks:
            x = block(x)
        return x


class MLMHead(nn.Module):
    """BERT's prediction head: dense + GELU + LayerNorm, then the word embeddings (tied) plus a bias."""

    def __init__(self, width: int, vocab_size: int) -> None:
        super().__init__()
        self.dense = nn.Linear(width, width)
        self.norm = nn.LayerNorm(width, eps=1e-12)
        self.bias = nn.Parameter(torch.zeros(vocab_size))

    def forward(self, states: torch.Tensor, words: torch.Tensor) -> torch.Tensor:
        return self.norm(F.gelu(self.dense(states))) @ words.T + self.bias
