"""The frozen language model that denoises LQAE's token sequences: a masked LM (BERT) or a causal LM
(Gemma-3), read through ``inputs_embeds``; nothing of it is trained.

Masked LM (the paper): the sequence of token vectors goes in as it is; the decoder reads the last hidden
state at every position, and position ``i``'s own state predicts its code.

Causal LM (a deviation; the paper uses RoBERTa): ``<bos>`` goes first (a causal LM's first token has
nothing to attend to otherwise, and Gemma is trained with it), the token vectors are multiplied by the
LM's input-embedding scale (Gemma: sqrt(hidden), applied inside its embedding module, which
``inputs_embeds`` bypasses), and

- the decoder reads the last hidden state at each token's own position (it has seen the tokens up to
  and including that one: at a masked position, only the mask row and the past), so ``T`` states for
  ``T`` tokens, as with BERT;
- code ``i`` is predicted by the state one position earlier (``<bos>``'s for ``i = 0``): next-token
  prediction, since a causal LM cannot look at the position it fills. Masking position ``i`` therefore
  hides its code from the *later* positions' context, not from its own prediction.

Either way the LM loss is the cross-entropy at masked positions over the searchable codebook rows only
(the codes the encoder can emit), with the LM's own output layer restricted to those rows: for a tied
LM (Gemma, BERT) the rows of the codebook itself.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from align.errors import BadInputError
from align.text.base import EmbeddingTable

LM_KINDS = ("masked", "causal")


@dataclass
class LMRun:
    """What one pass of the frozen LM gives for ``T`` token vectors."""

    states: torch.Tensor  # [B, T, D] last hidden state at each token's position (what the decoder reads)
    predict: torch.Tensor  # [B, T, D] the state whose head output predicts each position's code
    layers: tuple[torch.Tensor, ...] | None = None  # every layer's [B, T, D] states (embeddings first)


def mask_token_id(table: EmbeddingTable) -> int:
    """The row masked positions get: the tokenizer's mask token (BERT's [MASK]; Gemma's vocabulary has a
    ``<mask>`` control token, id 4, which its causal LM was not trained to fill); for a causal LM
    without one, ``<unk>``."""
    tokenizer = table.tokenizer
    mask_id = getattr(tokenizer, "mask_token_id", None)
    if mask_id is None and table.lm_kind == "causal":
        mask_id = getattr(tokenizer, "unk_token_id", None)
    if mask_id is None:
        raise BadInputError(f"lqae: table {table.name!r} has no mask token (nor <unk>) to mask positions with")
    return int(mask_id)


def bos_token_id(table: EmbeddingTable) -> int:
    bos = getattr(table.tokenizer, "bos_token_id", None)
    if bos is None:
        raise BadInputError(f"lqae: table {table.name!r}: a causal LM needs a <bos> token to start the sequence")
    return int(bos)


def head_is_tied(lm: nn.Module) -> bool:
    """Whether the LM's output layer is its input-embedding matrix (Gemma-3, BERT's MLM decoder)."""
    out, inp = lm.get_output_embeddings(), lm.get_input_embeddings()
    return out is not None and (out.weight is inp.weight or out.weight.data_ptr() == inp.weight.data_ptr())


def head_rows(lm: nn.Module, codebook: torch.Tensor, ids: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor | None]:
    """``(weight [K, D], bias [K] or None)`` of the LM's pretrained output layer restricted to the rows
    ``ids``. A tied head is the codebook itself (so the random baseline's head is its random rows, as
    the random rows replace the table wherever it appears); an untied one is the LM's own."""
    out = lm.get_output_embeddings()
    if out is None:
        raise BadInputError("lqae: the frozen LM has no output layer to score codes with")
    bias = getattr(out, "bias", None)
    bias = bias.detach().float()[ids].clone() if bias is not None else None
    weight = codebook[ids] if head_is_tied(lm) else out.weight.detach().float()[ids]
    return weight.clone(), bias


def run_masked(lm: nn.Module, tokens: torch.Tensor, all_layers: bool = False) -> LMRun:
    """The masked LM's encoder over token vectors ``[B, T, D]``."""
    out = lm.base_model(inputs_embeds=tokens, output_hidden_states=all_layers)
    h = out.last_hidden_state
    return LMRun(states=h, predict=h, layers=tuple(out.hidden_states) if all_layers else None)


def run_causal(lm: nn.Module, tokens: torch.Tensor, bos_id: int, scale: float, all_layers: bool = False) -> LMRun:
    """The causal LM over ``<bos>`` + scaled token vectors; states shifted as the module docstring says."""
    emb = lm.get_input_embeddings()
    bos = emb(torch.tensor([bos_id], device=tokens.device)).to(tokens.dtype)  # scaled by the module
    x = torch.cat([bos.expand(len(tokens), 1, -1), tokens * scale], dim=1)
    out = lm.base_model(inputs_embeds=x, output_hidden_states=all_layers)
    h = out.last_hidden_state
    layers = tuple(layer[:, 1:] for layer in out.hidden_states) if all_layers else None
    return LMRun(states=h[:, 1:], predict=h[:, :-1], layers=layers)


def softcap(logits: torch.Tensor, lm: nn.Module) -> torch.Tensor:
    """The LM's final logit soft-capping, if its config has one (Gemma-2: 30; Gemma-3: none)."""
    cap = getattr(getattr(lm, "config", None), "final_logit_softcapping", None)
    return cap * torch.tanh(logits / cap) if cap else logits


def masked_mean_ce(logits: torch.Tensor, targets: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """Cross-entropy of ``logits [M, K]`` (the masked positions of ``mask [B, T]``, row-major) against
    ``targets [M]``: mean per image over its masked positions, then over images with one (the paper)."""
    ce = F.cross_entropy(logits, targets, reduction="none")
    rows = mask.nonzero()[:, 0]
    per_image = torch.zeros(len(mask), dtype=ce.dtype, device=ce.device).index_add_(0, rows, ce)
    count = mask.sum(1)
    has = count > 0
    return (per_image[has] / count[has]).mean()


def code_targets(codes: torch.Tensor, ids: torch.Tensor, vocab_size: int) -> torch.Tensor:
    """Positions of full-table ``codes`` among the searchable rows ``ids`` (what the logits index)."""
    position = torch.full((vocab_size,), -1, dtype=torch.long, device=codes.device)
    position[ids.to(codes.device)] = torch.arange(len(ids), device=codes.device)
    out = position[codes]
    if (out < 0).any():
        raise ValueError("lqae: a code outside the searchable rows")
    return out
