"""VLAP: one linear layer from a frozen image encoder into a frozen causal LM's word-embedding space
(Park et al., ICLR 2024; papers.md §3, §7.3).

Trained objective, with gradients reaching only the linear layer ``g``:

    L = w_cap · L_cap + w_map · L_map          (defaults 1.0 and 10.0; the draft code's w_map is 0.1)

* ``L_map`` (:mod:`align.methods.vlap.assignment`): the mean projected visual token ``v̄`` and the caption's
  text feature ``t`` are both assigned to the frozen word embeddings by entropic OT, and each predicts the
  other's assignment. Which words, with what marginal, and over how many captions at once
  (:mod:`align.methods.vlap.vocabulary`, ``ot_columns``) decide whether the targets mean anything.
* ``L_cap``: mean negative log-likelihood of the caption tokens (and a closing ``<eos>``) under the
  frozen LM, whose input is ``[<bos>] + visual prefix (inputs_embeds) + embeddings("A picture of") +
  caption``; only positions where a caption token comes next get logits, right padding is masked out.

``w_map=0`` is the caption-only (LiMBeR-style) baseline, ``w_cap=0`` assignment only; the switched-off
term is not computed (the LM is then not even loaded) and is reported as 0.

Design decisions (deviations from the draft code, and why):

* **Text feature.** ``t`` = mean of the frozen LM's *input word embeddings* (raw table rows) of the
  caption's non-special tokens. The draft averages T5-*encoder* hidden states; a causal LM has no
  encoder, and its hidden states live in a different space from the table the OT scores against.
* **Visual prefix.** ``prefix_source="grid"``: the image encoder's spatial token grid (MobileNetV2's
  7x7 map) average-pooled to ``num_prefix_tokens`` = P = p² tokens, each mapped by the same
  ``g = Linear(d_img, D)``: VLAP's layer on visual tokens (P = 49 keeps every token). ``"pooled"``: a
  pooled feature mapped by ``Linear(d_img, P·D)`` and reshaped to P tokens (LiMBeR's recipe; with P = 1
  the same function class as the grid with P = 1, since the pooled feature is the grid's mean).
* **OT columns.** The text side is frozen, so with ``ot_columns="all"`` its assignment is solved once
  over every training caption (the targets are then those of full-batch OT); the draft assigns per batch
  (``"batch"``), which dilutes the targets when the vocabulary is much larger than the batch. Held-out
  validation captions (``val_fraction``) get an OT of their own, and the vocabulary, prior and input
  standardisation also come from the training rows alone: nothing of the validation rows reaches training.
* **Embedding scale.** ``g`` maps into the *raw* table space (where ``W`` and ``L_map`` live). Gemma
  multiplies embeddings by ``sqrt(D)`` inside its embedding module, and ``inputs_embeds`` bypasses that
  module, so the prompt and caption are embedded through ``lm.get_input_embeddings()`` (scaled) and the
  visual prefix is multiplied by the same factor, measured once from the module (1 for Llama/OPT).
* **Precision.** ``lm_precision="bfloat16"`` runs the frozen LM's forward and backward under bfloat16
  autocast; ``g`` and ``L_map`` stay float32. It pays off only on CPUs or GPUs with bfloat16 matrix
  units (AMX on recent Xeons); without them it is slower, hence the float32 default
  (``benchmarks/vlap_lm_speed.py`` measures the speed and the effect on the loss). ``"auto"`` picks
  bfloat16 where the training device has such units (:func:`align.precision.auto_precision`), says so
  once on stderr, and the hyper-parameters keep the precision it chose, never ``auto``.
* **Loss weights.** ``w_map`` (lambda) defaults to 10, not the draft code's 0.1: over a short
  training the captioning gradient otherwise decides ``g`` alone and ``v̄`` learns no alignment with
  the caption's words (chosen on validation, README "How the defaults were chosen").
* **Fit API.** VLAP needs caption strings (for ``L_cap`` and ``t``), not another encoder's sentence
  features: :meth:`VLAPAligner.fit_captions` takes them; ``fit`` accepts a list of strings too, and
  refuses feature tensors with a :class:`BadInputError` saying so.
"""

from __future__ import annotations

import contextlib
import functools
import math
import re
import sys
from collections.abc import Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from align.errors import BadInputError
from align.kernels.sinkhorn import assign
from align.methods.framework.base import ImageInput, caption_strings, check_caption_pairs, check_features, check_tokens
from align.methods.framework.hparams import MAX_CODES, MAX_EPOCHS, MAX_ROWS, MAX_TOKENS, param
from align.methods.framework.trained import TrainedAligner, TrainedHParams
from align.methods.vlap.assignment import AssignmentLoss
from align.methods.vlap.packing import attention_mask, pack, packed_inputs, row_width
from align.methods.vlap.vocabulary import CAPTION_PRIORS, PRIORS, VOCABULARIES, caption_tokens, row_prior, vocabulary
from align.methods.vlap.word_prior import is_special
from align.precision import AUTO, auto_line, auto_precision
from align.registry import ALIGNERS, EMBEDDING_TABLES
from align.text.base import EmbeddingTable, check_texts, input_embedding_scale
from align.text.table_mean import mean_word_embedding, pad_rows, special_mask

PROMPT = "A picture of"
BYTE_TOKEN = re.compile(r"<0x[0-9A-Fa-f]{2}>")  # SentencePiece byte fallback: text, not a control token
DEFAULT_TABLE = "gguf:gemma-3-270m.q4_k_m"
PREFIX_SOURCES = ("pooled", "grid")
OT_COLUMNS = ("batch", "all")
PRECISIONS = ("float32", "bfloat16")
# what early stopping can follow, and which way is better; the last three need val_lm_items
MONITORS = {"val_loss": "min", "val_r1": "max", "val_cap_nll": "min", "val_lm_r1": "max", "val_lm_image_r1": "max",
            "val_lm_mrr": "max"}
LM_MONITORS = ("val_cap_nll", "val_lm_r1", "val_lm_image_r1", "val_lm_mrr")
# the device ``lm_precision="auto"`` asks about, by Lightning accelerator (None: the CPU, then a GPU)
AUTO_DEVICE = {"cpu": "cpu", "gpu": "cuda", "cuda": "cuda"}


@functools.lru_cache(maxsize=4)
def load_table(name: str) -> EmbeddingTable:
    """The table (and, on first use, its LM) built once per process: Gemma's LM costs ~45 s."""
    table = EMBEDDING_TABLES.create(name)
    if table.lm_kind != "causal":
        raise BadInputError(f"vlap: table {name!r} has lm_kind={table.lm_kind!r}; VLAP needs a causal LM")
    if table.tokenizer is None:
        raise BadInputError(f"vlap: table {name!r} has no tokenizer")
    return table


def tokenize_captions(table: EmbeddingTable, captions: Sequence[str], max_tokens: int) -> tuple[torch.Tensor, torch.Tensor]:
    """``(ids [N, L], mask [N, L])``: each caption's tokens (truncated to ``max_tokens``) then
    ``<eos>`` when the tokenizer has one (so generation learns to stop), right-padded."""
    tok = table.tokenizer
    eos = getattr(tok, "eos_token_id", None)
    pad = getattr(tok, "pad_token_id", None) or 0
    rows = [list(tok(c, add_special_tokens=False)["input_ids"])[:max_tokens] for c in captions]
    for i, row in enumerate(rows):
        if not row:
            raise BadInputError(f"vlap: caption {i} has no tokens")
    return pad_rows([r + [eos] if eos is not None else r for r in rows], pad)


def decode_captions(table: EmbeddingTable, ids: torch.Tensor) -> list[str]:
    """Generated token ids ``[N, L]`` as text without control tokens. ``skip_special_tokens`` drops only
    what the tokenizer flags special, and Gemma's GGUF tokenizer does not flag e.g. ``<start_of_image>``
    (greedy captions were full of it), so the table's bracketed special rows (``<...>``, ``[...]``) are
    dropped first; byte fallbacks (``<0x0A>``) and whitespace rows stay, they are text."""
    drop = {i for i in table.special_ids if is_special(table.tokens[i]) and not BYTE_TOKEN.fullmatch(table.tokens[i])}
    rows = [[t for t in row if t not in drop] for row in ids.tolist()]
    return [s.strip() for s in table.tokenizer.batch_decode(rows, skip_special_tokens=True)]


def _right_padded(mask: torch.Tensor) -> bool:
    """Every row of ``mask`` is ones then zeros (what :func:`tokenize_captions` gives)."""
    lengths = mask.sum(1, keepdim=True)
    return bool((mask.bool() == (torch.arange(mask.shape[1], device=mask.device) < lengths)).all())


def likelihood_scores(scores: torch.Tensor, ids: torch.Tensor, mask: torch.Tensor) -> dict[str, float]:
    """The validation values of :meth:`VLAPCore.validation_compute` from ``scores[i, j]`` = log p(caption j |
    image i) and the captions' tokens: a pair is a hit when every caption (image) with other text scores
    strictly lower than the best one with the right text (identical captions are one candidate; a tie is a
    miss, the tie rule of every scored task, align/eval/ties.py)."""
    same = (ids.unsqueeze(1) == ids.unsqueeze(0)).all(-1) & (mask.unsqueeze(1) == mask.unsqueeze(0)).all(-1)
    best_right = scores.masked_fill(~same, -math.inf)
    wrong = scores.masked_fill(same, -math.inf)
    caption_hit = wrong.max(1).values < best_right.max(1).values  # image i: its caption first
    image_hit = wrong.max(0).values < best_right.max(0).values  # caption j: its image first
    # image i's rank of its caption: 1 + the other texts scoring at least as high (ties count against),
    # one candidate a text, so the reciprocal rank moves in finer steps than R@1 on the same scores
    beaten = (wrong >= best_right.max(1, keepdim=True).values) & _first_of_each_text(same)
    return {"val_cap_nll": float(-scores.diagonal().sum() / mask.sum()),
            "val_lm_r1": float(caption_hit.float().mean()), "val_lm_image_r1": float(image_hit.float().mean()),
            "val_lm_mrr": float((1.0 / (1 + beaten.sum(1).float())).mean())}


def _first_of_each_text(same: torch.Tensor) -> torch.Tensor:
    """``[k, k]`` mask, true in the columns of the first caption of each distinct text (``same[i, j]``: captions
    i and j are the same text), so a text said by several pairs is counted once as a candidate."""
    k = len(same)
    earlier = torch.ones(k, k, dtype=torch.bool, device=same.device).tril(-1)  # earlier[j, m]: m < j
    first = ~(same & earlier).any(1)
    return first.unsqueeze(0).expand(k, k)


def pool_grid(tokens: torch.Tensor, count: int) -> torch.Tensor:
    """``[N, T, d]`` tokens of a square grid average-pooled to ``count`` = p² tokens ``[N, count, d]``
    (a non-square grid is treated as a line; ``count`` = T keeps every token)."""
    n, t, d = tokens.shape
    if count == t:
        return tokens
    side, out = math.isqrt(t), math.isqrt(count)
    if side * side == t and out * out == count:
        grid = tokens.transpose(1, 2).reshape(n, d, side, side)
        return F.adaptive_avg_pool2d(grid, out).flatten(2).transpose(1, 2)
    return F.adaptive_avg_pool1d(tokens.transpose(1, 2), count).transpose(1, 2)


class VLAPCore(nn.Module):
    """The trainable linear layer ``g`` (its only parameters) plus the frozen parts needed for the loss.

    The frozen LM is held outside the module tree (not in ``state_dict``, not moved or switched to
    train mode by Lightning) and loaded only when ``L_cap`` or generation needs it.
    ``forward(x, ids, mask, rows)`` returns the weighted loss and leaves the terms in ``self.parts``;
    ``rows`` are the batch's row numbers in the fit data (for the text targets of ``ot_columns="all"``).

    ``vocab_ids`` / ``prior_weights``: the assignment vocabulary and its marginal when they were chosen
    from the training captions (saved with the weights); without them both follow from the hyper-parameters."""

    def __init__(self, image_dim: int, table: str, num_prefix_tokens: int = 1, w_cap: float = 1.0,
                 w_map: float = 10.0, tau: float = 0.01, eps: float = 0.01, sinkhorn_iters: int = 3,
                 prior: str = "uniform", vocab_subset: int | None = None, prompt: str = PROMPT,
                 prefix_source: str = "pooled", ot_columns: str = "batch", init_scale: float = 1.0,
                 lm_precision: str = "float32", val_lm_items: int = 0, vocab_ids: list[int] | None = None,
                 prior_weights: list[float] | None = None) -> None:
        super().__init__()
        self.table_name, self.prompt = table, prompt
        self.num_prefix_tokens, self.w_cap, self.w_map = num_prefix_tokens, w_cap, w_map
        self.prefix_source, self.ot_columns, self.init_scale = prefix_source, ot_columns, init_scale
        self.lm_precision = lm_precision
        self.sinkhorn = (eps, sinkhorn_iters)
        tab = load_table(table)
        self.embed_dim = tab.embed_dim
        width = tab.embed_dim if prefix_source == "grid" else num_prefix_tokens * tab.embed_dim
        self.g = nn.Linear(image_dim, width)
        self.register_buffer("x_mean", torch.zeros(image_dim))  # input standardisation, set by calibrate()
        self.register_buffer("x_scale", torch.ones(()))
        stored = vocab_ids is not None  # chosen from the fit data: kept in the state
        ids = torch.tensor(vocab_ids, dtype=torch.long) if stored else vocabulary(tab, "frequent", vocab_subset)
        prior_t = torch.tensor(prior_weights, dtype=torch.float64) if prior_weights is not None else row_prior(tab, ids, prior)
        self.register_buffer("vocab_ids", ids, persistent=stored)
        self.register_buffer("word_prior", prior_t.float(), persistent=stored)
        self.word_norm = float(tab.weight[ids].norm(dim=1).mean())  # the scale calibrate() gives g's output
        self.assignment = AssignmentLoss(tab.weight[ids], prior_t, tau, eps, sinkhorn_iters)
        self.register_buffer("words", tab.weight, persistent=False)  # raw table, for text features
        self.register_buffer("special", special_mask(tab), persistent=False)
        self.register_buffer("text_targets", torch.empty(0), persistent=False)  # [N, K], ot_columns="all"
        self.parts: dict[str, float] = {}
        self.val_lm_items = val_lm_items
        self._val: list[tuple[torch.Tensor, torch.Tensor]] = []
        self._val_lm: list[tuple[torch.Tensor, torch.Tensor, torch.Tensor]] = []

    # ------------------------------------------------------------------ frozen LM

    @property
    def table(self) -> EmbeddingTable:
        return load_table(self.table_name)

    def lm(self) -> nn.Module:
        """The frozen causal LM (eval mode, no grad), on ``g``'s device."""
        lm = self.table.load_lm().requires_grad_(False).eval()
        return lm.to(self.g.weight.device)

    def embed_scale(self, lm: nn.Module) -> float:
        """What the LM's embedding module multiplies raw rows by (Gemma: sqrt(D); others: 1)."""
        return input_embedding_scale(lm, int(self.table.word_ids[0]))

    def lm_autocast(self) -> contextlib.AbstractContextManager:
        """bfloat16 autocast around the frozen LM when ``lm_precision`` asks for it."""
        if self.lm_precision == "bfloat16":
            return torch.autocast(self.g.weight.device.type, dtype=torch.bfloat16)
        return contextlib.nullcontext()

    # ------------------------------------------------------------------ features

    def visual_tokens(self, x: torch.Tensor) -> torch.Tensor:
        """What ``g`` maps: the pooled-grid tokens ``[N, P, d]`` (grid) or the pooled features ``[N, d]``."""
        return pool_grid(x, self.num_prefix_tokens) if self.prefix_source == "grid" else x

    @torch.no_grad()
    def calibrate(self, x: torch.Tensor, ids: torch.Tensor | None = None, mask: torch.Tensor | None = None,
                  train_rows: torch.Tensor | None = None) -> None:
        """Fit-time conditioning of ``g`` (the function class is unchanged: still one affine layer), and,
        with ``ot_columns="all"``, the text side's OT targets of the fit captions ``(ids, mask)``.

        ``train_rows`` (None: every row) are the rows the fit trains on: the standardisation and the
        training rows' targets see only them, so held-out validation rows cannot leak into training.

        Frozen image features are far from the word-embedding scale (MobileNetV2: mean norm 24, of which
        a shared mean vector of norm 19; Gemma's raw rows: norm 1.03), so the default ``nn.Linear`` init
        puts every prefix ~10x off the table's scale and nearly on one direction: the frozen LM sees an
        out-of-distribution token and the images start collapsed. So the input is centred and scaled to
        unit mean norm (a fixed affine map, saved with ``g``), and ``g``'s weight is drawn so that a
        prefix token has ``init_scale`` times the mean norm of the vocabulary's rows (bias 0)."""
        train = x if train_rows is None else x[train_rows]
        tokens = self.visual_tokens(train).reshape(-1, x.shape[-1])
        mean = tokens.mean(0)
        self.x_mean.copy_(mean)
        self.x_scale.copy_((tokens - mean).norm(dim=1).mean().clamp_min(1e-12))
        nn.init.normal_(self.g.weight, std=self.init_scale * self.word_norm / self.embed_dim**0.5)
        nn.init.zeros_(self.g.bias)
        if self.ot_columns == "all" and ids is not None:
            self.set_text_targets(ids, mask, train_rows)

    @torch.no_grad()
    def set_text_targets(self, ids: torch.Tensor, mask: torch.Tensor, train_rows: torch.Tensor | None = None) -> None:
        """``q^t [N, K]`` of every fit caption (the text side is frozen, so solved once): one OT over the
        training captions (``train_rows``; None: all), and a separate one over the other (validation)
        captions for their ``val_loss``, so neither split's targets depend on the other's captions."""
        unit = self.assignment.unit_words
        scores = F.normalize(self.text_feature(ids, mask).float(), dim=-1) @ unit.T  # [N, K]
        targets = torch.zeros_like(scores)
        held = torch.ones(len(scores), dtype=torch.bool, device=scores.device)
        if train_rows is not None:
            held[train_rows] = False
        for rows in (~held, held) if train_rows is not None else (held,):
            if rows.any():
                targets[rows] = assign(scores[rows].T, self.assignment.prior, *self.sinkhorn).T
        self.text_targets = targets.contiguous()

    def project(self, x: torch.Tensor) -> torch.Tensor:
        """Visual tokens ``[N, P, D]`` in the raw word-embedding space."""
        out = self.g((self.visual_tokens(x) - self.x_mean) / self.x_scale)
        return out.view(len(x), self.num_prefix_tokens, self.embed_dim)

    def encode_image(self, x: torch.Tensor) -> torch.Tensor:
        """``v̄``: the mean projected visual token ``[N, D]``."""
        return self.project(x).mean(1)

    def text_feature(self, ids: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        """``t``: mean raw word embedding of each caption's non-special tokens ``[N, D]``."""
        return mean_word_embedding(self.words, self.special, ids, mask)

    # ------------------------------------------------------------------ losses

    def _context(self, lm: nn.Module, prefix: torch.Tensor) -> torch.Tensor:
        """``[<bos>] + scaled prefix + prompt`` as input embeddings ``[N, 1? + P + Lp, D]``."""
        emb, tok = lm.get_input_embeddings(), self.table.tokenizer
        n, device = len(prefix), prefix.device
        head = [getattr(tok, "bos_token_id", None)]
        head = torch.tensor([i for i in head if i is not None], dtype=torch.long, device=device)
        prompt = torch.tensor(tok(self.prompt, add_special_tokens=False)["input_ids"], dtype=torch.long, device=device)
        parts = [emb(head).expand(n, -1, -1)] if len(head) else []
        parts += [prefix * self.embed_scale(lm), emb(prompt).expand(n, -1, -1)]
        return torch.cat(parts, dim=1)

    def caption_loss(self, prefix: torch.Tensor, ids: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        """Mean NLL per caption token given the visual prefix and the prompt (frozen LM).

        Logits are computed only where a caption token (not padding) comes next (a boolean
        ``logits_to_keep``): over Gemma's 262k-word vocabulary the output projection otherwise costs as
        much as the whole transformer, and most of the memory. Where the LM's attention takes a ready
        mask, the sequences are packed into a few rows instead of padded to the longest (:mod:`.packing`)."""
        lm = self.lm()
        context = self._context(lm, prefix)
        inputs = torch.cat([context, lm.get_input_embeddings()(ids)], dim=1)
        lengths = context.shape[1] + mask.sum(1)
        width = row_width(lengths, lm) if _right_padded(mask) else None
        if width is not None:
            return self._packed_caption_loss(lm, inputs, lengths, ids, context.shape[1], width)
        return self._padded_nll(lm, inputs, context.shape[1], ids, mask)[0].mean()

    def _padded_nll(self, lm: nn.Module, inputs: torch.Tensor, context: int, ids: torch.Tensor,
                    mask: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """``(nll, row)`` of every caption token of right-padded ``inputs`` (``context`` positions, then
        the captions ``ids``): its NLL under the frozen LM and the row it belongs to, row-major."""
        attention = torch.cat([mask.new_ones(len(inputs), context), mask], dim=1)
        predicts_caption = torch.zeros(attention.shape, dtype=torch.bool, device=ids.device)
        predicts_caption[:, context - 1:-1] = mask.bool()  # position i predicts token i + 1
        with self.lm_autocast():
            logits = lm(inputs_embeds=inputs, attention_mask=attention, logits_to_keep=predicts_caption).logits
        nll = F.cross_entropy(logits.reshape(-1, logits.shape[-1]).float(), ids[mask.bool()], reduction="none")
        return nll, predicts_caption.nonzero()[:, 0]

    def _packed_caption_loss(self, lm: nn.Module, inputs: torch.Tensor, lengths: torch.Tensor, ids: torch.Tensor,
                             context: int, width: int) -> torch.Tensor:
        """:meth:`caption_loss` with the sequences packed into a few rows (:mod:`.packing`): the same
        positions predict the same tokens, without the padding's positions."""
        packing = pack(lengths.cpu(), width)
        packed, positions, allowed, source = packed_inputs(inputs, lengths, packing)
        t = inputs.shape[1]
        item, step = source.div(t, rounding_mode="floor"), source % t
        keep = (source >= 0) & (step >= context - 1) & (step <= lengths[item.clamp_min(0)] - 2)
        targets = ids[item[keep], step[keep] - context + 1]  # position t predicts token t + 1
        with self.lm_autocast():
            logits = lm(inputs_embeds=packed, position_ids=positions, attention_mask=attention_mask(allowed, lm),
                        logits_to_keep=keep, use_cache=False).logits
        return F.cross_entropy(logits.reshape(-1, logits.shape[-1]).float(), targets)

    def map_loss(self, visual: torch.Tensor, ids: torch.Tensor, mask: torch.Tensor,
                 rows: torch.Tensor | None) -> torch.Tensor:
        """``L_map``; with ``ot_columns="all"`` the text targets are the precomputed full-batch ones."""
        text = self.text_feature(ids, mask)
        targets = self.text_targets[rows] if self.ot_columns == "all" and rows is not None and len(self.text_targets) else None
        return self.assignment(visual, text, text_targets=targets).loss

    def forward(self, x: torch.Tensor, ids: torch.Tensor, mask: torch.Tensor,
                rows: torch.Tensor | None = None) -> torch.Tensor:
        prefix = self.project(x)
        zero = prefix.new_zeros(())
        l_cap = self.caption_loss(prefix, ids, mask) if self.w_cap > 0 else zero
        l_map = self.map_loss(prefix.mean(1), ids, mask, rows) if self.w_map > 0 else zero
        self.parts = {"l_cap": float(l_cap.detach()), "l_map": float(l_map.detach())}
        return self.w_cap * l_cap + self.w_map * l_map

    # ------------------------------------------------------------------ validation

    @torch.no_grad()
    def validation_update(self, x: torch.Tensor, ids: torch.Tensor, mask: torch.Tensor, *rest: Any) -> None:
        prefix = self.project(x)
        self._val.append((prefix.mean(1), self.text_feature(ids, mask)))  # v̄, as encode_image gives it
        room = self.val_lm_items - sum(len(p) for p, _, _ in self._val_lm)
        if room > 0:  # the first val_lm_items validation pairs, for the LM's likelihoods
            self._val_lm.append((prefix[:room], ids[:room], mask[:room]))

    @torch.no_grad()
    def validation_compute(self) -> dict[str, float]:
        """``val_r1``: image-to-caption R@1 among the validation pairs (cosine of ``v̄`` and ``t``). With
        ``val_lm_items`` > 0, on that many validation pairs, what the captioning loss serves too:
        ``val_cap_nll`` (NLL per caption token under the frozen LM, whatever ``w_cap``), ``val_lm_r1``
        (each image's caption ranked first among the pairs' captions by log p(caption | prefix, prompt))
        and ``val_lm_image_r1`` (each caption's image ranked first by the same log-likelihood: no length
        bias, since one caption is compared under every prefix). Identical captions count as one."""
        if not self._val:
            return {}
        v = F.normalize(torch.cat([a for a, _ in self._val]).float(), dim=-1)
        t = F.normalize(torch.cat([b for _, b in self._val]).float(), dim=-1)
        self._val = []
        out = {"val_r1": float(((v @ t.T).argmax(1) == torch.arange(len(v), device=v.device)).float().mean())}
        if self._val_lm:
            prefix, ids, mask = (torch.cat(parts) for parts in zip(*self._val_lm))
            self._val_lm = []
            out.update(likelihood_scores(self.caption_logprobs(prefix, ids, mask), ids, mask))
        return out

    @torch.no_grad()
    def caption_logprobs(self, prefix: torch.Tensor, ids: torch.Tensor, mask: torch.Tensor,
                         chunk: int = 128) -> torch.Tensor:
        """``S [k, k]``: ``S[i, j]`` = log p(caption j, <eos> | [<bos>] + prefix i + prompt) under the frozen
        LM (summed over the caption's tokens), for every pair of ``k`` prefixes and ``k`` captions; pairs
        go through the LM ``chunk`` at a time, logits only where a caption token comes next."""
        lm = self.lm()
        context, words = self._context(lm, prefix), lm.get_input_embeddings()(ids)
        k, c = len(prefix), context.shape[1]
        scores = torch.empty(k * k, device=prefix.device)
        for start in range(0, k * k, chunk):
            pair = torch.arange(start, min(start + chunk, k * k), device=prefix.device)
            i, j = pair // k, pair % k
            nll, row = self._padded_nll(lm, torch.cat([context[i], words[j]], dim=1), c, ids[j], mask[j])
            scores[start:start + len(pair)] = -torch.zeros(len(pair), device=nll.device).index_add_(0, row, nll)
        return scores.view(k, k)

    @torch.no_grad()
    def generate(self, x: torch.Tensor, max_new_tokens: int) -> list[str]:
        """Greedy captions from ``[<bos>] + prefix + prompt``, control tokens removed (:func:`decode_captions`)."""
        lm = self.lm()
        context = self._context(lm, self.project(x))
        tok = self.table.tokenizer
        with self.lm_autocast():
            out = lm.generate(inputs_embeds=context, attention_mask=torch.ones(context.shape[:2], dtype=torch.long,
                              device=context.device), max_new_tokens=max_new_tokens, do_sample=False,
                              pad_token_id=getattr(tok, "pad_token_id", None) or 0)
        return decode_captions(self.table, out)


@dataclass(frozen=True)
class VLAPHParams(TrainedHParams):
    """``lr`` and ``w_map`` were chosen on a validation part of the emoji fit split
    (configs/bench/vlap_select.yaml, configs/bench/vlap_lm_select.yaml: the draft code's ``w_map`` of 0.1
    lets the captioning loss drown the assignment loss over a short training); the vocabulary, prior, OT columns and schedule defaults undo the target dilution described in
    :mod:`align.methods.vlap.vocabulary`, each ablated in benchmarks/vlap_emoji.py (README "How the
    defaults were chosen")."""

    table: str = param(DEFAULT_TABLE, want="an embedding-table name")  # a causal LM's table
    w_cap: float = param(1.0, low=0)  # weight of the captioning loss L_cap
    w_map: float = param(10.0, low=0)  # weight of the assignment loss L_map (lambda)
    tau: float = param(0.01, above=0)  # softmax temperature of the assignment prediction
    eps: float = param(0.01, above=0)  # Sinkhorn's entropic regularisation
    sinkhorn_iters: int = param(3, low=1, high=10_000)
    # OT marginal over the vocabulary: captions (word counts of the training captions), frequency (wordfreq),
    # uniform (SwAV: flat over every vocabulary word), uniform_on_captions (flat over the words of the
    # training captions, the others at the captions prior's pseudo-count: its support, not its shape)
    prior: str = param("captions", choices=PRIORS)
    vocab: str = param("captions", choices=VOCABULARIES)  # frequent words, or those joined by the captions' words
    vocab_subset: int | None = param(2000, low=2, high=MAX_CODES)  # the N most frequent words (None: every word row)
    ot_columns: str = param("all", choices=OT_COLUMNS)  # text targets from OT over the batch or all training captions
    lr: float = param(3e-3, above=0)
    weight_decay: float = param(0.0, low=0)
    warmup_fraction: float = param(0.1, low=0, below=1)  # linear warm-up over this fraction of the steps
    schedule: str = param("cosine", choices=("constant", "cosine"))  # after the warm-up
    init_scale: float = param(1.0, above=0)  # prefix norm at init, in units of the vocabulary's row norm
    batch_size: int = param(64, low=2, high=MAX_ROWS)
    max_epochs: int = param(10, low=0, high=MAX_EPOCHS)
    val_fraction: float = param(0.0, low=0, below=0.5)  # fit pairs held out for val_loss / val_r1 per epoch
    patience: int | None = param(None, low=1, high=MAX_EPOCHS)  # early stopping on `monitor` (needs val_fraction > 0)
    # validation pairs scored each epoch by the frozen LM's likelihood (val_cap_nll, val_lm_r1, val_lm_image_r1;
    # k of them cost k² caption likelihoods); 0: none
    val_lm_items: int = param(0, low=0, high=1024)
    monitor: str = param("val_loss", choices=tuple(MONITORS))  # the validation value early stopping follows
    prefix_source: str = param("pooled", choices=PREFIX_SOURCES)  # pooled features, or the encoder's token grid
    num_prefix_tokens: int = param(1, low=1, high=1024)  # visual tokens per image (grid: a square number, or the grid's size)
    max_caption_tokens: int = param(64, low=1, high=MAX_TOKENS)
    prompt: str = param(PROMPT, want="a non-empty string")
    lm_precision: str = param("float32", choices=(*PRECISIONS, AUTO))  # the frozen LM's forward/backward

    def check(self, aligner: str) -> VLAPHParams:
        if self.w_cap == 0 and self.w_map == 0:
            raise BadInputError(f"{aligner}: w_cap and w_map are both 0; nothing would be trained")
        if not self.prompt.strip():
            raise self.bad(aligner, "prompt", "a non-empty string")
        if self.patience is not None and self.val_fraction == 0:
            raise BadInputError(f"{aligner}: patience={self.patience} needs val_fraction > 0 to stop on")
        if self.monitor in LM_MONITORS and self.val_lm_items < 2:
            raise BadInputError(f"{aligner}: monitor={self.monitor!r} needs val_lm_items >= 2 (the validation pairs the "
                                "LM scores)")
        if self.val_lm_items and self.val_fraction == 0:
            raise BadInputError(f"{aligner}: val_lm_items={self.val_lm_items} needs val_fraction > 0")
        if self.prefix_source == "grid" and math.isqrt(self.num_prefix_tokens) ** 2 != self.num_prefix_tokens:
            raise self.bad(aligner, "num_prefix_tokens", "a square number (p x p pooled grid tokens) with prefix_source='grid'")
        if self.lm_precision == AUTO:
            return replace(self, lm_precision=_auto_lm_precision(AUTO_DEVICE.get(self.accelerator)))
        return self


@functools.cache
def _auto_lm_precision(device: str | None) -> str:
    """What ``lm_precision="auto"`` means on ``device``, said once per process on stderr."""
    precision, reason = auto_precision(device)
    print(f"vlap: lm_{auto_line(precision, reason)}", file=sys.stderr)
    return precision


@ALIGNERS.register(
    "vlap",
    description="One linear layer into a frozen causal LM's word-embedding space, trained with captioning "
    "(L_cap) + w_map x optimal-transport assignment prediction over the word embeddings (L_map); w_map "
    "(lambda) defaults to 10, chosen on validation (the VLAP draft code uses 0.1). "
    "Needs caption strings: fit_captions(images, captions). w_map=0: caption-only (LiMBeR); w_cap=0: L_map only.",
    citation="Park et al., Bridging Vision and Language Spaces with Assignment Prediction (VLAP), ICLR 2024",
)
class VLAPAligner(TrainedAligner):
    """Linear map from image features into a frozen causal LM's word-embedding space (VLAP).

    Shared space = the LM's raw word-embedding space: ``encode_image`` gives ``v̄`` (mean projected
    visual token), ``encode_text_strings`` the mean word embedding ``t`` of a caption; compare them
    (and table rows) by cosine. With ``prefix_source="grid"`` every image input is an encoder's token
    grid ``[N, T, d]`` (``image_input_spec`` tells the runner)."""

    name = "vlap"
    # 2: vocabulary from the captions, full-batch OT, schedule, grid prefixes; 3: fit-time statistics from the
    # training rows only (val_fraction > 0 fits move), captions packed through the LM, captions without specials
    version = "3"
    text_input = "strings"
    config_class = VLAPHParams
    config: VLAPHParams
    core_class = VLAPCore
    shape_args = ("image_dim", "vocab_ids", "prior_weights")  # the vocabulary, when chosen from the fit captions
    can_caption = True  # caption: greedy captions of the frozen LM
    finds_nearest_words = True  # nearest_words: the vocabulary words closest to each image
    # hyper-parameters added in version 2, at the values that reproduce a version-1 fit
    legacy_hparams = {"vocab": "frequent", "ot_columns": "batch", "warmup_fraction": 0.0, "schedule": "constant",
                      "init_scale": 1.0, "val_fraction": 0.0, "patience": None, "prefix_source": "pooled",
                      "lm_precision": "float32", "val_lm_items": 0, "monitor": "val_loss"}

    def image_input_spec(self) -> ImageInput:
        return ImageInput("tokens" if self.config.prefix_source == "grid" else "pooled")

    def lr_schedule(self) -> tuple[float, str]:
        return self.config.warmup_fraction, self.config.schedule

    def early_stopping_patience(self) -> int | None:
        return self.config.patience

    def early_stopping_monitor(self) -> tuple[str, str]:
        return self.config.monitor, MONITORS[self.config.monitor]

    # ------------------------------------------------------------------ training

    def fit(self, image_features: torch.Tensor, text_features: Any) -> VLAPAligner:
        """Caption strings are delegated to :meth:`fit_captions`; feature tensors are refused."""
        why = "VLAP trains through the frozen LM's captioning loss and its word embeddings"
        return self.fit_captions(image_features, caption_strings(text_features, "vlap.fit", why))

    def _check_images(self, images: Any, what: str, dim: int | None = None) -> torch.Tensor:
        """Pooled features ``[N, d]``, or token grids ``[N, T, d]`` with ``prefix_source="grid"``."""
        if self.config.prefix_source == "grid":
            return check_tokens(images, what)
        return check_features(images, what, dim)

    def fit_captions(self, image_features: torch.Tensor, captions: Sequence[str],
                     ckpt_path: str | Path | None = None) -> VLAPAligner:
        """Train ``g`` on N images (pooled features, or token grids with ``prefix_source="grid"``) and
        their N captions; with ``checkpoint_dir`` set, ``last.ckpt`` is kept there and a later fit of the
        same pairs resumes from it exactly (or ``ckpt_path=`` names one)."""
        from align.methods.framework.data import split_rows

        hp = self.config
        x = self._check_images(image_features, "vlap.fit_captions: images")
        captions = check_caption_pairs(len(x), captions, "vlap.fit_captions")
        train, _ = split_rows(len(x), hp.val_fraction, hp.seed)  # the data module's split, made again here
        if len(train) < 2:
            raise BadInputError(f"vlap.fit_captions: val_fraction={hp.val_fraction} leaves {len(train)} training "
                                f"pair(s) of {len(x)}")
        if hp.prefix_source == "grid" and hp.num_prefix_tokens > x.shape[1]:
            raise BadInputError(f"vlap.fit_captions: num_prefix_tokens={hp.num_prefix_tokens} is more than the "
                                f"{x.shape[1]} tokens of each image")
        table = load_table(hp.table)
        ids, mask = tokenize_captions(table, captions, hp.max_caption_tokens)
        shape: dict[str, Any] = dict(image_dim=x.shape[-1])
        if hp.vocab == "captions" or hp.prior in CAPTION_PRIORS:  # chosen from the training captions: saved with g
            words = caption_tokens(ids[train], mask[train], special_mask(table))
            vocab = vocabulary(table, hp.vocab, hp.vocab_subset, words)
            shape.update(vocab_ids=vocab.tolist(), prior_weights=row_prior(table, vocab, hp.prior, words).tolist())

        def prepare(core: VLAPCore, data: Any) -> None:
            if not torch.equal(data.train_rows, train):  # the vocabulary above assumed this split
                raise RuntimeError("vlap.fit_captions: the data module split the fit rows differently")
            core.calibrate(x, ids, mask, train)

        rows = torch.arange(len(x))
        return self._train("vlap.fit_captions", (x, ids, mask, rows), shape, prepare=prepare,
                           val_fraction=hp.val_fraction, ckpt_path=ckpt_path)

    def _set_dims(self, module: Any) -> None:
        self.image_dim, self.text_dim = module.hparams.core_args["image_dim"], module.core.embed_dim

    def _load_shape(self, state: dict[str, torch.Tensor]) -> dict[str, Any]:
        image_dim, _ = self._require_fitted()
        shape: dict[str, Any] = dict(image_dim=image_dim)
        if "vocab_ids" in state:
            shape.update(vocab_ids=state["vocab_ids"].tolist(), prior_weights=state["word_prior"].double().tolist())
        return shape

    # ------------------------------------------------------------------ embedding

    def _images(self, image_features: torch.Tensor, what: str) -> torch.Tensor:
        image_dim, _ = self._require_fitted()
        x = self._check_images(image_features, f"vlap.{what}", image_dim)
        if x.ndim == 3 and x.shape[-1] != image_dim:
            raise BadInputError(f"vlap.{what}: tokens have dimension {x.shape[-1]}, the aligner expects {image_dim}")
        if x.ndim == 3 and x.shape[1] < self.config.num_prefix_tokens:
            raise BadInputError(f"vlap.{what}: {x.shape[1]} tokens per image, fewer than num_prefix_tokens="
                                f"{self.config.num_prefix_tokens}")
        return x.to(self.core.g.weight.device)

    @torch.no_grad()
    def encode_image(self, image_features: torch.Tensor) -> torch.Tensor:
        """``v̄ [M, D]``: the mean projected visual token, in the LM's raw word-embedding space."""
        return self.core.encode_image(self._images(image_features, "encode_image")).cpu()

    def encode_text(self, texts: Sequence[str]) -> torch.Tensor:
        """Captions (strings) as ``t``; feature tensors are refused (they are not in the LM's space)."""
        if isinstance(texts, torch.Tensor):
            raise BadInputError("vlap: encode_text takes caption strings, not text-encoder features (they do not "
                                "live in the LM's word-embedding space)")
        return self.encode_text_strings(texts)

    @property
    def text_encoder_name(self) -> str:
        """``table:<table>``: the mean-word-embedding encoder whose features are exactly ``t``."""
        return f"table:{self.config.table}"

    @torch.no_grad()
    def encode_text_strings(self, captions: Sequence[str]) -> torch.Tensor:
        """``t [M, D]``: each caption's mean raw word embedding (the L_map text feature)."""
        self._require_fitted()
        table = load_table(self.config.table)
        ids, mask = tokenize_captions(table, check_texts(captions), self.config.max_caption_tokens)
        core = self.core
        return core.text_feature(ids.to(core.words.device), mask.to(core.words.device)).cpu()

    @torch.no_grad()
    def caption(self, image_features: torch.Tensor, max_new_tokens: int = 20) -> list[str]:
        """Greedy captions of the frozen LM given each image's prefix and the prompt."""
        if not (isinstance(max_new_tokens, int) and max_new_tokens >= 1):
            raise BadInputError(f"vlap.caption: max_new_tokens must be an integer >= 1, got {max_new_tokens!r}")
        return self.core.generate(self._images(image_features, "caption"), max_new_tokens)

    @torch.no_grad()
    def nearest_words(self, image_features: torch.Tensor, top: int = 5) -> list[list[str]]:
        """The ``top`` tokens of the assignment vocabulary closest (cosine) to each ``v̄``."""
        core = self.core
        if not (isinstance(top, int) and 1 <= top <= len(core.vocab_ids)):
            raise BadInputError(f"vlap.nearest_words: top must be an integer in [1, {len(core.vocab_ids)}], got {top!r}")
        v = F.normalize(core.encode_image(self._images(image_features, "nearest_words")), dim=-1)
        best = (v @ core.assignment.unit_words.T).topk(top, dim=-1).indices
        tokens = load_table(self.config.table).tokens
        return [[tokens[int(core.vocab_ids[j])] for j in row] for row in best.cpu()]
