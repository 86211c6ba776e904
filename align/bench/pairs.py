"""Turning dataset splits into the feature matrices a benchmark row needs (all through the cache)."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import torch

from align.data.base import DatasetSplit, LabelSet
from align.errors import BadInputError
from align.features.cache import FeatureCache, image_features, text_features


def fit_captions(split: DatasetSplit) -> tuple[list[str], str]:
    """One caption per image to pair with it, and how they were made (recorded in results).

    Captioned datasets use each image's first caption; labelled ones build a caption from the class
    name with the templates in turn (image i gets template i mod T), so the pairs are deterministic.
    """
    if split.captions is not None:
        return [caps[0] for caps in split.captions], "first caption of each image"
    if split.labels is None:
        raise BadInputError(f"{split.dataset}/{split.split}: no captions and no labels to pair images with")
    names, templates = split.labels.class_names, split.labels.templates
    captions = [templates[i % len(templates)].format(c=names[int(label)])
                for i, label in enumerate(split.labels.labels)]
    return captions, "class-name captions from the templates (classes seen while fitting)"


def label_set(split: DatasetSplit, name: str | None) -> LabelSet:
    if name is None:
        if split.labels is None:
            raise BadInputError(f"{split.dataset}/{split.split}: has no labels for a classification task")
        return split.labels
    if name not in split.extra_labels:
        known = ", ".join(sorted(split.extra_labels)) or "none"
        raise BadInputError(f"{split.dataset}/{split.split}: no label set {name!r} (has: {known})")
    return split.extra_labels[name]


@dataclass
class SplitFeatures:
    """Cached features of one split under one image encoder and one text encoder."""

    split: DatasetSplit
    images: torch.Tensor  # [N, Di]
    captions: torch.Tensor | None = None  # [M, Dt] every caption, flattened
    caption_image: torch.Tensor | None = None  # [M] index of the image each caption belongs to


class FeatureBank:
    """Builds encoders once per run and hands out cached features."""

    def __init__(self, cache: FeatureCache | None = None, progress: bool = True) -> None:
        self.cache = cache or FeatureCache()
        self.progress = progress
        self._encoders: dict[tuple[str, str], Any] = {}

    def _encoder(self, kind: str, name: str) -> Any:
        from align.registry import TEXT_ENCODERS, VISION_ENCODERS

        if (kind, name) not in self._encoders:
            registry = VISION_ENCODERS if kind == "image" else TEXT_ENCODERS
            self._encoders[(kind, name)] = registry.create(name)
        return self._encoders[(kind, name)]

    def images(self, encoder: str, split: DatasetSplit) -> torch.Tensor:
        return image_features(encoder, split, cache=self.cache, encoder=self._encoder("image", encoder),
                              progress=self.progress)

    def texts(self, encoder: str, texts: Sequence[str], split: DatasetSplit, what: str) -> torch.Tensor:
        """Features of ``texts`` (``what`` names them: captions, prompts); no model load on a cache hit."""
        return text_features(encoder, texts, dataset=split.dataset, version=split.version,
                             split=f"{split.split}:{what}", cache=self.cache,
                             make_encoder=lambda: self._encoder("text", encoder), progress=self.progress)


def flat_captions(split: DatasetSplit) -> tuple[list[str], torch.Tensor]:
    """Every caption of the split in order, and the index of the image each belongs to."""
    if split.captions is None:
        raise BadInputError(f"{split.dataset}/{split.split}: has no captions for retrieval or captioning")
    flat = [caption for caps in split.captions for caption in caps]
    owner = torch.tensor([i for i, caps in enumerate(split.captions) for _ in caps], dtype=torch.long)
    return flat, owner
