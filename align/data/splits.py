"""What a dataset yields: a :class:`DatasetSplit`, with its labels as :class:`LabelSet`.

A :class:`DatasetSplit` is what the feature cache and the evaluation tasks consume: images loaded
lazily by index, zero or more captions per image, optional integer labels with class names and
prompt templates, optional extra label sets (e.g. emoji subcategories). ``version`` changes whenever
the content or the split recipe changes, so cached features are never silently reused across them.

These types sit below both the dataset interface (:mod:`align.data.base`, which re-exports them:
import them from there or from :mod:`align.data`) and the split recipes (:mod:`align.data.subsample`).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field

import numpy as np
from PIL import Image


@dataclass(frozen=True)
class LabelSet:
    """Integer labels over the split's images, with the names of the classes they index."""

    labels: np.ndarray  # [N] int64, values in range(len(class_names))
    class_names: Sequence[str]
    templates: Sequence[str] = ("a photo of a {c}.",)  # prompt templates, "{c}" is the class name


@dataclass(frozen=True)
class DatasetSplit:
    dataset: str  # registry name, e.g. "emoji.google", "folder:/data/pets"
    split: str  # e.g. "train", "test", "anchors", "test@1000" (subsamples keep their "@N")
    version: str  # content + split recipe version; part of every cache key
    num_items: int
    load_image: Callable[[int], Image.Image]  # L, RGB or RGBA PIL image for item i (RGBA kept as is)
    captions: Sequence[Sequence[str]] | None = None  # captions[i]: every caption of image i
    labels: LabelSet | None = None  # the main class labels, when the dataset has them
    extra_labels: Mapping[str, LabelSet] = field(default_factory=dict)  # e.g. {"subcategory": ...}
    item_ids: Sequence[str] | None = None  # stable ids (file names, emoji codes) for explanations
    skipped: int = 0  # rows dropped by --skip-bad while loading

    def __len__(self) -> int:
        return self.num_items
