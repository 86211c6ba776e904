"""Tiny random encoders for tests and ``align mock-run``: ``toy:cnn``, ``toy:vit``, ``toy:clip``.

Each builds in milliseconds on CPU and is the same for the same ``seed``, without touching the global
RNG. Their heads are random too; the CIFAR-10 ``class_names`` only make ``classify`` testable.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import nn

from align.encoders._common import TOY_CLASS_NAMES, seeded
from align.encoders.base import DataConfig, VisionEncoder
from align.registry import VISION_ENCODERS

_TOY_DATA = DataConfig(input_size=(3, 32, 32), mean=(0.5, 0.5, 0.5), std=(0.5, 0.5, 0.5), crop_pct=1.0)


class ToyCNN(VisionEncoder):
    """Three stride-2 convolutions: 32x32 → a 4x4 grid of ``embed_dim`` tokens, mean-pooled."""

    def __init__(self, embed_dim: int = 32, num_classes: int = len(TOY_CLASS_NAMES)) -> None:
        super().__init__()
        self.name = "toy:cnn"
        self.embed_dim = embed_dim
        self.data_config = _TOY_DATA
        self.class_names = list(TOY_CLASS_NAMES[:num_classes])
        self.trunk = nn.Sequential(
            nn.Conv2d(3, 16, 3, stride=2, padding=1), nn.BatchNorm2d(16), nn.GELU(),
            nn.Conv2d(16, 32, 3, stride=2, padding=1), nn.BatchNorm2d(32), nn.GELU(),
            nn.Conv2d(32, embed_dim, 3, stride=2, padding=1),
        )
        self.head = nn.Linear(embed_dim, num_classes)

    def forward_tokens(self, pixels: torch.Tensor) -> torch.Tensor:
        return self.trunk(pixels).flatten(2).transpose(1, 2)

    def classify(self, pooled: torch.Tensor) -> torch.Tensor:
        return self.head(pooled)


@VISION_ENCODERS.register(
    "toy:cnn", embed_dim=32, license="MIT",
    description="random 3-layer CNN, 32px input, 4x4 grid of 32-d tokens, 10-class head; for tests",
)
def toy_cnn(seed: int = 0, embed_dim: int = 32) -> ToyCNN:
    with seeded(seed):
        return ToyCNN(embed_dim).freeze()  # type: ignore[return-value]


@VISION_ENCODERS.register(
    "toy:vit", embed_dim=32, license="MIT",
    description="random 2-layer timm ViT, 32px input, 16 patch tokens of 32-d, 10-class head; for tests",
)
def toy_vit(seed: int = 0, **kwargs: Any) -> VisionEncoder:
    """A timm ViT through the ``timm:`` adapter, mean-pooled so ``pool(tokens) == forward`` exactly."""
    from align.encoders.timm_models import create_timm

    with seeded(seed):
        encoder = create_timm(
            "vit_tiny_patch16_224", img_size=32, patch_size=8, embed_dim=32, depth=2, num_heads=2,
            num_classes=len(TOY_CLASS_NAMES), global_pool="avg", class_names=list(TOY_CLASS_NAMES),
            pretrained_cfg_overlay=dict(input_size=(3, 32, 32), crop_pct=1.0, interpolation="bilinear"),
            **kwargs,
        )
    encoder.name = "toy:vit"
    return encoder


@VISION_ENCODERS.register(
    "toy:clip", embed_dim=32, license="MIT",
    description="image tower of open_clip:align-tiny-clip (random, seed 0): 32px, 16 patch tokens, 32-d",
)
def toy_clip(normalize: bool = False) -> VisionEncoder:
    """Shares its model with the text side's ``load_open_clip("align-tiny-clip")`` (paired toy CLIP)."""
    from align.encoders.open_clip_models import TINY_CLIP, open_clip_encoder

    encoder = open_clip_encoder(TINY_CLIP, normalize=normalize)
    encoder.name = "toy:clip"
    return encoder
