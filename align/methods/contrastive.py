"""Trained linear heads with the symmetric InfoNCE loss: the CLIP- and LiT-style baselines.

With frozen encoders the only trainable parts are linear heads on the features, trained on the N
pairs with CLIP's loss: L2-normalised outputs, cosine logits times a learnable scale (initialised to
``1/0.07`` and clamped at 100, as CLIP), cross-entropy in both directions. ``heads`` picks the sides:

- ``"image"`` (default): a head on the image side only; text features stay as they are, so the
  shared space is the text space (``dim`` = text dim) and texts embedded once can be reused.
- ``"both"``: CLIP-style, a head on each side into a shared ``dim`` (default ``min(Di, Dt)``).
- ``"text"``: a head on the text side only; shared space = the image space (``dim`` = image dim).
  This is the direction of the LiT paper (locked image tower, tuned text tower).

Why ``"image"`` is the default: LiT's finding is that locking a pretrained tower and tuning only the
other one transfers better than training both, because the locked space keeps the structure it
learnt from far more data than the N pairs. Here the text space is the one to keep: sentence
encoders put unseen names and captions in meaningful places (the benchmark scores concept-disjoint
and held-out classes), a single head has fewer parameters to fit on ~1000 pairs, and the shared
space is the same as ridge's, which makes the two directly comparable.

A trained side is centred and divided by one scalar (the root mean per-feature variance of the fit
rows) before its head. This is a reparametrisation of an affine head that makes one learning rate
suit encoders whose features differ in offset and scale by orders of magnitude (MobileNetV2's
post-ReLU features vs unit-norm sentence embeddings); the statistics are saved with the weights.

Training runs through Lightning (:mod:`align.methods.framework.trained`): optional checkpoints in
``checkpoint_dir``, from which a later fit on the same pairs resumes exactly (or ``fit(...,
ckpt_path=...)``); two fits with the same seed give identical weights, and a fit leaves the caller's
RNG state as it was. ``val_fraction`` holds out a
seeded part of the pairs to record a validation loss per epoch; ``patience`` adds early stopping on it
(returning the best epoch's weights).

Defaults: AdamW, batch 256, all pairs, no early stopping; lr, weight decay and the number of epochs
were chosen on validation parts of the default benchmark's fit splits (``configs/bench/sweeps.yaml``;
the README's "How the defaults were chosen" says how and what the sweep found). Early stopping on
the validation InfoNCE loss is off by default: the held-out loss turns up (the model grows
over-confident) while the ranking still improves. ``"image"`` heads are the default for the
argument above: only the image side is trained into a text space that already separates the words.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch import nn

from align.errors import BadInputError
from align.methods.framework.base import check_features, check_pairs
from align.methods.framework.distributed import gather_rows
from align.methods.framework.hparams import MAX_EPOCHS, MAX_ROWS, MAX_WIDTH, param
from align.methods.framework.trained import TrainedAligner, TrainedHParams
from align.registry import ALIGNERS

HEADS = ("image", "both", "text")
INIT_LOGIT_SCALE = math.log(1 / 0.07)  # CLIP's initial temperature 0.07
MAX_LOGIT_SCALE = math.log(100.0)  # CLIP clips the logit scale at 100


def info_nce(image: torch.Tensor, text: torch.Tensor, logit_scale: torch.Tensor) -> torch.Tensor:
    """CLIP's symmetric loss for row-aligned, L2-normalised ``[B, D]`` embeddings: the mean of the
    image->text and text->image cross-entropies of ``exp(logit_scale) * cosine`` logits."""
    logits = logit_scale.exp() * image @ text.T
    targets = torch.arange(len(image), device=image.device)
    return (nn.functional.cross_entropy(logits, targets) + nn.functional.cross_entropy(logits.T, targets)) / 2


def shared_dim(image_dim: int, text_dim: int, heads: str, dim: int | None) -> int:
    """The width of the shared space for a ``heads`` mode (``dim`` only chooses it for ``"both"``)."""
    if heads == "both":
        return dim if dim is not None else min(image_dim, text_dim)
    fixed = text_dim if heads == "image" else image_dim
    if dim is not None and dim != fixed:
        side = "text" if heads == "image" else "image"
        raise BadInputError(f"contrastive: heads={heads!r} embeds into the {side} space of dimension {fixed}; "
                            f"dim={dim} is only free with heads='both' (leave dim unset)")
    return fixed


class ContrastiveHeads(nn.Module):
    """The trainable core: standardisation + linear head per trained side, and the logit scale.
    ``forward(x, y)`` is the training loss; ``encode_*`` give L2-normalised embeddings."""

    def __init__(self, image_dim: int, text_dim: int, heads: str = "image", dim: int | None = None) -> None:
        super().__init__()
        self.heads = heads
        self.dim = shared_dim(image_dim, text_dim, heads, dim)
        self.image_head = nn.Linear(image_dim, self.dim) if heads in ("image", "both") else None
        self.text_head = nn.Linear(text_dim, self.dim) if heads in ("text", "both") else None
        for side, width in (("image", image_dim), ("text", text_dim)):
            if getattr(self, f"{side}_head") is not None:
                self.register_buffer(f"{side}_mean", torch.zeros(width))
                self.register_buffer(f"{side}_scale", torch.ones(()))
        self.logit_scale = nn.Parameter(torch.tensor(INIT_LOGIT_SCALE))

    def set_standardisation(self, image: torch.Tensor, text: torch.Tensor) -> None:
        """Centre and scale of each trained side, from the rows the heads are fit on."""
        for side, rows in (("image", image), ("text", text)):
            if getattr(self, f"{side}_head") is None:
                continue
            mean = rows.mean(0)
            scale = (rows - mean).pow(2).mean().sqrt()
            if not scale > 0:
                raise BadInputError(f"contrastive.fit: {side} features are constant across all pairs; nothing to learn")
            getattr(self, f"{side}_mean").copy_(mean)
            getattr(self, f"{side}_scale").copy_(scale)

    def _embed(self, rows: torch.Tensor, side: str) -> torch.Tensor:
        head = getattr(self, f"{side}_head")
        if head is not None:
            rows = head((rows - getattr(self, f"{side}_mean")) / getattr(self, f"{side}_scale"))
        return nn.functional.normalize(rows, dim=-1)

    def encode_image(self, image: torch.Tensor) -> torch.Tensor:
        return self._embed(image, "image")

    def encode_text(self, text: torch.Tensor) -> torch.Tensor:
        return self._embed(text, "text")

    def forward(self, image: torch.Tensor, text: torch.Tensor) -> torch.Tensor:
        """The loss of the batch; under data parallelism, of the global batch while training (every
        process's rows are negatives, ``align.methods.distributed``). Validation batches are whole on
        every process, so they are not gathered."""
        image, text = self.encode_image(image), self.encode_text(text)
        if self.training:
            image, text = gather_rows(image), gather_rows(text)
        return info_nce(image, text, self.logit_scale)

    @torch.no_grad()
    def after_step(self) -> None:
        """Keep the logit scale in [0, log 100] after each optimiser step (open_clip's clamp)."""
        self.logit_scale.clamp_(0, MAX_LOGIT_SCALE)


@dataclass(frozen=True)
class ContrastiveHParams(TrainedHParams):
    heads: str = param("image", choices=HEADS)
    dim: int | None = param(None, low=1, high=MAX_WIDTH)  # shared width, heads="both" only
    # lr, weight_decay, max_epochs: chosen on validation parts (README "How the defaults were chosen")
    lr: float = param(3e-3, above=0)
    weight_decay: float = param(0.01, low=0)
    batch_size: int = param(256, low=2, high=MAX_ROWS, why="InfoNCE needs negatives")
    max_epochs: int = param(10, low=0, high=MAX_EPOCHS)
    val_fraction: float = param(0.0, low=0, below=1)  # held-out pairs for a validation loss per epoch
    patience: int | None = param(None, low=1, high=MAX_EPOCHS)  # early stopping on the validation loss (epochs without gain)

    def check(self, aligner: str) -> ContrastiveHParams:
        if self.patience is not None and self.val_fraction == 0:
            raise self.bad(aligner, "patience", "None when val_fraction is 0 (early stopping watches the validation loss)")
        return self


@ALIGNERS.register(
    "contrastive",
    description="Linear heads trained with CLIP's symmetric InfoNCE loss (learnable temperature). "
    "heads='image' (default): image head into the frozen text space; 'both': CLIP-style heads on both sides; "
    "'text': text head into the frozen image space (LiT's direction).",
    citation="Zhai et al., LiT: Zero-Shot Transfer with Locked-image text Tuning, CVPR 2022; "
    "Radford et al., Learning Transferable Visual Models From Natural Language Supervision (CLIP), ICML 2021",
)
class ContrastiveAligner(TrainedAligner):
    """Linear heads trained with symmetric InfoNCE (CLIP / LiT-style baselines on the same pairs)."""

    name = "contrastive"
    config_class = ContrastiveHParams
    config: ContrastiveHParams
    core_class = ContrastiveHeads

    def early_stopping_patience(self) -> int | None:
        return self.config.patience

    def fit(self, image_features: torch.Tensor, text_features: torch.Tensor,
            ckpt_path: str | Path | None = None) -> ContrastiveAligner:
        """Train the heads on N pairs; ``ckpt_path`` resumes from a Lightning checkpoint of this fit."""
        from align.methods.framework.data import split_sizes

        hp = self.config
        need = 4 if hp.val_fraction > 0 else 2  # InfoNCE needs 2 rows to train on (and 2 held out)
        x, y = check_pairs(image_features, text_features, "contrastive.fit", min_pairs=need)
        n_train, _ = split_sizes(len(x), hp.val_fraction)
        if n_train < 2:
            raise BadInputError(f"contrastive.fit: val_fraction={hp.val_fraction} leaves {n_train} training "
                                f"pair(s) of {len(x)}; InfoNCE needs at least 2")
        shared_dim(x.shape[1], y.shape[1], hp.heads, hp.dim)  # a bad dim fails before training

        def standardise(core: ContrastiveHeads, data: Any) -> None:
            core.set_standardisation(x[data.train_rows], y[data.train_rows])

        return self._train("contrastive.fit", (x, y), dict(image_dim=x.shape[1], text_dim=y.shape[1]),
                           prepare=standardise, val_fraction=hp.val_fraction, ckpt_path=ckpt_path)

    def _set_dims(self, module: Any) -> None:
        self.image_dim, self.text_dim = module.hparams.core_args["image_dim"], module.hparams.core_args["text_dim"]

    def _load_shape(self, state: dict[str, torch.Tensor]) -> dict[str, Any]:
        image_dim, text_dim = self._require_fitted()
        return dict(image_dim=image_dim, text_dim=text_dim)

    # ------------------------------------------------------------------ embedding

    @torch.no_grad()
    def encode_image(self, image_features: torch.Tensor) -> torch.Tensor:
        """L2-normalised ``[M, dim]`` embeddings."""
        image_dim, _ = self._require_fitted()
        return self.core.encode_image(check_features(image_features, "contrastive.encode_image", image_dim))

    @torch.no_grad()
    def encode_text(self, text_features: torch.Tensor) -> torch.Tensor:
        """L2-normalised ``[M, dim]`` embeddings (with heads="image": the text features, normalised)."""
        _, text_dim = self._require_fitted()
        return self.core.encode_text(check_features(text_features, "contrastive.encode_text", text_dim))
