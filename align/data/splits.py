"""What a dataset yields: a :class:`DatasetSplit`, with its labels as :class:`LabelSet`.

A :class:`DatasetSplit` is what the feature cache and the evaluation tasks consume: images loaded
lazily by index, zero or more captions per image, optional integer labels with class names and
prompt templates, optional extra label sets (e.g. emoji subcategories). ``version`` changes whenever
the content or the split recipe changes, so cached features are never silently reused across them.

These types sit below both the dataset interface (:mod:`align.data.base`, which re-exports them:
import them from there or from :mod:`align.data`) and the split recipes (:mod:`align.data.subsample`).
"""

from __future__ import annotations

import difflib
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field

import numpy as np
from PIL import Image

from align.errors import BadInputError


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

    def label_set(self, name: str | None = None) -> LabelSet:
        """The main labels (``name=None``) or the extra label set ``name``; a one-line
        :class:`BadInputError` naming the dataset, the split, the label set and the valid ones otherwise."""
        if name is None:
            if self.labels is None:
                raise BadInputError(f"dataset {self.dataset!r}, split {self.split!r}: has no labels "
                                    "(a classification task needs them)")
            return self.labels
        if name not in self.extra_labels:
            raise BadInputError(unknown_label_set(self.dataset, name, tuple(self.extra_labels), split=self.split))
        return self.extra_labels[name]


def unknown_label_set(dataset: str, name: str, known: Sequence[str], split: str | None = None) -> str:
    """The message for a label set ``name`` that ``dataset`` does not have: what it has instead."""
    where = f"dataset {dataset!r}" + (f", split {split!r}" if split is not None else "")
    if not known:
        return f"{where}: no label set {name!r} (it has no extra label sets: leave label_set out for the main labels)"
    close = difflib.get_close_matches(name, list(known), n=1, cutoff=0.5)
    hint = f"; did you mean {close[0]!r}?" if close else ""
    return (f"{where}: no label set {name!r} (label sets: {', '.join(known)}; "
            f"leave label_set out for the main labels){hint}")
