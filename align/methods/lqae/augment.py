"""Training-time augmentation for LQAE: random resized crop + horizontal flip, as the official run
(``RandomResizedCrop(scale=(0.2, 1))`` + flip, papers.md §4.4), on pixel tensors.

Each image gets its own crop and flip (torchvision's v2 transforms draw one set of parameters per call,
so they are applied image by image), drawn from a generator seeded by ``seed``: the same seed gives the
same pixels. Bilinear resizing (the paper's bicubic overshoots [0, 1] on small images), clamped to [0, 1].
"""

from __future__ import annotations

import torch


def augment(images: torch.Tensor, seed: int, min_scale: float = 0.2) -> torch.Tensor:
    """``images [N, C, S, S]`` in [0, 1], each randomly cropped (area fraction in ``[min_scale, 1]``,
    aspect 3/4..4/3), resized back to ``S x S`` and flipped with probability 1/2."""
    from torchvision.transforms import v2

    size = tuple(images.shape[-2:])
    transform = v2.Compose([v2.RandomResizedCrop(size, scale=(min_scale, 1.0), antialias=True),
                            v2.RandomHorizontalFlip()])
    with torch.random.fork_rng(devices=[]):  # v2 draws from the global CPU generator; leave the caller's alone
        torch.manual_seed(seed)
        out = torch.stack([transform(image) for image in images])
    return out.clamp_(0, 1)
