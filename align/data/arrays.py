"""Splits over in-memory uint8 greyscale arrays (digits, MNIST, Fashion-MNIST)."""

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
    """A split whose item ``i`` is ``images[i]`` (``[N, H, W]`` uint8) as an 8-bit ``L`` image."""
    if images.dtype != np.uint8 or images.ndim != 3 or not len(images) == len(labels) == len(item_ids):
        raise ValueError(f"{dataset}/{split}: expected [N, H, W] uint8 images with N labels and ids")

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
