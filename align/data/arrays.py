"""Splits over in-memory uint8 image arrays: greyscale (digits, MNIST, Fashion-MNIST) or RGB (CIFAR)."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
from PIL import Image

from align.data.base import DatasetSplit, LabelSet

DIGIT_NAMES = ("zero", "one", "two", "three", "four", "five", "six", "seven", "eight", "nine")


def array_split(
    *,
    dataset: str,
    split: str,
    version: str,
    images: np.ndarray,
    labels: np.ndarray,
    class_names: Sequence[str],
    templates: Sequence[str],
    item_ids: Sequence[str],
) -> DatasetSplit:
    """A split whose item ``i`` is ``images[i]``: ``[N, H, W]`` uint8 as an ``L`` image, ``[N, H, W, 3]`` as ``RGB``."""
    rgb = images.ndim == 4 and images.shape[3] == 3
    if images.dtype != np.uint8 or not (images.ndim == 3 or rgb) or not len(images) == len(labels) == len(item_ids):
        raise ValueError(f"{dataset}/{split}: expected [N, H, W] or [N, H, W, 3] uint8 images with N labels and ids")

    def load_image(i: int) -> Image.Image:
        return Image.fromarray(images[i])

    return DatasetSplit(
        dataset=dataset,
        split=split,
        version=version,
        num_items=len(images),
        load_image=load_image,
        labels=LabelSet(np.asarray(labels, dtype=np.int64), tuple(class_names), tuple(templates)),
        item_ids=list(item_ids),
    )
