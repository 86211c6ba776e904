"""Codebook-VLP's model and losses (``CodebookVLPCore``): ALBEF-style towers over a frozen encoder's
spatial tokens, a visual codebook and masked image modeling of its codes (papers.md §5.2, §7.5).

Model:

* image side: a small transformer (``image_layers``) over the frozen tokens ``[N, T, D]``, with a [CLS]
  token; its pooled, projected output is the image embedding that retrieval uses;
* text side: BERT embeddings + ``text_layers`` layers copied from a masked LM's first layers;
* fusion: ``fusion_layers`` BERT blocks with cross-attention to the image states (ALBEF);
* a visual codebook (:mod:`align.methods.codebook_vlp.codebook`) whose codes are MIM's targets.

What the codebook quantises (``code_source``):

* ``"tokens"`` (default): the frozen input tokens, centred on the fit data's mean token and compared by
  cosine. Their codes are k-means clusters of what a pretrained encoder sees (``codebook_init="kmeans"``
  starts them there; EMA and dead-code restarts keep them on the data). Why: nothing trains the tokens,
  so no loss can pull them onto one code, and the targets carry the frozen encoder's semantics. The
  VQ loss is then a diagnostic (distance of tokens to their codes; no weights receive its gradient).
* ``"states"`` (fits saved before ``code_source`` existed): a linear projection of the image encoder's
  states. Its only gradient is VQ-VAE's commitment term, which is smallest when every token sits on
  one code, so it collapses; ``reconstruction`` > 0 adds a decoder from the quantised states back to
  the input tokens, the term of VQ-VAE that makes the codes keep information.

Codes move by EMA (``codebook_update="ema"``, the default): each code drifts to the mean of the tokens it
wins, an online k-means step. Why EMA rather than the codebook loss: it needs no learning rate, moves
every used code at every step whatever the other losses do, and is the update VQ-VAE-2 uses.

MIM (``mim_input``): 40% of the input tokens are replaced by [MASK] and a head predicts the code of each
masked token. With ``"encoder"`` (default) the head reads the image encoder's own output states, the
ones whose pooled projection is the image embedding, so what MIM teaches reaches retrieval and
classification. ``"fusion"`` (older fits) read a separate image-side fusion block that evaluation never
uses. ``mim_weighting`` down-weights codes frequent among the batch's targets (a blank background's
code would otherwise dominate the loss): ``"inverse_frequency"`` (default), ``"drop_top"`` (the most
frequent code gets weight 0) or ``"none"``.

ITM negatives are drawn from ``softmax(similarity / temperature)`` at the ITC temperature, as ALBEF
(``hard_negative_temperature``; older fits drew from the raw cosines, nearly uniformly).

Deviations and unknowns (as papers.md asks them flagged): the paper's "extension of VQ-VAE with a
theoretic guarantee" is unknown (standard VQ-VAE loss); the paper predicts codes from the multimodal
encoder, here from the image encoder (text-free MIM, as BEiT) so the evaluated path learns it; ALBEF's
α ramp and MLM distillation are not done; ITC reads mean-pooled states by default (``pooling``), the
readout both frozen encoders were trained for.
"""

from __future__ import annotations

import copy
import functools
from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import nn

from align.errors import BadInputError
from align.methods.codebook_vlp.codebook import VisualCodebook, kmeans
from align.methods.codebook_vlp.layers import (
    FusionEncoder, MLMHead, TextEncoder, TokenImageEncoder, bert_layers, bert_shape,
)
from align.methods.codebook_vlp.objectives import (
    IGNORE, ITM_NEGATIVES_PER_MATCH, caption_keys, drop_top_weights, hard_negatives, inverse_frequency_weights,
    itc_loss, mim_accuracy, mim_mask, mim_targets, mlm_mask, soft_targets,
)
from align.registry import EMBEDDING_TABLES
from align.text.base import EmbeddingTable

DEFAULT_TABLE = "hf:sentence-transformers/all-MiniLM-L6-v2"
OBJECTIVES = ("itc", "itm", "mlm", "vq", "mim")
POOLINGS = ("mean", "cls")
CODE_SOURCES = ("tokens", "states")
CODEBOOK_INITS = ("kmeans", "batch")
MIM_INPUTS = ("encoder", "fusion")
MIM_WEIGHTINGS = ("inverse_frequency", "drop_top", "none")


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
                 freeze_word_embeddings: bool = True, pooling: str = "mean", code_source: str = "tokens",
                 codebook_init: str = "kmeans", restart_window: int = 0, reconstruction: float = 0.0,
                 mim_input: str = "encoder", mim_weighting: str = "inverse_frequency",
                 hard_negative_temperature: bool = True) -> None:
        super().__init__()
        self.pooling = pooling
        self.code_source, self.codebook_init, self.reconstruction = code_source, codebook_init, reconstruction
        self.mim_input, self.mim_weighting = mim_input, mim_weighting
        self.hard_negative_temperature = hard_negative_temperature
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
        from_states = codebook and code_source == "states"
        self.codebook = (VisualCodebook(num_codes, code_dim if from_states else image_dim, codebook_update, commitment,
                                        codebook_decay, restart_threshold=restart_threshold,
                                        restart_window=restart_window) if codebook else None)
        self.code_proj = nn.Linear(image_width, code_dim) if from_states else None
        if codebook and not from_states:  # the fit data's mean token, set by prepare()
            self.register_buffer("token_mean", torch.zeros(image_dim))
        self.decoder = nn.Linear(code_dim, image_dim) if from_states and reconstruction > 0 else None
        if mim:
            if mim_input == "fusion":
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

    def code_features(self, tokens: torch.Tensor, states: torch.Tensor | None = None) -> torch.Tensor:
        """``[N, T, dim]``: what the codebook quantises (see ``code_source``); ``states`` are the image
        encoder's states of ``tokens`` when the caller has them."""
        if self.code_proj is None:
            return tokens - self.token_mean
        return self.code_proj((self.image_states(tokens) if states is None else states)[:, 1:])

    def code_indices(self, tokens: torch.Tensor) -> torch.Tensor:
        """``[N, T]`` code of every image token (needs ``codebook`` on)."""
        return self.codebook.assign(self.code_features(tokens))

    @torch.no_grad()
    def prepare(self, tokens: torch.Tensor, tokens_per_batch: float, rows: torch.Tensor | None = None,
                max_rows: int = 16384, batch_size: int = 256) -> None:
        """Fit-time initialisation on the training images ``tokens[rows]``: the mean token
        (``code_source="tokens"``) and, with ``codebook_init="kmeans"``, codes at k-means centres of the
        code features of a random subset of images (about ``max_rows`` tokens; plenty for the centres,
        and no copy of a large training set). A frozen (random) codebook keeps its codes."""
        if self.codebook is None:
            return
        rows = torch.arange(len(tokens)) if rows is None else rows
        batches = [rows[i:i + batch_size] for i in range(0, len(rows), batch_size)]
        if self.code_proj is None:
            total = sum(tokens[b].sum((0, 1), dtype=torch.float64) for b in batches)
            self.token_mean.copy_(total / (len(rows) * tokens.shape[1]))
        if self.codebook_init != "kmeans" or self.codebook.update == "frozen":
            return
        chosen = rows[torch.randperm(len(rows))[:max(1, -(-max_rows // tokens.shape[1]))]]
        z = torch.cat([self.code_features(tokens[chosen[i:i + batch_size]]) for i in range(0, len(chosen), batch_size)])
        z = z.reshape(-1, z.shape[-1])
        self.codebook.initialise(kmeans(z, self.codebook.num_codes, cosine=self.codebook.cosine), z, tokens_per_batch)

    def training_epoch_compute(self) -> dict[str, float]:
        """Code perplexity, dead codes and restarts of the epoch's training assignments (for the history)."""
        return self.codebook.epoch_stats() if self.codebook is not None else {}

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
        scale = float(self.temperature.detach()) if self.hard_negative_temperature else 1.0
        neg_text, neg_image = hard_negatives(similarity, keys, scale)
        b = len(keys)
        rows = torch.arange(b, device=mask.device)
        text = torch.cat([text_states, text_states[neg_text], text_states])  # ITM_NEGATIVES_PER_MATCH per match
        text_mask = torch.cat([mask, mask[neg_text], mask])
        image_index = torch.cat([rows, rows, neg_image])
        logits = self.itm_head(self.fusion(text, text_mask, image_states, context_index=image_index)[:, 0])
        labels = torch.cat([torch.ones(b), torch.zeros(ITM_NEGATIVES_PER_MATCH * b)]).long().to(logits.device)
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
        states = self.image_states(tokens, masked, embedded)
        if self.mim_input == "fusion":
            states = self.image_fusion(states, None, text_states, mask)
        targets = mim_targets(codes.detach(), masked).flatten()
        logits = self.mim_head(states[:, 1:]).flatten(0, 1)
        self.parts.update(mim_accuracy(logits.detach(), targets, self.codebook.num_codes))
        if self.mim_weighting == "none":
            return F.cross_entropy(logits, targets, ignore_index=IGNORE)
        weigh = inverse_frequency_weights if self.mim_weighting == "inverse_frequency" else drop_top_weights
        weights = weigh(targets, self.codebook.num_codes)
        loss = F.cross_entropy(logits, targets, ignore_index=IGNORE, reduction="none")
        return (loss * weights).sum() / weights.sum().clamp_min(1e-12)

    def _mim_codes(self, tokens: torch.Tensor, online: torch.Tensor) -> torch.Tensor:
        """MIM targets. Codes of the frozen tokens need nothing more (no encoder makes them); codes of
        states come from the momentum encoder's unmasked states when there is one (no gradient path lets
        the online encoder make its own targets trivial), else from the online pass."""
        if self.code_proj is None or not self.use_momentum:
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
        extra = zero
        if on["vq"]:
            quantized = self.codebook(self.code_features(tokens, image_states))
            losses["vq"] = quantized.loss
            self.parts["perplexity"] = float(quantized.perplexity)
            if self.decoder is not None:  # VQ-VAE's reconstruction: the quantised states must keep the token
                target = F.layer_norm(tokens, tokens.shape[-1:])
                extra = self.reconstruction * F.mse_loss(self.decoder(quantized.quantized), target)
                self.parts["rec"] = float(extra.detach()) / self.reconstruction
            if on["mim"]:
                losses["mim"] = self._mim(tokens, embedded, self._mim_codes(tokens, quantized.indices), text_states, mask)
        self.parts.update({key: float(value.detach()) for key, value in losses.items()})
        self._momentum_states = None
        return extra + sum(self.weights[key] * value for key, value in losses.items() if on[key])


