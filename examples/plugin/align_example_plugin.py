"""A third-party vision encoder for align: one file, one decorator, one entry point.

Install this folder (``pip install examples/plugin``) and ``align list encoders`` shows
``example:mean-color``; its ``pyproject.toml`` declares the ``align.plugins`` entry point.
"""

from __future__ import annotations

import torch

from align.encoders.base import DataConfig, VisionEncoder
from align.registry import VISION_ENCODERS


class MeanColor(VisionEncoder):
    """Average colour of each 8x8 patch: a weight-free encoder, useful as a floor in benchmarks."""

    name = "example:mean-color"
    embed_dim = 3
    data_config = DataConfig(input_size=(3, 32, 32), mean=(0.5, 0.5, 0.5), std=(0.5, 0.5, 0.5), crop_pct=1.0)

    def forward_tokens(self, pixels: torch.Tensor) -> torch.Tensor:
        patches = torch.nn.functional.avg_pool2d(pixels, kernel_size=8)  # [B, 3, 4, 4]
        return patches.flatten(2).transpose(1, 2)  # [B, 16, 3]


@VISION_ENCODERS.register("example:mean-color", embed_dim=3, license="MIT", description="mean colour of 8x8 patches")
def mean_color() -> MeanColor:
    return MeanColor()
