"""LQAE: images as sequences of a language model's tokens, learned from images alone
(Liu, Yan & Abbeel, Language Quantized AutoEncoders, NeurIPS 2023; papers.md §4, §7.4).

Forward pass and loss (``codebook="language"``, papers.md §4.3, README hyper-parameters):

1. ``z = E(x)``: a small timm ViT (no class token) turns an image into a grid of ``T`` vectors of the
   table's width ``D`` (e.g. 32x32 px, patch 8 -> 16 tokens).
2. Each ``z_i`` is replaced by the nearest row of the frozen word-embedding table (cosine on
   l2-normalised vectors; special tokens excluded by default), the *raw* row is passed on, with a
   straight-through gradient (:mod:`align.kernels.quantizer`).
3. A Bernoulli(``mask_ratio`` = 0.5) subset of positions is replaced by the table's ``[MASK]`` row
   and the frozen masked LM (MiniLM's 6-layer BERT by default) reads the sequence as input embeddings.
4. ``L = L_rec + 2 * 0.005 * L_commit + 1e-4 * L_bert``: ``L_rec`` the pixel MSE of a small ViT decoder
   reading BERT's last hidden states, ``L_commit = mean ||z - sg(q)||^2`` (doubled, as the official
   code effectively does), ``L_bert`` the MLM cross-entropy at masked positions with the image's own
   codes as targets (per-image mean over masked positions, then batch mean).

Baselines, switched by ``codebook``:

- ``"random"``: everything as LQAE, but the table is replaced by a frozen Gaussian table of the same
  shape (per-dimension mean and std of the real one, seeded): what is left when language structure
  is removed from the codebook (the BERT and its position embeddings stay).
- ``"learned"``: a VQ-VAE: a trainable codebook with as many rows as the searchable table, the usual
  VQ loss (beta 0.25), and the decoder reading the quantized tokens directly (no masking, no LM), as
  LQAE's ``vqae.py``. Code ``k`` is written as the table token of the ``k``-th searchable row, so its
  token strings have the same vocabulary and no meaning.

Design decisions, and why:

- **The MLM head.** MiniLM's checkpoint has no MLM head (shared/assets.md §4): the transform (dense +
  GELU + LayerNorm) and the output bias are random, the decoder is tied to the table. With
  ``mlm_head="train"`` (default) the transform and bias are the only trained part on the language
  side (the tied decoder rows stay frozen), so ``L_bert`` scores a head that has actually learned to
  read BERT's states; ``"frozen"`` keeps the random head, as the checkpoint gives it. Either way the
  weight is the paper's 1e-4, so ``L_bert`` barely moves the encoder; the LM shapes the codes mainly
  through the reconstruction that must pass through BERT.
- **Pixels** are scaled to [-1, 1] inside the model (the paper uses ImageNet-normalised pixels, of
  similar variance; the 0.005 and 1e-4 weights were set on that scale). Reported reconstruction
  errors are MSE in [0, 1] pixel units.
- **Sizes.** Encoder and decoder default to width 128, depth 4, which trains on 2 CPU cores in
  minutes; ``encoder_width``/``depth``/``heads`` and the decoder's allow a bigger ViT on a GPU.
- **Optimiser.** AdamW (betas 0.9, 0.95; weight decay 5e-4 on all matrices) with linear warm-up and
  cosine decay, as the official run, at lr 1e-3 (the paper's 3e-4 is for batch 512 and ViT-base).
- **No [CLS]/[SEP].** The official code feeds the token embeddings alone; so does this one.

Measured (``benchmarks/lqae_compare.py``, Fashion-MNIST, 3000 training / 1000 test images, 5 epochs,
one seed, 1 thread): LQAE's tokens carry more class information than the random table's and the VQ-VAE's
(linear probe on the mean token vector 0.631 vs 0.562 / 0.553; token/class information 0.255 vs 0.166
/ 0.061; LQAE also uses more distinct codes, 193 vs 120 / 17), its BERT features probe at 0.669 (random
table 0.656), and the VQ-VAE reconstructs best (MSE 0.026 vs 0.031 / 0.034). Raw pixels probe at 0.812,
above every variant at this training length. Gemma-3-270M's in-context accuracy on the token strings
is at chance for all three, as is its control with class names as the items: at this size the LM does
not bind labels in context, so that column cannot rank tokenizers. On emoji (955 training images,
subcategory labels, 10 epochs) the order flips: the random table probes better than LQAE (mean token
vector 0.286 vs 0.236, BERT layers 0.323 vs 0.315) and reconstructs better (0.054 vs 0.064). One seed
each: the language codebook's advantage is not established at this scale.
"""

from __future__ import annotations

import copy
import functools
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from align.errors import BadInputError
from align.methods.base import ImageInput
from align.methods.hparams import param
from align.methods.trained import TrainedAligner, TrainedHParams
from align.kernels.quantizer import FrozenCodebookQuantizer, LearnedCodebookQuantizer, Quantized
from align.data.pixels import check_images
from align.registry import ALIGNERS, EMBEDDING_TABLES
from align.text.base import EmbeddingTable

CORE = "align.methods.lqae.aligner:LQAECore"
DEFAULT_TABLE = "hf:sentence-transformers/all-MiniLM-L6-v2"
CODEBOOKS = ("language", "random", "learned")
MLM_HEADS = ("train", "frozen")


@functools.lru_cache(maxsize=4)
def load_table(name: str) -> EmbeddingTable:
    """The table built once per process (MiniLM's takes a few seconds)."""
    return EMBEDDING_TABLES.create(name)


def random_table(weight: torch.Tensor, seed: int) -> torch.Tensor:
    """A Gaussian table of ``weight``'s shape with its per-dimension mean and std (seeded)."""
    generator = torch.Generator().manual_seed(seed)
    noise = torch.randn(weight.shape, generator=generator)
    return noise * weight.std(0, keepdim=True) + weight.mean(0, keepdim=True)


def mask_token_id(table: EmbeddingTable) -> int:
    tokenizer = table.tokenizer
    mask_id = getattr(tokenizer, "mask_token_id", None)
    if mask_id is None:
        raise BadInputError(f"lqae: table {table.name!r} has no [MASK] token; LQAE needs a masked LM")
    return int(mask_id)


class PixelDecoder(nn.Module):
    """A small ViT from ``[B, T, D]`` token vectors back to ``[B, C, S, S]`` pixels (one patch per token)."""

    def __init__(self, in_dim: int, image_size: int, patch_size: int, in_chans: int, width: int, depth: int,
                 heads: int) -> None:
        super().__init__()
        from timm.models.vision_transformer import Block

        self.grid, self.patch, self.chans = image_size // patch_size, patch_size, in_chans
        self.proj = nn.Linear(in_dim, width)
        self.pos = nn.Parameter(torch.randn(1, self.grid ** 2, width) * 0.02)
        self.blocks = nn.Sequential(*(Block(width, heads, qkv_bias=True) for _ in range(depth)))
        self.norm = nn.LayerNorm(width)
        self.head = nn.Linear(width, patch_size * patch_size * in_chans)

    def forward(self, tokens: torch.Tensor) -> torch.Tensor:
        x = self.head(self.norm(self.blocks(self.proj(tokens) + self.pos)))
        b, g, p, c = len(x), self.grid, self.patch, self.chans
        return x.view(b, g, g, p, p, c).permute(0, 5, 1, 3, 2, 4).reshape(b, c, g * p, g * p)


class LQAECore(nn.Module):
    """Encoder, quantizer, (frozen masked LM + MLM head), decoder; ``forward(images)`` is the loss.

    The frozen LM is held outside the module tree (not in ``state_dict``, never switched to train mode
    or handed to the optimiser). The loss terms of the last call are left in ``self.parts``."""

    def __init__(self, table: str = DEFAULT_TABLE, codebook: str = "language", image_size: int = 32,
                 patch_size: int = 8, in_chans: int = 1, encoder_width: int = 128, encoder_depth: int = 4,
                 encoder_heads: int = 4, decoder_width: int = 128, decoder_depth: int = 4, decoder_heads: int = 4,
                 mask_ratio: float = 0.5, commitment: float = 0.005, bert_weight: float = 1e-4,
                 vq_beta: float = 0.25, exclude_special: bool = True, mlm_head: str = "train",
                 l2_normalize: bool = True, table_seed: int = 0) -> None:
        super().__init__()
        from timm.models.vision_transformer import VisionTransformer

        tab = load_table(table)
        self.table_name, self.codebook_kind = table, codebook
        self.mask_ratio, self.commitment, self.bert_weight = mask_ratio, commitment, bert_weight
        self.image_size, self.in_chans = image_size, in_chans
        self.num_tokens = (image_size // patch_size) ** 2
        dim = tab.embed_dim
        self.encoder = VisionTransformer(img_size=image_size, patch_size=patch_size, in_chans=in_chans,
                                         num_classes=0, global_pool="", class_token=False, embed_dim=encoder_width,
                                         depth=encoder_depth, num_heads=encoder_heads)
        self.to_codebook = nn.Linear(encoder_width, dim)
        allowed = torch.tensor(tab.word_ids if exclude_special else range(tab.vocab_size), dtype=torch.long)
        self.uses_lm = codebook != "learned"
        if codebook == "learned":
            self.quantizer: nn.Module = LearnedCodebookQuantizer(len(allowed), dim, beta=vq_beta,
                                                                 init_std=float(tab.weight.std()),
                                                                 l2_normalize=l2_normalize)
            self.register_buffer("code_to_token", allowed, persistent=False)
        else:
            rows = tab.weight if codebook == "language" else random_table(tab.weight, table_seed)
            self.quantizer = FrozenCodebookQuantizer(rows, allowed, l2_normalize=l2_normalize)
            self.register_buffer("mask_row", rows[mask_token_id(tab)].clone(), persistent=False)
            head = tab.load_lm().cls.predictions  # transform + bias (random in MiniLM), decoder tied to the table
            # a copy, set explicitly: the shared LM is in eval mode and may already be frozen
            self.mlm_transform = copy.deepcopy(head.transform).train().requires_grad_(mlm_head == "train")
            self.mlm_bias = nn.Parameter(head.bias.detach().clone(), requires_grad=mlm_head == "train")
        self.decoder = PixelDecoder(dim, image_size, patch_size, in_chans, decoder_width, decoder_depth, decoder_heads)
        self.parts: dict[str, float] = {}

    # ------------------------------------------------------------------ pieces

    @property
    def table(self) -> EmbeddingTable:
        return load_table(self.table_name)

    def bert(self) -> nn.Module:
        """The frozen masked LM's encoder (``BertModel``), eval mode, no grad, on the encoder's device."""
        lm = self.table.load_lm().requires_grad_(False).eval()
        return lm.base_model.to(self.to_codebook.weight.device)

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

    def lm_states(self, tokens: torch.Tensor, all_layers: bool = False) -> torch.Tensor | tuple[torch.Tensor, ...]:
        """BERT's last hidden states ``[B, T, D]`` over token vectors (or every layer's, embeddings first)."""
        out = self.bert()(inputs_embeds=tokens, output_hidden_states=all_layers)
        return out.hidden_states if all_layers else out.last_hidden_state

    def mlm_logits(self, states: torch.Tensor) -> torch.Tensor:
        """MLM scores over the whole table (decoder tied to the frozen rows) for ``[..., D]`` states."""
        return self.mlm_transform(states) @ self.quantizer.codebook.T + self.mlm_bias

    def bert_loss(self, states: torch.Tensor, codes: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        """Cross-entropy at masked positions, mean per image, then over images with a masked position."""
        if not mask.any():
            return states.new_zeros(())
        ce = F.cross_entropy(self.mlm_logits(states[mask]), codes[mask], reduction="none")
        rows = mask.nonzero()[:, 0]
        per_image = torch.zeros(len(mask), dtype=ce.dtype, device=ce.device).index_add_(0, rows, ce)
        count = mask.sum(1)
        has = count > 0
        return (per_image[has] / count[has]).mean()

    # ------------------------------------------------------------------ loss

    def forward(self, images: torch.Tensor, *rest: torch.Tensor) -> torch.Tensor:
        q = self.quantize(self.encode(images))
        zero = q.loss.new_zeros(())
        if self.uses_lm:
            mask = self.draw_mask(len(images))
            states = self.lm_states(self.apply_mask(q.st, mask))
            recon = self.decoder(states)
            l_commit, l_vq = q.loss, zero
            l_bert = self.bert_loss(states, q.codes, mask) if self.bert_weight > 0 else zero
            total_aux = 2 * self.commitment * l_commit + self.bert_weight * l_bert
        else:
            recon = self.decoder(q.st)
            l_commit, l_bert, l_vq = zero, zero, q.loss
            total_aux = l_vq
        l_rec = F.mse_loss(recon, images * 2 - 1)
        self.parts = {"rec": float(l_rec.detach()) / 4, "commit": float(l_commit.detach()),
                      "bert": float(l_bert.detach()), "vq": float(l_vq.detach())}
        return l_rec + total_aux

    # ------------------------------------------------------------------ inference

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
        codebook rows) and, with an LM, ``bert`` (every BERT layer mean-pooled and concatenated, no
        masking, as LQAE's ``linear_main.py`` but without dropping the first token)."""
        z = self.encode(images)
        q = self.quantize(z)
        out = {"encoder": z.mean(1), "tokens": q.raw.mean(1)}
        if self.uses_lm:
            layers = self.lm_states(q.raw, all_layers=True)
            out["bert"] = torch.cat([h.mean(1) for h in layers], dim=1)
        return {k: v.float().cpu() for k, v in out.items()}


@functools.cache
def _module_class() -> Any:
    """A ``CoreModule`` (which records per-epoch means of the loss terms) with the paper's optimiser
    (AdamW betas 0.9/0.95, warm-up + cosine); defined lazily so importing this file skips Lightning."""
    from align.methods.lightning_utils import CoreModule

    class LQAEModule(CoreModule):
        def __init__(self, core: str, core_args: dict[str, Any], lr: float, weight_decay: float,
                     extra: dict[str, Any] | None = None, warmup_fraction: float = 0.05) -> None:
            super().__init__(core, core_args, lr, weight_decay, extra)

        def configure_optimizers(self) -> Any:
            trainable = [p for p in self.core.parameters() if p.requires_grad]
            groups = [{"params": [p for p in trainable if p.ndim >= 2], "weight_decay": self.hparams.weight_decay},
                      {"params": [p for p in trainable if p.ndim < 2], "weight_decay": 0.0}]
            optimizer = torch.optim.AdamW([g for g in groups if g["params"]], lr=self.hparams.lr, betas=(0.9, 0.95))
            total = max(1, int(self.trainer.estimated_stepping_batches))
            warmup = max(1, round(self.hparams.warmup_fraction * total))

            def factor(step: int) -> float:
                if step < warmup:
                    return (step + 1) / warmup
                return 0.5 * (1 + math.cos(math.pi * min(1.0, (step - warmup) / max(1, total - warmup))))

            schedule = torch.optim.lr_scheduler.LambdaLR(optimizer, factor)
            return {"optimizer": optimizer, "lr_scheduler": {"scheduler": schedule, "interval": "step"}}

    return LQAEModule


def __getattr__(name: str) -> Any:  # ``LQAEModule`` importable by name (for checkpoints)
    if name == "LQAEModule":
        return _module_class()
    raise AttributeError(name)


@dataclass(frozen=True)
class LQAEHParams(TrainedHParams):
    table: str = param(DEFAULT_TABLE, want="an embedding-table name")  # a masked LM's table: codebook and denoiser
    codebook: str = param("language", choices=CODEBOOKS)  # the table, a random table (baseline) or learned (VQ-VAE)
    image_size: int = param(32, low=2)
    patch_size: int = param(8, low=1)
    in_chans: int = param(1, choices=(1, 3), want="1 or 3")
    encoder_width: int = param(128, low=1)
    encoder_depth: int = param(4, low=0)
    encoder_heads: int = param(4, low=1)
    decoder_width: int = param(128, low=1)
    decoder_depth: int = param(4, low=0)
    decoder_heads: int = param(4, low=1)
    mask_ratio: float = param(0.5, low=0, below=1)  # Bernoulli masking of the tokens BERT reads
    commitment: float = param(0.005, low=0)
    bert_weight: float = param(1e-4, low=0)
    vq_beta: float = param(0.25, low=0)  # codebook="learned" only
    exclude_special: bool = True  # special tokens are never codes
    mlm_head: str = param("train", choices=MLM_HEADS)
    l2_normalize: bool = True  # nearest code by cosine
    table_seed: int = 0  # of codebook="random"
    weight_decay: float = param(5e-4, low=0)
    warmup_fraction: float = param(0.05, low=0, below=1)
    batch_size: int = param(64, low=1)
    max_epochs: int = param(5, low=0)

    def check(self, aligner: str) -> LQAEHParams:
        if self.image_size % self.patch_size:
            raise self.bad(aligner, "patch_size", f"a divisor of image_size={self.image_size}")
        for part in ("encoder", "decoder"):
            if getattr(self, f"{part}_width") % getattr(self, f"{part}_heads"):
                raise self.bad(aligner, f"{part}_heads", f"a divisor of {part}_width={getattr(self, f'{part}_width')}")
        return self


class LQAE(TrainedAligner):
    """Language-quantized autoencoder trained on images alone; images become strings of table tokens.

    ``fit_images(images)`` trains on ``[N, C, S, S]`` pixels in [0, 1]; then ``codes`` / ``token_strings``
    give each image's tokens, ``features`` the probe features, ``reconstruct`` the decoded pixels.
    ``encode_image`` returns the BERT features (token features for ``codebook="learned"``)."""

    name = "lqae"
    config_class = LQAEHParams
    core_class = CORE
    image_input = "pixels"
    text_input = "none"

    def image_input_spec(self) -> ImageInput:
        return ImageInput("pixels", size=self.hparams["image_size"], channels=self.hparams["in_chans"])

    def build(self, shape: Any = None) -> Any:
        """A fresh ``LQAEModule`` (the Lightning module) with these hyper-parameters."""
        hp = self.hparams
        return _module_class()(CORE, self.core_args({}), lr=hp["lr"], weight_decay=hp["weight_decay"],
                               extra=dict(hp), warmup_fraction=hp["warmup_fraction"])

    # ------------------------------------------------------------------ training

    def fit(self, image_features: torch.Tensor, text_features: Any = None) -> LQAE:
        """Train on pixels ``[N, C, S, S]`` in [0, 1] (``image_input`` is ``"pixels"``); any text given
        beside them is ignored: LQAE learns from images alone."""
        return self.fit_images(image_features)

    def fit_images(self, images: torch.Tensor, ckpt_path: str | Path | None = None) -> LQAE:
        """Train encoder, decoder (and MLM head / learned codebook) on unlabelled images; with
        ``checkpoint_dir`` set, a later fit of the same images resumes from its ``last.ckpt``."""
        return self._train("lqae.fit_images", (self._check(images, "lqae.fit_images"),), {}, ckpt_path=ckpt_path)

    def _set_dims(self, module: Any) -> None:
        self.image_dim = self.hparams["in_chans"] * self.hparams["image_size"] ** 2
        self.text_dim = module.core.table.embed_dim

    def _load_shape(self, state: dict[str, torch.Tensor]) -> dict[str, Any]:
        return {}

    def _check(self, images: torch.Tensor, what: str) -> torch.Tensor:
        return check_images(images, what, self.hparams["in_chans"], self.hparams["image_size"])

    def _batches(self, images: torch.Tensor, what: str, batch_size: int = 256) -> list[torch.Tensor]:
        x = self._check(images, what).to(self.core.to_codebook.weight.device)
        return list(x.split(batch_size))

    # ------------------------------------------------------------------ outputs

    @torch.no_grad()
    def codes(self, images: torch.Tensor) -> torch.Tensor:
        """``[N, T]`` table row ids (row-major over the patch grid)."""
        core = self.core
        return torch.cat([core.quantize(core.encode(b)).codes.cpu() for b in self._batches(images, "lqae.codes")])

    def tokens(self, codes: torch.Tensor) -> list[list[str]]:
        """The table's token strings of ``[N, T]`` codes."""
        vocab = load_table(self.hparams["table"]).tokens
        return [[vocab[int(c)] for c in row] for row in codes]

    def token_strings(self, images: torch.Tensor) -> list[str]:
        """Each image as text: its tokens joined the tokenizer's way (WordPiece ``##`` pieces merge)."""
        table = load_table(self.hparams["table"])
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


@ALIGNERS.register(
    "lqae",
    description="Language-quantized autoencoder: a ViT encoder whose patch tokens are snapped to a frozen LM word-"
    "embedding table (straight-through), half masked and denoised by the frozen masked LM, decoded back to "
    "pixels. Trained on images alone: fit_images(images). codebook='random'/'learned': random-table and VQ-VAE "
    "baselines.",
    citation="Liu, Yan & Abbeel, Language Quantized AutoEncoders: Towards Unsupervised Text-Image Alignment, "
    "NeurIPS 2023",
)
def _lqae(**hparams: Any) -> LQAE:
    return LQAE(**hparams)
