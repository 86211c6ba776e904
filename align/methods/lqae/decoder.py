"""LQAE's pixel decoder: a small ViT from token vectors (the LM's states, or the quantized tokens of
the VQ-VAE baseline) back to pixels, one patch per token."""

from __future__ import annotations

import torch
from torch import nn


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
