"""LQAE: images as sequences of a language model's tokens, learned from images alone
(Liu, Yan & Abbeel, Language Quantized AutoEncoders, NeurIPS 2023; papers.md §4, §7.4).

Forward pass and loss (``codebook="language"``, papers.md §4.3, README hyper-parameters):

1. ``z = E(x)``: a small timm ViT (no class token) turns an image into a grid of ``T`` vectors of the
   table's width ``D`` (``tokens_per_image``: 32x32 px, patch 8 -> 16 tokens; patch 4 -> 64).
2. Each ``z_i`` is replaced by the nearest searchable row of the frozen word-embedding table (cosine on
   l2-normalised vectors; ``codebook_rows``: every non-special row, or the ``codebook_size`` most
   frequent whole words, :mod:`align.methods.lqae.codebook`), the *raw* row is passed on, with a
   straight-through gradient (:mod:`align.kernels.quantizer`).
3. A Bernoulli(``mask_ratio`` = 0.5) subset of positions is replaced by the table's mask row and the
   frozen LM reads the sequence as input embeddings (:mod:`align.methods.lqae.denoiser`): a masked
   LM (BERT) as in the paper, or a causal LM (Gemma-3), which follows from the table's ``lm_kind``.
4. ``L = L_rec + 2 * commitment * L_commit + lm_weight * L_lm (+ usage_weight * L_usage)``: ``L_rec`` the
   pixel MSE of a small ViT decoder reading the LM's last hidden states, ``L_commit = mean ||z - sg(q)||^2``
   (doubled, as the official code effectively does), ``L_lm`` the cross-entropy of the LM's prediction of
   each masked position's own code over the searchable rows (per-image mean over masked positions, then
   batch mean). ``L_usage`` (off by default; not in the paper) is MAGVIT-v2's code-usage entropy term
   (:func:`align.kernels.quantizer.usage_entropy`), for every codebook kind alike: the LM loss can be
   lowered by writing every image in the same few, predictable codes, and this term counters that.

The causal LM (a deviation from the paper, whose denoiser is RoBERTa): Gemma has no [MASK] that its
LM was trained on; masked positions get its ``<mask>`` control token's row (``<unk>``'s for a causal
tokenizer without one), ``<bos>`` is put first, token vectors are scaled by sqrt(D) as Gemma's
embedding module does, and code ``i`` is predicted from the logits at position ``i - 1`` (next-token
prediction; a causal LM cannot see the position it fills). The decoder reads the state at each token's
own position. Details in :mod:`align.methods.lqae.denoiser`.

The LM's prediction head:

- **Causal LM (Gemma-3 270M, ``table="gguf:gemma-3-270m.q4_k_m"``):** its *pretrained* output layer,
  tied to the embedding table, restricted to the searchable rows; nothing trained. ``L_lm`` then
  scores the codes with a real language prior: how predictable each code is from the codes before it.
- **Masked LM (MiniLM, the default table):** MiniLM's checkpoint has no MLM head (shared/assets.md §4):
  the transform (dense + GELU + LayerNorm) and the output bias are random, the decoder is tied to the
  table. With ``mlm_head="train"`` (default) the transform and bias are trained from the image codes
  (the tied rows stay frozen); ``"frozen"`` keeps the random head. Neither head has seen text, so
  there ``L_lm`` carries no language prior; the LM shapes the codes through the reconstruction that
  must pass through BERT. ``"text"`` is the paper's set-up (a frozen bidirectional LM with a head
  pretrained on text): the head that :mod:`align.text.mlm_head` trains on English that ships with
  Python, loaded from its verified cache (trained there first, minutes on a CPU), then kept frozen.

``lm_weight`` defaults to 1.0 (the paper's 1e-4 was set for RoBERTa's pretrained head at ImageNet
scale, where it barely moves the encoder); its value is for a validation sweep to choose.

Baselines, switched by ``codebook``:

- ``"random"``: everything as LQAE, but the table is replaced by a frozen Gaussian table of the same
  shape (per-dimension mean and std of the real one, or of the searchable rows when they are
  restricted; seeded), in the input and in a tied head: what is left when language structure is
  removed from the codebook (the LM and its position embeddings stay).
- ``"learned"``: a VQ-VAE: a trainable codebook of ``codebook_size`` codes (1024 as the paper's
  VQ-VAE; ``None``: as many as the searchable rows, which collapses), nearest code by the same cosine
  as LQAE's and a VQ loss on l2-normalised vectors (beta 0.25), the decoder reading the quantized
  tokens directly (no masking, no LM), as LQAE's ``vqae.py``. Code ``k`` is written as the token of
  the ``k``-th searchable row, so its token strings have the table's vocabulary and no meaning.

Design decisions, and why:

- **Pixels** are scaled to [-1, 1] inside the model (the paper uses ImageNet-normalised pixels, of
  similar variance; the 0.005 commitment was set on that scale). Reported reconstruction errors are
  MSE in [0, 1] pixel units.
- **Augmentation** (``augment``): random resized crop (area from ``crop_min_scale``) + horizontal flip,
  per image, seeded (:mod:`align.methods.lqae.augment`), in training only; off by default.
- **Sizes.** Encoder and decoder default to width 128, depth 4, which trains on 2 CPU cores in
  minutes; ``encoder_width``/``depth``/``heads`` and the decoder's allow a bigger ViT on a GPU.
- **Optimiser.** AdamW (betas 0.9, 0.95; weight decay 5e-4 on all matrices) with linear warm-up (at least
  one step) and cosine decay, as the official run, at lr 1e-3 (the paper's 3e-4 is for batch 512 and
  ViT-base): the shared ``CoreModule``'s, with LQAE's betas and schedule (``LQAE.adamw_betas``, ...).
- **No [CLS]/[SEP].** The official code feeds the token embeddings alone; so does the masked path.

Version 2 (issue 14): causal LMs, ``lm_weight`` (was ``bert_weight``, default 1e-4 -> 1.0), the LM loss
over the searchable rows only, ``codebook_rows``/``codebook_size``, the VQ-VAE's 1024 codes and cosine
loss, ``augment``, ``tokens_per_image``. Fits saved by version 1 load with their behaviour
(``legacy_hparams``, ``renamed_hparams``).
"""

from __future__ import annotations

import copy
import functools
import math
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any, ClassVar

import torch
import torch.nn.functional as F
from torch import nn

from align.errors import BadInputError
from align.methods.framework.base import ImageInput
from align.methods.framework.hparams import MAX_CODES, MAX_EPOCHS, MAX_LAYERS, MAX_ROWS, MAX_TOKENS, MAX_WIDTH, param
from align.methods.framework.restoring import restoring
from align.methods.framework.trained import TrainedAligner, TrainedHParams
from align.methods.lqae import denoiser
from align.methods.lqae.augment import augment as augment_images
from align.methods.lqae.codebook import CODEBOOK_ROWS, random_codebook, random_table, searchable_ids
from align.methods.lqae.decoder import PixelDecoder
from align.methods.lqae.denoiser import LMRun, mask_token_id
from align.kernels.quantizer import FrozenCodebookQuantizer, LearnedCodebookQuantizer, Quantized, usage_entropy
from align.data.pixels import check_images
from align.registry import ALIGNERS, EMBEDDING_TABLES
from align.text.base import EmbeddingTable, input_embedding_scale
from align.text.mlm_head import new_head, pretrained_head

__all__ = ["LQAE", "LQAECore", "LQAEHParams", "PixelDecoder", "load_table", "mask_token_id", "random_table"]

DEFAULT_TABLE = "hf:sentence-transformers/all-MiniLM-L6-v2"
GEMMA_TABLE = "gguf:gemma-3-270m.q4_k_m"  # the causal-LM denoiser with a pretrained, tied head
CODEBOOKS = ("language", "random", "learned")
MLM_HEADS = ("train", "frozen", "text")


@functools.lru_cache(maxsize=4)
def load_table(name: str) -> EmbeddingTable:
    """The table built once per process (MiniLM's takes a few seconds)."""
    return EMBEDDING_TABLES.create(name)


class LQAECore(nn.Module):
    """Encoder, quantizer, frozen LM (+ MLM head for a masked LM), decoder; ``forward(images)`` is the loss.

    The frozen LM is held outside the module tree (not in ``state_dict``, never switched to train mode
    or handed to the optimiser). The loss terms of the last call are left in ``self.parts``."""

    def __init__(self, table: str = DEFAULT_TABLE, codebook: str = "language", image_size: int = 32,
                 patch_size: int = 8, in_chans: int = 1, encoder_width: int = 128, encoder_depth: int = 4,
                 encoder_heads: int = 4, decoder_width: int = 128, decoder_depth: int = 4, decoder_heads: int = 4,
                 mask_ratio: float = 0.5, commitment: float = 0.005, lm_weight: float = 1.0,
                 vq_beta: float = 0.25, exclude_special: bool = True, mlm_head: str = "train",
                 l2_normalize: bool = True, table_seed: int = 0, codebook_rows: str = "all",
                 codebook_size: int | None = 1024, augment: bool = False, crop_min_scale: float = 0.2,
                 usage_weight: float = 0.0, usage_temperature: float = 0.01) -> None:
        super().__init__()
        from timm.models.vision_transformer import VisionTransformer

        tab = load_table(table)
        self.table_name, self.codebook_kind = table, codebook
        self.mask_ratio, self.commitment, self.lm_weight = mask_ratio, commitment, lm_weight
        self.augment, self.crop_min_scale = augment, crop_min_scale
        self.usage_weight, self.usage_temperature = usage_weight, usage_temperature
        self.image_size, self.in_chans = image_size, in_chans
        self.num_tokens = (image_size // patch_size) ** 2
        dim = tab.embed_dim
        self.encoder = VisionTransformer(img_size=image_size, patch_size=patch_size, in_chans=in_chans,
                                         num_classes=0, global_pool="", class_token=False, embed_dim=encoder_width,
                                         depth=encoder_depth, num_heads=encoder_heads)
        self.to_codebook = nn.Linear(encoder_width, dim)
        ids = searchable_ids(tab, codebook_rows, codebook_size if codebook_rows == "words" else None, exclude_special)
        self.register_buffer("search_ids", ids, persistent=False)
        self.uses_lm = codebook != "learned"
        self.lm_kind = tab.lm_kind if self.uses_lm else None
        if codebook == "learned":
            self._build_learned(tab, ids, codebook_size, vq_beta, l2_normalize)
        else:
            rows = tab.weight if codebook == "language" else random_codebook(tab.weight, ids, table_seed,
                                                                            codebook_rows == "words")
            self.quantizer = FrozenCodebookQuantizer(rows, ids, l2_normalize=l2_normalize)
            self._build_lm_side(tab, rows, ids, mlm_head)
        self.decoder = PixelDecoder(dim, image_size, patch_size, in_chans, decoder_width, decoder_depth, decoder_heads)
        self.parts: dict[str, float] = {}
        self._val: list[dict[str, torch.Tensor | None]] = []  # this validation epoch's batches so far

    def _build_learned(self, tab: EmbeddingTable, ids: torch.Tensor, size: int | None, beta: float,
                       l2_normalize: bool) -> None:
        """The VQ-VAE's trainable codebook; code ``k`` is written as the ``k``-th searchable row's token."""
        size = len(ids) if size is None else size
        if size > len(ids):
            raise BadInputError(f"lqae: codebook_size={size} learned codes but table {tab.name!r} has only "
                                f"{len(ids)} searchable rows to write them as tokens")
        self.quantizer: nn.Module = LearnedCodebookQuantizer(size, tab.embed_dim, beta=beta,
                                                             init_std=float(tab.weight.std()),
                                                             l2_normalize=l2_normalize)
        self.register_buffer("code_to_token", ids[:size].clone(), persistent=False)

    def _build_lm_side(self, tab: EmbeddingTable, rows: torch.Tensor, ids: torch.Tensor, mlm_head: str) -> None:
        """Mask row, the head over the searchable rows and, per LM kind, the MLM head or the causal
        LM's ``<bos>`` and input scale."""
        if self.lm_kind not in denoiser.LM_KINDS:
            raise BadInputError(f"lqae: table {tab.name!r} has no language model (lm_kind={tab.lm_kind!r}); "
                                "codebook='language'/'random' need one to denoise with")
        lm = tab.load_lm()
        extra = 1 if self.lm_kind == "causal" else 0
        limit = getattr(lm.config, "max_position_embeddings", None)
        if limit is not None and self.num_tokens + extra > limit:
            raise BadInputError(f"lqae: tokens_per_image={self.num_tokens} does not fit the LM of {tab.name!r} "
                                f"({limit} positions)")
        self.register_buffer("mask_row", rows[mask_token_id(tab)].clone(), persistent=False)
        weight, bias = denoiser.head_rows(lm, rows, ids)
        self.register_buffer("head_rows", weight, persistent=False)
        self.register_buffer("head_bias", bias if bias is not None else torch.empty(0), persistent=False)
        if self.lm_kind == "masked":
            # transform + bias (random in MiniLM, or trained on text), decoder tied to the table's rows
            head = lm.cls.predictions
            if mlm_head == "text":  # restored from a saved state: built untrained, for the state to replace
                head = new_head(lm, 0) if restoring() else pretrained_head(tab)[0]
            # a copy, set explicitly: the shared LM is in eval mode and may already be frozen
            self.mlm_transform = copy.deepcopy(head.transform).train().requires_grad_(mlm_head == "train")
            self.mlm_bias = nn.Parameter(head.bias.detach().clone(), requires_grad=mlm_head == "train")
        else:
            self.bos_id = denoiser.bos_token_id(tab)
            self.input_scale = input_embedding_scale(lm, int(ids[0]))

    # ------------------------------------------------------------------ pieces

    @property
    def table(self) -> EmbeddingTable:
        return load_table(self.table_name)

    def lm(self) -> nn.Module:
        """The frozen LM (eval mode, no grad), on the encoder's device."""
        lm = self.table.load_lm().requires_grad_(False).eval()
        return lm.to(self.to_codebook.weight.device)

    def encode(self, images: torch.Tensor) -> torch.Tensor:
        """``z [B, T, D]``: the encoder's tokens in the codebook's space."""
        return self.to_codebook(self.encoder.forward_features(images * 2 - 1))

    def quantize(self, z: torch.Tensor) -> Quantized:
        out = self.quantizer(z)
        if not self.uses_lm:  # learned codebook: code k -> the k-th searchable table row's token
            out.codes = self.code_to_token[out.codes]
        return out

    def draw_mask(self, batch: int, generator: torch.Generator | None = None) -> torch.Tensor:
        """``[B, T]`` bool, each position masked with probability ``mask_ratio`` (Bernoulli, as the paper)."""
        u = torch.rand(batch, self.num_tokens, generator=generator)
        return (u < self.mask_ratio).to(self.to_codebook.weight.device)

    def apply_mask(self, tokens: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        return torch.where(mask.unsqueeze(-1), self.mask_row.to(tokens.dtype), tokens)

    def run_lm(self, tokens: torch.Tensor, all_layers: bool = False, lm: nn.Module | None = None) -> LMRun:
        """The frozen LM over raw-scale token vectors ``[B, T, D]`` (``lm``: another module of the same
        interface, for tests)."""
        lm = self.lm() if lm is None else lm
        if self.lm_kind == "causal":
            return denoiser.run_causal(lm, tokens, self.bos_id, self.input_scale, all_layers)
        return denoiser.run_masked(lm, tokens, all_layers)

    def lm_states(self, tokens: torch.Tensor, all_layers: bool = False) -> torch.Tensor | tuple[torch.Tensor, ...]:
        """The LM's last hidden states ``[B, T, D]`` over token vectors (or every layer's, embeddings first)."""
        run = self.run_lm(tokens, all_layers)
        return run.layers if all_layers else run.states

    def lm_logits(self, predict: torch.Tensor) -> torch.Tensor:
        """Scores ``[..., K]`` over the searchable rows for predicting states ``[..., D]``: the masked LM's
        (trained or random) transform, or the causal LM's pretrained head as it is."""
        if self.lm_kind == "masked":
            return self.mlm_transform(predict) @ self.head_rows.T + self.mlm_bias[self.search_ids]
        logits = predict @ self.head_rows.T
        if self.head_bias.numel():
            logits = logits + self.head_bias
        return denoiser.softcap(logits, self.table.load_lm())

    def lm_loss(self, predict: torch.Tensor, codes: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        """Cross-entropy of each masked position's own code (full-table ids ``codes [B, T]``)."""
        if not mask.any():
            return predict.new_zeros(())
        targets = denoiser.code_targets(codes[mask], self.search_ids, self.quantizer.codebook.shape[0])
        return denoiser.masked_mean_ce(self.lm_logits(predict[mask]), targets, mask)

    # ------------------------------------------------------------------ loss

    def forward(self, images: torch.Tensor, *rest: torch.Tensor) -> torch.Tensor:
        if self.training and self.augment:  # a fresh seed per batch from the (Lightning-seeded) global RNG
            images = augment_images(images, int(torch.randint(2**62, ())), self.crop_min_scale)
        z = self.encode(images)
        q = self.quantize(z)
        zero = q.loss.new_zeros(())
        if self.uses_lm:
            mask = self.draw_mask(len(images))
            run = self.run_lm(self.apply_mask(q.st, mask))
            recon = self.decoder(run.states)
            l_commit, l_vq = q.loss, zero
            l_lm = self.lm_loss(run.predict, q.codes, mask) if self.lm_weight > 0 else zero
            total_aux = 2 * self.commitment * l_commit + self.lm_weight * l_lm
        else:
            recon = self.decoder(q.st)
            l_commit, l_lm, l_vq = zero, zero, q.loss
            total_aux = l_vq
        l_rec = F.mse_loss(recon, images * 2 - 1)
        l_usage = (usage_entropy(z, self.quantizer.unit_rows(), self.usage_temperature)
                   if self.usage_weight > 0 else zero)
        self.parts = {"rec": float(l_rec.detach()) / 4, "commit": float(l_commit.detach()),
                      "lm": float(l_lm.detach()), "vq": float(l_vq.detach()), "usage": float(l_usage.detach())}
        return l_rec + total_aux + self.usage_weight * l_usage

    # ------------------------------------------------------------------ inference

    # ------------------------------------------------------------------ validation

    @torch.no_grad()
    def validation_update(self, images: torch.Tensor, *rest: torch.Tensor) -> None:
        """Per validation batch: pixel error unmasked and at the training mask ratio, the LM's loss on the
        masked codes, and the codes (the k-th batch of every epoch draws the same mask, so epochs compare)."""
        z = self.encode(images)
        q = self.quantize(z)
        gen = torch.Generator().manual_seed(len(self._val))
        mask = self.draw_mask(len(images), gen)
        if self.uses_lm:
            plain = self.decoder(self.lm_states(q.st))
            run = self.run_lm(self.apply_mask(q.st, mask))
            masked, lm = self.decoder(run.states), self.lm_loss(run.predict, q.codes, mask)
        else:
            plain = masked = self.decoder(q.st)
            lm = None
        target = images * 2 - 1
        rows = {"rec": ((plain - target) ** 2).flatten(1).mean(1) / 4,  # in [0, 1] pixel units
                "rec_masked": ((masked - target) ** 2).flatten(1).mean(1) / 4,
                "lm": None if lm is None else lm.expand(len(images)), "codes": q.codes.flatten()}
        self._val.append(rows)

    @torch.no_grad()
    def validation_compute(self) -> dict[str, float]:
        """``val_rec`` / ``val_rec_masked`` (MSE of the held-out images, pixels in [0, 1], read unmasked or
        masked as in training), ``val_lm`` (the LM's cross-entropy on masked codes, with an LM),
        ``val_codes_used`` and ``val_code_perplexity`` (exp entropy of the held-out codes' frequencies)."""
        batches, self._val = self._val, []
        if not batches:
            return {}
        out = {f"val_{key}": float(torch.cat([b[key] for b in batches]).mean())
               for key in ("rec", "rec_masked", "lm") if batches[0][key] is not None}
        _, counts = torch.cat([b["codes"] for b in batches]).unique(return_counts=True)
        p = counts.double() / counts.sum()
        perplexity = float(torch.exp(-(p * p.log()).sum()))
        return out | {"val_codes_used": float(len(counts)), "val_code_perplexity": perplexity}

    @torch.no_grad()
    def reconstruct(self, images: torch.Tensor, mask_ratio: float = 0.0, seed: int = 0) -> torch.Tensor:
        """Decoded pixels in [0, 1] units (not clipped); ``mask_ratio`` > 0 masks as in training."""
        q = self.quantize(self.encode(images))
        if not self.uses_lm:
            return (self.decoder(q.st) + 1) / 2
        mask = torch.rand(len(images), self.num_tokens, generator=torch.Generator().manual_seed(seed)) < mask_ratio
        states = self.lm_states(self.apply_mask(q.st, mask.to(q.st.device)))
        return (self.decoder(states) + 1) / 2

    @torch.no_grad()
    def features(self, images: torch.Tensor) -> dict[str, torch.Tensor]:
        """Mean-pooled features for probes: ``encoder`` (pre-quantization z), ``tokens`` (the raw
        codebook rows) and, with an LM, ``bert`` (every LM layer mean-pooled over the image's tokens and
        concatenated, no masking, as LQAE's ``linear_main.py`` but without dropping the first token; a
        causal LM's ``<bos>`` is left out; the key keeps its version-1 name for any LM)."""
        z = self.encode(images)
        q = self.quantize(z)
        out = {"encoder": z.mean(1), "tokens": q.raw.mean(1)}
        if self.uses_lm:
            layers = self.lm_states(q.raw, all_layers=True)
            out["bert"] = torch.cat([h.mean(1) for h in layers], dim=1)
        return {k: v.float().cpu() for k, v in out.items()}


@dataclass(frozen=True)
class LQAEHParams(TrainedHParams):
    table: str = param(DEFAULT_TABLE, want="an embedding-table name")  # codebook and denoiser (masked or causal LM)
    codebook: str = param("language", choices=CODEBOOKS)  # the table, a random table (baseline) or learned (VQ-VAE)
    codebook_rows: str = param("all", choices=CODEBOOK_ROWS)  # searchable rows: non-special, or frequent whole words
    codebook_size: int | None = param(1024, low=1, high=MAX_CODES)  # words kept by codebook_rows="words"; codes of "learned"; None: all
    image_size: int = param(32, low=2, high=1024)
    patch_size: int = param(8, low=1, high=1024)
    tokens_per_image: int | None = param(None, low=1, high=MAX_TOKENS)  # when set, patch_size follows from it (16, 64, ...)
    in_chans: int = param(1, choices=(1, 3), want="1 or 3")
    encoder_width: int = param(128, low=1, high=MAX_WIDTH)
    encoder_depth: int = param(4, low=0, high=MAX_LAYERS)
    encoder_heads: int = param(4, low=1, high=MAX_LAYERS)
    decoder_width: int = param(128, low=1, high=MAX_WIDTH)
    decoder_depth: int = param(4, low=0, high=MAX_LAYERS)
    decoder_heads: int = param(4, low=1, high=MAX_LAYERS)
    mask_ratio: float = param(0.5, low=0, below=1)  # Bernoulli masking of the tokens the LM reads
    commitment: float = param(0.005, low=0)
    lm_weight: float = param(1.0, low=0)  # weight of the LM's cross-entropy on masked codes (was bert_weight)
    vq_beta: float = param(0.25, low=0)  # codebook="learned" only
    exclude_special: bool = True  # special tokens are never codes
    mlm_head: str = param("train", choices=MLM_HEADS)  # masked LM: trained on codes, random, text-trained
    l2_normalize: bool = True  # nearest code by cosine
    table_seed: int = param(0, low=-2**63, high=2**64 - 1)  # of codebook="random" (torch.Generator's seed range)
    augment: bool = False  # random resized crop + horizontal flip in training
    crop_min_scale: float = param(0.2, above=0)  # smallest crop area fraction (at most 1)
    usage_weight: float = param(0.0, low=0)  # code-usage entropy term (MAGVIT-v2's), against codebook collapse
    usage_temperature: float = param(0.01, above=0)  # softmax temperature of its cosine soft assignment
    weight_decay: float = param(5e-4, low=0)
    warmup_fraction: float = param(0.05, low=0, below=1)
    val_fraction: float = param(0.0, low=0, below=0.5)  # fit images held out, scored every epoch (val_rec, val_lm, ...)
    batch_size: int = param(64, low=1, high=MAX_ROWS)
    max_epochs: int = param(5, low=0, high=MAX_EPOCHS)

    def check(self, aligner: str) -> LQAEHParams:
        hp = self if self.tokens_per_image is None else self._patch_from_tokens(aligner)
        if hp.image_size % hp.patch_size:
            raise hp.bad(aligner, "patch_size", f"a divisor of image_size={hp.image_size}")
        for part in ("encoder", "decoder"):
            if getattr(hp, f"{part}_width") % getattr(hp, f"{part}_heads"):
                raise hp.bad(aligner, f"{part}_heads", f"a divisor of {part}_width={getattr(hp, f'{part}_width')}")
        if hp.crop_min_scale > 1:
            raise hp.bad(aligner, "crop_min_scale", "a number in (0, 1]")
        return hp

    def _patch_from_tokens(self, aligner: str) -> LQAEHParams:
        """``patch_size`` for ``tokens_per_image`` (a square grid); a patch_size left at its default is
        replaced, any other must agree."""
        tokens, size = self.tokens_per_image, self.image_size
        side = math.isqrt(tokens)
        if side * side != tokens or size % side:
            raise self.bad(aligner, "tokens_per_image", f"a square number whose root divides image_size={size}")
        patch = size // side
        if self.patch_size not in (patch, type(self).patch_size):
            raise BadInputError(f"{aligner}: tokens_per_image={tokens} needs patch_size={patch} for image_size={size}, "
                                f"got patch_size={self.patch_size}")
        return replace(self, patch_size=patch)


@ALIGNERS.register(
    "lqae",
    description="Language-quantized autoencoder: a ViT encoder whose patch tokens are snapped to a frozen LM word-"
    "embedding table (straight-through), half masked and denoised by the frozen LM (masked, e.g. BERT, or "
    "causal, e.g. Gemma-3 with its pretrained head), decoded back to pixels. Trained on images alone: "
    "fit_images(images). codebook='random'/'learned': random-table and VQ-VAE baselines.",
    citation="Liu, Yan & Abbeel, Language Quantized AutoEncoders: Towards Unsupervised Text-Image Alignment, "
    "NeurIPS 2023",
)
class LQAE(TrainedAligner):
    """Language-quantized autoencoder trained on images alone; images become strings of table tokens.

    ``fit_images(images)`` trains on ``[N, C, S, S]`` pixels in [0, 1]; then ``codes`` / ``token_strings``
    give each image's tokens, ``features`` the probe features, ``reconstruct`` the decoded pixels.
    ``encode_image`` returns the LM features (token features for ``codebook="learned"``)."""

    name = "lqae"
    version = "2"
    # version 1 saved fits: a learned codebook had one code per searchable row; the LM weight was bert_weight
    legacy_hparams: ClassVar[dict[str, Any]] = {"codebook_size": None, "val_fraction": 0.0}
    renamed_hparams: ClassVar[dict[str, str]] = {"bert_weight": "lm_weight"}
    config_class = LQAEHParams
    config: LQAEHParams
    core_class = LQAECore
    shape_args = ()  # every core argument is a hyper-parameter
    # the official run's optimiser: AdamW betas (0.9, 0.95), warm-up of at least one step, then cosine decay
    # (lr_schedule); the per-tensor AdamW loop LQAE was always trained with (fused rounds otherwise)
    adamw_betas = (0.9, 0.95)
    fused_adamw = False
    min_warmup_steps = 1
    image_input = "pixels"
    text_input = "none"
    quantizes_images = True  # ``image_codes`` gives every image's table tokens (align bench: code_statistics)
    writes_token_strings = True  # ``token_strings``: each image as text

    def image_input_spec(self) -> ImageInput:
        return ImageInput("pixels", size=self.config.image_size, channels=self.config.in_chans)

    def lr_schedule(self) -> tuple[float, str]:
        return self.config.warmup_fraction, "cosine"

    # ------------------------------------------------------------------ training

    def fit(self, image_features: torch.Tensor, text_features: Any = None) -> LQAE:
        """Train on pixels ``[N, C, S, S]`` in [0, 1] (``image_input`` is ``"pixels"``); any text given
        beside them is ignored: LQAE learns from images alone."""
        return self.fit_images(image_features)

    def fit_images(self, images: torch.Tensor, ckpt_path: str | Path | None = None) -> LQAE:
        """Train encoder, decoder (and MLM head / learned codebook) on unlabelled images; with
        ``checkpoint_dir`` set, a later fit of the same images resumes from its ``last.ckpt``."""
        return self._train("lqae.fit_images", (self._check(images, "lqae.fit_images"),), {},
                           val_fraction=self.config.val_fraction, ckpt_path=ckpt_path)

    def _set_dims(self, module: Any) -> None:
        self.image_dim = self.config.in_chans * self.config.image_size ** 2
        self.text_dim = module.core.table.embed_dim

    def _load_shape(self, state: dict[str, torch.Tensor]) -> dict[str, Any]:
        return {}

    def _check(self, images: torch.Tensor, what: str) -> torch.Tensor:
        return check_images(images, what, self.config.in_chans, self.config.image_size).detach()  # inputs, no graph

    def _batches(self, images: torch.Tensor, what: str, batch_size: int = 256) -> list[torch.Tensor]:
        x = self._check(images, what).to(self.core.to_codebook.weight.device)
        return list(x.split(batch_size))

    # ------------------------------------------------------------------ outputs

    @torch.no_grad()
    def codes(self, images: torch.Tensor) -> torch.Tensor:
        """``[N, T]`` table row ids (row-major over the patch grid)."""
        core = self.core
        return torch.cat([core.quantize(core.encode(b)).codes.cpu() for b in self._batches(images, "lqae.codes")])

    def image_codes(self, images: torch.Tensor) -> torch.Tensor:
        """``[N, T]`` code ids of each image (the benchmark's ``code_statistics`` task reads these)."""
        return self.codes(images)

    def tokens(self, codes: torch.Tensor) -> list[list[str]]:
        """The table's token strings of ``[N, T]`` codes."""
        vocab = load_table(self.config.table).tokens
        return [[vocab[int(c)] for c in row] for row in codes]

    def token_strings(self, images: torch.Tensor) -> list[str]:
        """Each image as text: its tokens joined the tokenizer's way (WordPiece ``##`` pieces merge)."""
        table = load_table(self.config.table)
        join = getattr(table.tokenizer, "convert_tokens_to_string", None)
        return [join(row) if join else " ".join(row) for row in self.tokens(self.codes(images))]

    @torch.no_grad()
    def features(self, images: torch.Tensor) -> dict[str, torch.Tensor]:
        """``{"encoder", "tokens", "bert"?}`` mean-pooled features ``[N, ...]`` (see ``LQAECore.features``)."""
        parts = [self.core.features(b) for b in self._batches(images, "lqae.features")]
        return {k: torch.cat([p[k] for p in parts]) for k in parts[0]}

    @torch.no_grad()
    def reconstruct(self, images: torch.Tensor, mask_ratio: float = 0.0, seed: int = 0) -> torch.Tensor:
        """Decoded images ``[N, C, S, S]`` in [0, 1] units (not clipped)."""
        return torch.cat([self.core.reconstruct(b, mask_ratio, seed).cpu()
                          for b in self._batches(images, "lqae.reconstruct")])

    def encode_image(self, image_features: torch.Tensor) -> torch.Tensor:
        feats = self.features(image_features)
        return feats.get("bert", feats["tokens"])

    def encode_text(self, text_features: torch.Tensor) -> torch.Tensor:
        raise BadInputError("lqae: has no text side; images become table tokens (token_strings) instead")
