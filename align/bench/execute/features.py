"""Turning dataset splits into the feature matrices a benchmark row needs (all through the cache)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch

from align.bench.execute.phases import PhaseClock
from align.data.base import DatasetSplit, LabelSet
from align.data.pixels import images_tensor
from align.errors import AlignError, BadInputError, EncoderUnavailable
from align.features.cache import FeatureCache, image_features, image_tokens, text_features
from align.methods.framework.base import Aligner, ImageInput


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


class SplitInputs:
    """One split's image inputs under one image encoder, each kind computed on first use and kept:
    pooled features and token grids through the feature cache, pixels decoded from the images.

    A part of a split (a validation part carved from a fit split) is ``part(rows, split)``: its
    inputs are those rows of the whole split's tensors, never a second cache entry, and ``split`` is
    the part's own view (labels and captions of those rows, e.g. from ``subsample.select``)."""

    def __init__(self, split: DatasetSplit, bank: FeatureBank, image_encoder: str, *,
                 source: SplitInputs | None = None, rows: torch.Tensor | None = None) -> None:
        self.split, self.bank, self.image_encoder = split, bank, image_encoder
        self.source, self.rows = source, rows
        self._inputs: dict[ImageInput, torch.Tensor] = {}

    def part(self, rows: torch.Tensor, split: DatasetSplit) -> SplitInputs:
        """The inputs of ``rows`` of this split; ``split`` describes them (same order, ``len(rows)`` items)."""
        if split.num_items != len(rows):
            raise ValueError(f"{split.dataset}/{split.split}: {split.num_items} items for {len(rows)} rows")
        return SplitInputs(split, self.bank, self.image_encoder, source=self, rows=rows)

    def __len__(self) -> int:
        return self.split.num_items

    def _whole(self, spec: ImageInput) -> torch.Tensor:
        if self.source is not None:
            return self.source.get(spec)[self.rows]
        if spec.kind == "pooled":
            return self.bank.images(self.image_encoder, self.split)
        if spec.kind == "tokens":
            return self.bank.tokens(self.image_encoder, self.split)
        return self.bank.pixels(self.split, spec)

    def get(self, spec: ImageInput) -> torch.Tensor:
        """The images of this split (its ``rows``) as ``spec`` asks."""
        if spec not in self._inputs:
            self._inputs[spec] = self._whole(spec)
        return self._inputs[spec]

    @property
    def images(self) -> torch.Tensor:
        """Pooled features ``[N, D]`` (what most aligners and the older API take)."""
        return self.get(ImageInput("pooled"))

    def for_aligner(self, aligner: Aligner) -> torch.Tensor:
        """The image input ``aligner`` declares (``Aligner.image_input_spec``)."""
        return self.get(aligner.image_input_spec())


class FeatureBank:
    """Builds encoders once per run and hands out cached features."""

    def __init__(self, cache: FeatureCache | None = None, progress: bool = True,
                 clock: PhaseClock | None = None) -> None:
        self.cache = cache or FeatureCache()
        self.progress = progress
        self.clock = clock or PhaseClock()  # the run's wall time by phase (:mod:`align.bench.execute.phases`)
        self._encoders: dict[tuple[str, str], Any] = {}
        self._pixels: dict[tuple[Any, ...], torch.Tensor] = {}

    def __getstate__(self) -> dict[str, Any]:
        """Sent to another process (a Ray worker) without its built encoders and decoded pixels: the
        worker builds what it needs, and reads features from the same cache folder."""
        return {**self.__dict__, "_encoders": {}, "_pixels": {}}

    def encoder(self, kind: str, name: str) -> Any:
        """The ``kind`` ("image" or "text") encoder ``name``, built once per run (one that cannot be built:
        :class:`EncoderUnavailable`)."""
        return self._encoder(kind, name)

    def _encoder(self, kind: str, name: str) -> Any:
        from align.registry import TEXT_ENCODERS, VISION_ENCODERS

        if (kind, name) not in self._encoders:
            registry = VISION_ENCODERS if kind == "image" else TEXT_ENCODERS
            try:
                with self.clock.phase("build encoders"):
                    self._encoders[(kind, name)] = registry.create(name)
            except EncoderUnavailable:
                raise
            except AlignError as err:
                raise EncoderUnavailable(kind, str(err)) from None
        return self._encoders[(kind, name)]

    def images(self, encoder: str, split: DatasetSplit) -> torch.Tensor:
        with self.clock.phase("image features"):
            return image_features(encoder, split, cache=self.cache, encoder=self._encoder("image", encoder),
                                  progress=self.progress)

    def tokens(self, encoder: str, split: DatasetSplit) -> torch.Tensor:
        """Spatial token grids ``[N, T, D]`` (stored as float16 in the cache)."""
        with self.clock.phase("image features"):
            return image_tokens(encoder, split, cache=self.cache, encoder=self._encoder("image", encoder),
                                progress=self.progress)

    def pixels(self, split: DatasetSplit, spec: ImageInput) -> torch.Tensor:
        """Images as ``[N, channels, size, size]`` floats in [0, 1], decoded once per run (cheap at
        these sizes, so not cached on disk)."""
        key = (split.dataset, split.version, split.split, spec.size, spec.channels)
        if key not in self._pixels:
            with self.clock.phase("image features"):
                self._pixels[key] = images_tensor(split, size=spec.size, channels=spec.channels)
        return self._pixels[key]

    def texts(self, encoder: str, texts: Sequence[str], split: DatasetSplit, what: str) -> torch.Tensor:
        """Features of ``texts`` (``what`` names them: captions, prompts); no model load on a cache hit."""
        with self.clock.phase("text features"):
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
