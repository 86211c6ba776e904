"""Pixel images small models learn fast, shared by the LQAE and resume tests (not a test file)."""

from __future__ import annotations

import torch


def squares(n: int = 48, seed: int = 0) -> torch.Tensor:
    """``[n, 1, 16, 16]`` bright squares (6 x 6, random brightness in [0.5, 1]) at random places on black."""
    g = torch.Generator().manual_seed(seed)
    x = torch.zeros(n, 1, 16, 16)
    for i in range(n):
        r, c = torch.randint(0, 10, (2,), generator=g).tolist()
        x[i, 0, r:r + 6, c:c + 6] = 0.5 + 0.5 * torch.rand((), generator=g)
    return x
