"""Pixel-identical images, found by a hash of the decoded pixels, so no image sits on both sides of a split.

A dataset can hold one picture under two names (emoji: "family: man, man, boy" and "family: adult,
adult, child" in some styles, flags of territories that use their country's flag). When the two land
in different halves of a split, an aligner fitted on one half has seen a test image, which a
concept-disjoint split promises it has not. The decoded pixels are hashed (mode, size and bytes),
not the files: two PNG encoders write different bytes for the same picture.

A source whose recipe could split a duplicate fixes it where it builds the split (emoji drops the fit
side's copy); ``tests/integration/test_no_shared_images.py`` checks every built-in split pair with
:func:`shared_images`, and :func:`check_no_shared_images` does the same for any two splits. A user's
copy (COCO, Flickr, ImageNet, CIFAR, their own pairs) is checked by the run that reads it, which counts
what it finds and keeps it (:mod:`align.data.shared_images` says why).
"""

from __future__ import annotations

import hashlib
from collections import defaultdict
from collections.abc import Sequence

from PIL import Image

from align.data.splits import DatasetSplit
from align.errors import BadInputError


def pixel_hash(image: Image.Image) -> str:
    """sha256 of an image's mode, size and decoded pixel bytes: equal exactly when the pixels are."""
    sha = hashlib.sha256(f"{image.mode}:{image.size[0]}x{image.size[1]}:".encode())
    sha.update(image.tobytes())
    return sha.hexdigest()


def pixel_hashes(split: DatasetSplit) -> list[str]:
    """:func:`pixel_hash` of every image of ``split``, in item order (each image decoded once)."""
    return [pixel_hash(split.load_image(i)) for i in range(len(split))]


def duplicate_groups(hashes: Sequence[str]) -> list[list[int]]:
    """Rows that share a hash, each group in row order (groups of two or more only)."""
    rows: dict[str, list[int]] = defaultdict(list)
    for row, value in enumerate(hashes):
        rows[value].append(row)
    return [group for group in rows.values() if len(group) > 1]


def shared_images(fit: DatasetSplit, test: DatasetSplit) -> list[tuple[int, int]]:
    """``(fit row, test row)`` for every pair of pixel-identical images across the two splits."""
    return shared_rows(pixel_hashes(fit), pixel_hashes(test))


def shared_rows(fit: Sequence[str], test: Sequence[str]) -> list[tuple[int, int]]:
    """``(fit row, test row)`` for every pair of equal hashes across two splits' :func:`pixel_hashes`."""
    by_hash: dict[str, list[int]] = defaultdict(list)
    for row, value in enumerate(fit):
        by_hash[value].append(row)
    return [(f, t) for t, value in enumerate(test) for f in by_hash.get(value, ())]


def item_name(split: DatasetSplit, row: int) -> str:
    """How a row is named in messages: its item id, else ``#row``."""
    return str(split.item_ids[row]) if split.item_ids is not None else f"#{row}"


def check_no_shared_images(fit: DatasetSplit, test: DatasetSplit) -> None:
    """A one-line :class:`BadInputError` when an image of ``test`` is pixel-identical to one of ``fit``."""
    pairs = shared_images(fit, test)
    if pairs:
        f, t = pairs[0]
        raise BadInputError(
            f"{fit.dataset}: {len(pairs)} image(s) of split {test.split!r} are pixel-identical to images of "
            f"{fit.split!r} (first: {item_name(test, t)} = {item_name(fit, f)}); a test image seen while fitting")
