"""Codebook-VLP: ALBEF-style vision-language pretraining plus a jointly learned visual codebook whose
code indices are the targets of masked image modeling (Guo et al., ICPR 2022, arXiv 2208.00475;
papers.md §5, §7.5). No official code exists; this is the reconstruction of papers.md §5.2 at a
scale that trains on CPU.

Model (``CodebookVLPCore``):

* image side: a small transformer over a frozen encoder's spatial tokens ``[N, T, D]`` (MobileNetV2's
  7x7 grid, computed once and cached), with a [CLS] token;
* text side: BERT embeddings + ``text_layers`` layers copied from a masked LM's first layers
  (all-MiniLM-L6-v2 by default; word embeddings frozen);
* fusion: ``fusion_layers`` BERT blocks with cross-attention to the image states (the LM's next
  layers for self-attention and FFN, fresh cross-attention, as ALBEF);
* a visual codebook (:mod:`align.methods.codebook_vlp.codebook`) over the image tokens' states, and an
  image-side fusion block (image states cross-attending to the text states) with a code classifier.

Objectives, each with an on/off switch (``L = Σ w · L``):

* ``itc``: image-text contrastive on projections of the pooled states (``pooling``: mean, default, or
  [CLS]); ``momentum`` adds ALBEF's momentum encoders and distillation (α = 0.4), ``queue_size`` > 0 a
  queue of past (momentum) features; pairs whose captions are identical count as positives;
* ``itm``: match / no match from the fusion [CLS], one hard negative text per image and one hard
  negative image per text drawn from the ITC similarities (uniform when ITC is off);
* ``mlm``: BERT masking (15%, at least one token per caption) predicted from the fusion output;
* ``codebook``: VQ loss ``||sg[z] - c||² + β||z - sg[c]||²`` on the image tokens (EMA codes by default);
* ``mim``: mask 40% of the input image tokens, encode, fuse with the caption, predict the code index
  of each masked token in the unmasked image (masked positions only). Targets come from the momentum
  image encoder when ``momentum`` is on (papers.md §5.2's "stop-gradient / momentum path"), else from
  the online pass, detached. Why: with online targets the encoder that MIM trains also makes the
  targets, and the cheapest way to predict them is to put every token on one code; in a 15-epoch
  emoji run the code perplexity fell from 15 to 1.0 after one epoch and only the dead-code restarts
  pulled it back up (to 10 by epoch 15).

"Without codebook and MIM" is the same model with ``codebook: false`` and ``mim: false``.

Measured (``benchmarks/codebook_vlp_compare.py``: MobileNetV2 7x7 tokens, 5 epochs, seeds 0-2, mean ±
sample std; full model vs ``codebook: false, mim: false``): on the emoji concept-disjoint split, image-to-
name R@1 0.066 ± 0.009 vs 0.062 ± 0.009 (paired difference 0.003 ± 0.006), name-to-image 0.053 vs
0.051, subcategory zero-shot 0.207 ± 0.028 vs 0.215 ± 0.012; Fashion-MNIST zero-shot 0.812 ± 0.009 vs
0.805 ± 0.021. At this scale the codebook and MIM do not measurably help. Code usage is skewed: one
code takes most emoji tokens (white background; test perplexity 5.0 ± 2.9 of 64 codes) and on
Fashion-MNIST 58 ± 6 of 64 codes are unused on the test images. ITM stays at its prior (0.636 nats)
within these budgets (6 and 15 emoji epochs), so the fusion's [CLS] learns no match signal yet.

Deviations and unknowns (flagged as papers.md asks):

* The paper's "extension of VQ-VAE with a theoretic guarantee" is unknown; the standard VQ-VAE loss
  is used.
* ALBEF's fusion stream has text positions only, so MIM, which needs outputs at image positions,
  reads an image-side fusion block (image queries, text keys): our choice, not the paper's.
* ALBEF ramps α over the first epoch and also distills MLM; neither is done here.
* ITC reads mean-pooled states by default rather than ALBEF's [CLS]: a fresh one-layer image
  transformer's [CLS] starts nearly constant across images, and MiniLM was trained with mean pooling,
  so the mean is the readout both frozen encoders were trained for.
* The momentum-path MIM targets are assigned with the online ``code_proj`` (there is no momentum copy
  of the code projection).
* Evaluation uses the unimodal ITC embeddings (``encode_image`` / ``encode_text_strings``); ALBEF
  re-ranks retrieval candidates with ITM, which :meth:`CodebookVLPAligner.itm_scores` exposes.
"""

from __future__ import annotations

import copy
import functools
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from align.errors import BadInputError
from align.methods.base import caption_strings, check_caption_pairs, check_tokens, is_number
from align.methods.hparams import param
from align.methods.trained import TrainedAligner, TrainedHParams
from align.methods.codebook_vlp.layers import (
    FusionEncoder, MLMHead, TextEncoder, TokenImageEncoder, bert_layers, bert_shape,
)
from align.methods.codebook_vlp.objectives import (
    caption_keys, hard_negatives, itc_loss, mim_mask, mim_targets, mlm_mask, soft_targets,
)
from align.methods.codebook_vlp.codebook import UPDATES, VisualCodebook, code_usage
from align.registry import ALIGNERS, EMBEDDING_TABLES
from align.text.base import EmbeddingTable, check_texts

CORE = "align.methods.codebook_vlp.aligner:CodebookVLPCore"
DEFAULT_TABLE = "hf:sentence-transformers/all-MiniLM-L6-v2"
OBJECTIVES = ("itc", "itm", "mlm", "vq", "mim")
POOLINGS = ("mean", "cls")


@functools.lru_cache(maxsize=4)
def load_table(name: str) -> EmbeddingTable:
    """A masked LM's table, tokenizer and (lazily) LM, built once per process."""
    table = EMBEDDING_TABLES.create(name)
    if table.lm_kind != "masked" or table.tokenizer is None:
        raise BadInputError(f"codebook_vlp: table {name!r} must be a masked LM with a tokenizer "
                            f"(lm_kind={table.lm_kind!r})")
    return table


def tokenize(table: EmbeddingTable, captions: Sequence[str], max_tokens: int) -> tuple[torch.Tensor, torch.Tensor]:
    """``(ids [N, L], mask [N, L])``: [CLS] caption [SEP], truncated to ``max_tokens``, right-padded."""
    out = table.tokenizer(list(captions), padding=True, truncation=True, max_length=max_tokens, return_tensors="pt")
    return out["input_ids"].long(), out["attention_mask"].long()


class CodebookVLPCore(nn.Module):
    """All trainable parts and the losses; ``forward(tokens, ids, mask)`` is the weighted training
    loss and leaves each objective's value in ``self.parts`` (0 for switched-off ones)."""

    def __init__(self, image_dim: int, num_tokens: int, table: str = DEFAULT_TABLE, image_width: int = 128,
                 image_heads: int = 4, image_layers: int = 1, text_layers: int = 1, fusion_layers: int = 1,
                 embed_dim: int = 128, itc: bool = True, itm: bool = True, mlm: bool = True,
                 codebook: bool = True, mim: bool = True, momentum: bool = True, queue_size: int = 256,
                 momentum_decay: float = 0.995, distill_alpha: float = 0.4, temperature: float = 0.07,
                 num_codes: int = 64, code_dim: int = 32, codebook_update: str = "ema", commitment: float = 0.25,
                 codebook_decay: float = 0.99, restart_threshold: float = 1.0, mlm_ratio: float = 0.15,
                 mim_ratio: float = 0.4, weights: dict[str, float] | None = None, pretrained_text: bool = True,
                 freeze_word_embeddings: bool = True, pooling: str = "mean") -> None:
        super().__init__()
        self.pooling = pooling
        self.switches = dict(itc=itc, itm=itm, mlm=mlm, vq=codebook, mim=mim)
        self.weights = {key: 1.0 for key in OBJECTIVES} | dict(weights or {})
        self.momentum_decay, self.distill_alpha = momentum_decay, distill_alpha
        self.mlm_ratio, self.mim_ratio = mlm_ratio, mim_ratio
        tab = load_table(table)
        lm = tab.load_lm()
        shape = bert_shape(lm)
        layers = bert_layers(lm) if pretrained_text else None
        width = shape["width"]
        self.mask_id, self.vocab_size = int(tab.tokenizer.mask_token_id), tab.vocab_size
        special = torch.zeros(tab.vocab_size, dtype=torch.bool)
        special[tab.special_ids] = True
        self.register_buffer("special", special, persistent=False)

        self.image_encoder = TokenImageEncoder(image_dim, num_tokens, image_width, image_heads, image_layers)
        self.text_encoder = TextEncoder(tab.vocab_size, width, shape["heads"], shape["ffn"], text_layers,
                                        shape["positions"], lm if pretrained_text else None, freeze_word_embeddings)
        self.fusion = FusionEncoder(width, shape["heads"], shape["ffn"], fusion_layers, image_width,
                                    (layers or [])[text_layers:text_layers + fusion_layers])
        self.image_proj = nn.Linear(image_width, embed_dim)
        self.text_proj = nn.Linear(width, embed_dim)
        self.temperature = nn.Parameter(torch.tensor(float(temperature)))
        self.itm_head = nn.Linear(width, 2) if itm else None
        self.mlm_head = MLMHead(width, tab.vocab_size) if mlm else None
        self.codebook = (VisualCodebook(num_codes, code_dim, codebook_update, commitment, codebook_decay,
                                        restart_threshold=restart_threshold) if codebook else None)
        self.code_proj = nn.Linear(image_width, code_dim) if codebook else None
        if mim:
            self.image_fusion = FusionEncoder(image_width, image_heads, 4 * image_width, 1, width)
            self.mim_head = nn.Sequential(nn.LayerNorm(image_width), nn.Linear(image_width, num_codes))

        self.use_momentum = momentum and (itc or mim)
        if self.use_momentum:  # ALBEF's momentum encoders: EMA copies, never trained by gradients
            for name in ("image_encoder", "text_encoder", "image_proj", "text_proj"):
                setattr(self, f"{name}_m", copy.deepcopy(getattr(self, name)).requires_grad_(False))
        self.queue_size = queue_size if itc else 0
        if self.queue_size:
            self.register_buffer("image_queue", F.normalize(torch.randn(self.queue_size, embed_dim), dim=1))
            self.register_buffer("text_queue", F.normalize(torch.randn(self.queue_size, embed_dim), dim=1))
            self.register_buffer("key_queue", torch.full((self.queue_size,), -1, dtype=torch.long))  # -1: empty
            self.register_buffer("queue_ptr", torch.zeros((), dtype=torch.long))
        self.parts: dict[str, float] = {}
        self._momentum_states: torch.Tensor | None = None

    # ------------------------------------------------------------------ embeddings

    def image_states(self, tokens: torch.Tensor, masked: torch.Tensor | None = None,
                     embedded: torch.Tensor | None = None) -> torch.Tensor:
        return self.image_encoder(tokens, masked, embedded)

    def image_pool(self, states: torch.Tensor) -> torch.Tensor:
        return states[:, 0] if self.pooling == "cls" else states.mean(1)

    def text_pool(self, states: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        if self.pooling == "cls":
            return states[:, 0]
        weights = mask.unsqueeze(-1).to(states.dtype)
        return (states * weights).sum(1) / weights.sum(1).clamp_min(1)

    def image_embedding(self, states: torch.Tensor, proj: nn.Module | None = None) -> torch.Tensor:
        return F.normalize((proj or self.image_proj)(self.image_pool(states)), dim=-1)

    def text_embedding(self, states: torch.Tensor, mask: torch.Tensor, proj: nn.Module | None = None) -> torch.Tensor:
        return F.normalize((proj or self.text_proj)(self.text_pool(states, mask)), dim=-1)

    def encode_image(self, tokens: torch.Tensor) -> torch.Tensor:
        return self.image_embedding(self.image_states(tokens))

    def encode_text(self, ids: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        return self.text_embedding(self.text_encoder(ids, mask), mask)

    def code_indices(self, tokens: torch.Tensor) -> torch.Tensor:
        """``[N, T]`` code of every image token (needs ``codebook`` on)."""
        return self.codebook.assign(self.code_proj(self.image_states(tokens)[:, 1:]))

    def itm_logit(self, text: torch.Tensor, mask: torch.Tensor, image: torch.Tensor) -> torch.Tensor:
        """Match minus no-match logit for each (text states, image states) row pair."""
        logits = self.itm_head(self.fusion(text, mask, image)[:, 0])
        return logits[:, 1] - logits[:, 0]

    # ------------------------------------------------------------------ momentum and queue

    @torch.no_grad()
    def momentum_image_states(self, tokens: torch.Tensor) -> torch.Tensor:
        """The momentum image encoder's states, computed once per training step (ITC keys, MIM targets)."""
        if self._momentum_states is None:
            self._momentum_states = self.image_encoder_m(tokens)
        return self._momentum_states

    @torch.no_grad()
    def momentum_update(self) -> None:
        m = self.momentum_decay
        for name in ("image_encoder", "text_encoder", "image_proj", "text_proj"):
            online, slow = getattr(self, name), getattr(self, f"{name}_m")
            for p, pm in zip(online.parameters(), slow.parameters()):
                if p.requires_grad:
                    pm.mul_(m).add_(p.detach(), alpha=1 - m)

    @torch.no_grad()
    def enqueue(self, image: torch.Tensor, text: torch.Tensor, keys: torch.Tensor) -> None:
        """Write a batch into the ring buffer (the batch may wrap around its end)."""
        rows = (self.queue_ptr + torch.arange(len(image), device=image.device)) % self.queue_size
        rows = rows[-self.queue_size:]
        self.image_queue[rows] = image[-self.queue_size:]
        self.text_queue[rows] = text[-self.queue_size:]
        self.key_queue[rows] = keys[-self.queue_size:]
        self.queue_ptr.fill_(int((self.queue_ptr + len(image)) % self.queue_size))

    # ------------------------------------------------------------------ losses

    def _itc(self, image_states: torch.Tensor, text_states: torch.Tensor, tokens: torch.Tensor,
             ids: torch.Tensor, mask: torch.Tensor, keys: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """ITC loss and the in-batch image-to-text similarities (for ITM's hard negatives)."""
        with torch.no_grad():
            self.temperature.clamp_(0.001, 0.5)
        image, text = self.image_embedding(image_states), self.text_embedding(text_states, mask)
        image_keys, text_keys, bank = image, text, keys
        if self.use_momentum:
            with torch.no_grad():
                image_keys = self.image_embedding(self.momentum_image_states(tokens), self.image_proj_m)
                text_keys = self.text_embedding(self.text_encoder_m(ids, mask), mask, self.text_proj_m)
        image_bank, text_bank = image_keys, text_keys
        if self.queue_size:
            filled = self.key_queue >= 0
            image_bank = torch.cat([image_keys, self.image_queue[filled]])
            text_bank = torch.cat([text_keys, self.text_queue[filled]])
            bank = torch.cat([keys, self.key_queue[filled]])
        targets = soft_targets(keys, bank)
        distill = None
        if self.use_momentum:
            with torch.no_grad():
                distill = (image_keys @ text_bank.T / self.temperature, text_keys @ image_bank.T / self.temperature)
        loss = itc_loss(image, text, image_bank, text_bank, targets, self.temperature, distill, self.distill_alpha)
        if self.training and self.queue_size:
            self.enqueue(image_keys.detach(), text_keys.detach(), keys)
        return loss, (image @ text.T).detach()

    def _itm(self, image_states: torch.Tensor, text_states: torch.Tensor, mask: torch.Tensor,
             keys: torch.Tensor, similarity: torch.Tensor | None) -> torch.Tensor:
        neg_text, neg_image = hard_negatives(similarity, keys)
        b = len(keys)
        rows = torch.arange(b, device=mask.device)
        text = torch.cat([text_states, text_states[neg_text], text_states])
        text_mask = torch.cat([mask, mask[neg_text], mask])
        image_index = torch.cat([rows, rows, neg_image])
        logits = self.itm_head(self.fusion(text, text_mask, image_states, context_index=image_index)[:, 0])
        labels = torch.cat([torch.ones(b), torch.zeros(2 * b)]).long().to(logits.device)
        return F.cross_entropy(logits, labels)

    def _mlm(self, image_states: torch.Tensor, ids: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        inputs, labels = mlm_mask(ids, mask, self.special, self.mlm_ratio, self.mask_id, self.vocab_size)
        fused = self.fusion(self.text_encoder(inputs, mask), mask, image_states)
        chosen = labels != -100
        logits = self.mlm_head(fused[chosen], self.text_encoder.words.weight)
        return F.cross_entropy(logits, labels[chosen])

    def _mim(self, tokens: torch.Tensor, embedded: torch.Tensor, codes: torch.Tensor, text_states: torch.Tensor,
             mask: torch.Tensor) -> torch.Tensor:
        masked = mim_mask(len(tokens), tokens.shape[1], self.mim_ratio, tokens.device)
        states = self.image_fusion(self.image_states(tokens, masked, embedded), None, text_states, mask)
        targets = mim_targets(codes.detach(), masked)
        logits = self.mim_head(states[:, 1:])
        return F.cross_entropy(logits.flatten(0, 1), targets.flatten(), ignore_index=-100)

    def _mim_codes(self, tokens: torch.Tensor, online: torch.Tensor) -> torch.Tensor:
        """MIM targets: codes of the momentum encoder's unmasked states when there is one (no gradient
        path lets the online encoder make its own targets trivial), else the online pass's codes."""
        if not self.use_momentum:
            return online.detach()
        with torch.no_grad():
            return self.codebook.assign(self.code_proj(self.momentum_image_states(tokens)[:, 1:]))

    def forward(self, tokens: torch.Tensor, ids: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        on = self.switches
        self._momentum_states = None
        if self.training and self.use_momentum:
            self.momentum_update()
        keys = caption_keys(ids, mask)
        embedded = self.image_encoder.embed(tokens)
        image_states = self.image_states(tokens, embedded=embedded)
        text_states = self.text_encoder(ids, mask)
        zero = image_states.new_zeros(())
        losses = dict.fromkeys(OBJECTIVES, zero)
        similarity = None
        if on["itc"]:
            losses["itc"], similarity = self._itc(image_states, text_states, tokens, ids, mask, keys)
        if on["itm"]:
            losses["itm"] = self._itm(image_states, text_states, mask, keys, similarity)
        if on["mlm"]:
            losses["mlm"] = self._mlm(image_states, ids, mask)
        if on["vq"]:
            quantized = self.codebook(self.code_proj(image_states[:, 1:]))
            losses["vq"] = quantized.loss
            self.parts["perplexity"] = float(quantized.perplexity)
            if on["mim"]:
                losses["mim"] = self._mim(tokens, embedded, self._mim_codes(tokens, quantized.indices), text_states, mask)
        self.parts.update({key: float(value.detach()) for key, value in losses.items()})
        self._momentum_states = None
        return sum(self.weights[key] * value for key, value in losses.items() if on[key])


@dataclass(frozen=True)
class CodebookVLPHParams(TrainedHParams):
    table: str = param(DEFAULT_TABLE, want="an embedding-table name")  # the masked LM the text side starts from
    image_width: int = param(128, low=1)
    image_heads: int = param(4, low=1)
    image_layers: int = param(1, low=0)
    text_layers: int = param(1, low=0)  # the LM's first layers, copied
    fusion_layers: int = param(1, low=1)  # the LM's next layers, with fresh cross-attention
    embed_dim: int = param(128, low=1)  # the ITC space
    itc: bool = True
    itm: bool = True
    mlm: bool = True
    codebook: bool = True  # the visual codebook and its VQ loss
    mim: bool = True  # masked image modeling of code indices (needs the codebook)
    momentum: bool = True  # ALBEF's momentum encoders and distillation
    queue_size: int = param(256, low=0)
    momentum_decay: float = param(0.995, low=0, below=1)
    distill_alpha: float = param(0.4, low=0, below=1)
    temperature: float = param(0.07, above=0)
    num_codes: int = param(64, low=2)
    code_dim: int = param(32, low=1)
    codebook_update: str = param("ema", choices=UPDATES)
    commitment: float = param(0.25, low=0)
    codebook_decay: float = param(0.99, low=0, below=1)
    restart_threshold: float = param(1.0, low=0)  # dead-code restarts below this usage
    mlm_ratio: float = param(0.15, low=0, below=1)
    mim_ratio: float = param(0.4, low=0, below=1)
    weights: dict[str, float] | None = param(None, want=f"a mapping from {', '.join(OBJECTIVES)} to numbers >= 0")
    pretrained_text: bool = True
    freeze_word_embeddings: bool = True
    pooling: str = param("mean", choices=POOLINGS)
    weight_decay: float = param(0.02, low=0)
    batch_size: int = param(64, low=2)
    max_epochs: int = param(5, low=0)
    max_text_tokens: int = param(32, low=3)

    def check(self, aligner: str) -> CodebookVLPHParams:
        if self.mim and not self.codebook:
            raise BadInputError(f"{aligner}: mim=true needs codebook=true (MIM predicts the codebook's indices)")
        if not (self.itc or self.itm or self.mlm or self.codebook):
            raise BadInputError(f"{aligner}: every objective is switched off; nothing would be trained")
        if self.image_width % self.image_heads:
            raise self.bad(aligner, "image_width", f"divisible by image_heads={self.image_heads}")
        if any(k not in OBJECTIVES or not (is_number(v) and v >= 0) for k, v in (self.weights or {}).items()):
            raise self.bad(aligner, "weights", f"a mapping from {', '.join(OBJECTIVES)} to numbers >= 0")
        return self


class CodebookVLPAligner(TrainedAligner):
    """Codebook-VLP trained on frozen spatial tokens and caption strings.

    Shared space = the ITC space: ``encode_image(tokens)`` and ``encode_text_strings(captions)`` give
    L2-normalised ``[M, embed_dim]`` embeddings to compare by cosine."""

    name = "codebook_vlp"
    image_input = "tokens"
    text_input = "strings"  # its own text encoder, trained from the table's word embeddings
    config_class = CodebookVLPHParams
    core_class = CORE

    def __init__(self, **hparams: Any) -> None:
        super().__init__(**hparams)
        self.num_tokens: int | None = None

    # ------------------------------------------------------------------ training

    def fit(self, image_features: torch.Tensor, text_features: Any) -> CodebookVLPAligner:
        """Caption strings are delegated to :meth:`fit_captions`; feature tensors are refused."""
        why = "it trains its own text encoder"
        return self.fit_captions(image_features, caption_strings(text_features, "codebook_vlp.fit", why))

    def fit_captions(self, image_tokens: torch.Tensor, captions: Sequence[str],
                     ckpt_path: str | Path | None = None) -> CodebookVLPAligner:
        """Pretrain on N images (``[N, T, D]`` frozen spatial tokens) and their N captions; with
        ``checkpoint_dir`` set, a later fit of the same pairs resumes from its ``last.ckpt``."""
        hp = self.hparams
        x = check_tokens(image_tokens, "codebook_vlp.fit_captions: image tokens")
        captions = check_caption_pairs(len(x), captions, "codebook_vlp.fit_captions")
        ids, mask = tokenize(load_table(hp["table"]), captions, hp["max_text_tokens"])
        return self._train("codebook_vlp.fit_captions", (x, ids, mask),
                           dict(image_dim=x.shape[2], num_tokens=x.shape[1]), ckpt_path=ckpt_path)

    def _set_dims(self, module: Any) -> None:
        args = module.hparams.core_args
        self.image_dim, self.num_tokens = args["image_dim"], args["num_tokens"]
        self.text_dim = module.core.text_proj.out_features

    def _load_shape(self, state: dict[str, torch.Tensor]) -> dict[str, Any]:
        """``image_dim`` (set first, as ``Aligner.load`` does) and ``num_tokens``, read from the state's positions."""
        image_dim, _ = self._require_fitted()
        return dict(image_dim=image_dim, num_tokens=int(state["image_encoder.pos"].shape[1]) - 1)

    # ------------------------------------------------------------------ embedding

    def _tokens(self, tokens: Any, what: str) -> torch.Tensor:
        image_dim, _ = self._require_fitted()
        return check_tokens(tokens, f"codebook_vlp.{what}", (self.num_tokens, image_dim))

    def _batched(self, fn: Any, tokens: torch.Tensor, batch_size: int = 256) -> torch.Tensor:
        with torch.no_grad():
            return torch.cat([fn(tokens[i:i + batch_size]) for i in range(0, len(tokens), batch_size)])

    def encode_image(self, image_features: torch.Tensor) -> torch.Tensor:
        """L2-normalised ITC embeddings ``[M, embed_dim]`` of ``[M, T, D]`` spatial tokens."""
        return self._batched(self.core.encode_image, self._tokens(image_features, "encode_image"))

    def encode_text(self, text_features: Sequence[str]) -> torch.Tensor:
        """Caption strings through the model's own text encoder (``encode_text_strings``)."""
        why = "the model has its own text encoder"
        return self.encode_text_strings(caption_strings(text_features, "codebook_vlp.encode_text", why))

    @torch.no_grad()
    def encode_text_strings(self, captions: Sequence[str], batch_size: int = 256) -> torch.Tensor:
        """L2-normalised ITC embeddings ``[M, embed_dim]`` of caption strings."""
        self._require_fitted()
        ids, mask = tokenize(load_table(self.hparams["table"]), check_texts(captions), self.hparams["max_text_tokens"])
        return torch.cat([self.core.encode_text(ids[i:i + batch_size], mask[i:i + batch_size])
                          for i in range(0, len(ids), batch_size)])

    def code_indices(self, image_tokens: torch.Tensor) -> torch.Tensor:
        """``[M, T]`` codebook index of every spatial token."""
        if self.core.codebook is None:
            raise BadInputError("codebook_vlp: this model was trained with codebook=false; it has no codes")
        return self._batched(self.core.code_indices, self._tokens(image_tokens, "code_indices"))

    def code_usage(self, image_tokens: torch.Tensor) -> dict[str, float]:
        """Perplexity, used and dead codes over every token of ``image_tokens``."""
        return code_usage(self.code_indices(image_tokens), self.core.codebook.num_codes)

    @torch.no_grad()
    def itm_scores(self, image_tokens: torch.Tensor, captions: Sequence[str]) -> torch.Tensor:
        """``[M]`` ITM match logits of row-aligned (image, caption) pairs, for re-ranking candidates."""
        core = self.core
        if core.itm_head is None:
            raise BadInputError("codebook_vlp: this model was trained with itm=false; it has no ITM head")
        x = self._tokens(image_tokens, "itm_scores")
        ids, mask = tokenize(load_table(self.hparams["table"]), check_texts(captions), self.hparams["max_text_tokens"])
        if len(ids) != len(x):
            raise BadInputError(f"codebook_vlp.itm_scores: {len(x)} images but {len(ids)} captions")
        return core.itm_logit(core.text_encoder(ids, mask), mask, core.image_states(x))


@ALIGNERS.register(
    "codebook_vlp",
    description="ALBEF-style pretraining (ITC with momentum queue, ITM with hard negatives, MLM) on frozen "
    "spatial tokens plus a learned visual codebook and masked image modeling of its code indices. "
    "Needs [N, T, D] tokens and caption strings: fit_captions(tokens, captions).",
    citation="Guo et al., Augmenting Vision Language Pretraining by Learning Codebook with Visual Semantics, "
    "ICPR 2022 (arXiv 2208.00475)",
)
def _codebook_vlp(**hparams: Any) -> CodebookVLPAligner:
    return CodebookVLPAligner(**hparams)
