"""Seeded split recipes shared by every dataset: ``NAME@N`` subsamples and stratified halves.

Orders come from hashing ``f"{seed}:{key}"`` with SHA-256 (``key`` = the item's stable id), not from
a NumPy generator: the result is the same on every platform and NumPy version, and an item's place
does not depend on which other items exist, so adding or skipping one item barely moves the rest.

``NAME@N`` recipe (:data:`SUBSAMPLE_RECIPE`): with labels, class ``c`` gets ``N * n_c / n`` items
rounded by largest remainder (ties to the lower class index), each class taking its items in seeded
order; without labels, the first ``N`` items in seeded order. The chosen items keep the parent
split's order. The subsample's ``version`` is the parent's plus ``+sub1``.
"""

from __future__ import annotations

import dataclasses
import hashlib
import re
from collections.abc import Sequence

import numpy as np
from PIL import Image

from align.data.splits import DatasetSplit, LabelSet
from align.errors import BadInputError

SEED = 0
SUBSAMPLE_RECIPE = "sub1"
_AT_N = re.compile(r"^(?P<base>[^@]+)@(?P<n>\d+)$")


def seeded_order(keys: Sequence[str], seed: int = SEED) -> np.ndarray:
    """Permutation that sorts ``keys`` by ``sha256(f"{seed}:{key}")`` (ties by position)."""
    digests = b"".join(hashlib.sha256(f"{seed}:{key}".encode()).digest()[:8] for key in keys)
    ranks = np.frombuffer(digests, dtype=">u8")
    return np.argsort(ranks, kind="stable")


def item_keys(split: DatasetSplit) -> list[str]:
    """Keys that seed a split's orders: its item ids, or positions when it has none."""
    return list(split.item_ids) if split.item_ids is not None else [str(i) for i in range(len(split))]


def allocate(class_counts: np.ndarray, n: int) -> np.ndarray:
    """Per-class quotas summing to ``n``, proportional to ``class_counts`` (largest remainder)."""
    counts = np.asarray(class_counts, dtype=np.int64)
    total = int(counts.sum())
    quotas, remainder = np.divmod(counts * n, total)  # exact integer arithmetic, no float ties
    order = np.lexsort((np.arange(len(counts)), -remainder))  # biggest remainder first
    quotas[order[: n - int(quotas.sum())]] += 1
    return quotas


def _by_class(labels: np.ndarray | None, keys: Sequence[str], seed: int) -> list[np.ndarray]:
    """Item indices of each class (one group when unlabelled), each in seeded order."""
    order = seeded_order(keys, seed)
    if labels is None:
        return [order]
    ordered_labels = np.asarray(labels)[order]
    return [order[ordered_labels == c] for c in range(int(ordered_labels.max(initial=-1)) + 1)]


def subsample_indices(labels: np.ndarray | None, keys: Sequence[str], n: int, seed: int = SEED) -> np.ndarray:
    """Sorted indices of a seeded subsample of ``n`` items, stratified by ``labels`` when given."""
    if not 0 <= n <= len(keys):
        raise ValueError(f"cannot take {n} of {len(keys)} items")
    groups = _by_class(labels, keys, seed)
    quotas = allocate(np.array([len(g) for g in groups]), n) if len(keys) else np.zeros(len(groups), int)
    chosen = [g[:q] for g, q in zip(groups, quotas)]
    return np.sort(np.concatenate(chosen)) if chosen else np.zeros(0, np.int64)


def stratified_halves(
    labels: np.ndarray | None, keys: Sequence[str], seed: int = SEED
) -> tuple[np.ndarray, np.ndarray]:
    """Seeded 50/50 split, per class when labelled: the first ``ceil(n_c / 2)`` items of each class in
    seeded order go to the first half. Both halves are sorted (they keep the source order)."""
    groups = _by_class(labels, keys, seed)
    first = [g[: (len(g) + 1) // 2] for g in groups]
    second = [g[(len(g) + 1) // 2:] for g in groups]
    empty = np.zeros(0, np.int64)
    return (np.sort(np.concatenate(first)) if first else empty, np.sort(np.concatenate(second)) if second else empty)


def select(split: DatasetSplit, indices: np.ndarray, name: str, version: str | None = None) -> DatasetSplit:
    """The items ``indices`` of ``split`` as a split called ``name`` (labels, captions, ids follow)."""
    idx = np.asarray(indices, dtype=np.int64)
    parent_load = split.load_image

    def load_image(i: int) -> Image.Image:
        return parent_load(int(idx[i]))

    def take_labels(label_set: LabelSet) -> LabelSet:
        return dataclasses.replace(label_set, labels=np.asarray(label_set.labels)[idx])

    return dataclasses.replace(
        split,
        split=name,
        version=split.version if version is None else version,
        num_items=len(idx),
        load_image=load_image,
        captions=None if split.captions is None else [split.captions[i] for i in idx],
        labels=None if split.labels is None else take_labels(split.labels),
        extra_labels={key: take_labels(value) for key, value in split.extra_labels.items()},
        item_ids=None if split.item_ids is None else [split.item_ids[i] for i in idx],
    )


def subsample(split: DatasetSplit, n: int, seed: int = SEED) -> DatasetSplit:
    """``split@n``: see the module docstring for the recipe."""
    if n > len(split):
        raise BadInputError(
            f"dataset {split.dataset!r}: split {split.split!r} has {len(split)} items, fewer than "
            f"{split.split}@{n} asks for (at most {split.split}@{len(split)})")
    labels = None if split.labels is None else np.asarray(split.labels.labels)
    indices = subsample_indices(labels, item_keys(split), n, seed)
    return select(split, indices, f"{split.split}@{n}", f"{split.version}+{SUBSAMPLE_RECIPE}")


def parse_split(split: str) -> tuple[str, int | None]:
    """``"test@1000"`` → ``("test", 1000)``; ``"test"`` → ``("test", None)``."""
    if "@" not in split:
        return split, None
    match = _AT_N.match(split)
    if match is not None and int(match["n"]) == 0:
        raise BadInputError(f"split {split!r} asks for 0 items: expected NAME or NAME@N with N a positive integer")
    if match is None:
        raise BadInputError(f"split {split!r}: expected NAME or NAME@N with N a positive integer")
    return match["base"], int(match["n"])
