"""No pixel-identical image on both sides of any built-in split (fit side / test side), on the real data.

Every pair of splits a built-in dataset offers for fitting and scoring is hashed image by image
(:func:`align.data.duplicates.shared_images`); tests/unit/test_duplicates.py plants a shared image and
sees it caught by the same function.
"""

from __future__ import annotations

import pytest
from conftest import need_asset

from align.data.duplicates import check_no_shared_images
from align.registry import DATASETS

pytestmark = [pytest.mark.integration, pytest.mark.slow]

# (dataset, its asset or None when bundled, fit split, test split)
PAIRS = [
    ("digits", None, "train", "test"),
    ("fashion_mnist", "fashion-mnist", "train", "test"),
    ("mnist", "mnist", "train", "val"),
    ("mnist", "mnist", "train", "test"),
    ("mnist", "mnist", "val", "test"),
    *((f"emoji.{style}", f"emoji-{style}", "anchors", "test") for style in ("google", "twitter", "apple", "facebook")),
]


@pytest.mark.parametrize(("name", "asset", "fit", "test"), PAIRS, ids=lambda v: str(v))
def test_no_image_on_both_sides(name: str, asset: str | None, fit: str, test: str) -> None:
    if asset is not None:
        need_asset(asset)
    dataset = DATASETS.create(name)
    check_no_shared_images(dataset.load(fit), dataset.load(test))


# read from the user's own copy (their official splits): a run counts their shared images in one line
# (align/data/shared_images.py, tests/unit/test_shared_images.py)
USER_COPIES = {"cifar10", "cifar100", "coco", "coco2014", "coco2017", "flickr8k", "flickr30k", "imagenet1k"}
# generated, not read: checked by their own tests (tests/unit/test_shapes.py)
GENERATED = {"shapes", "shapes.single", "shapes.compositional", "shapes.single.compositional"}


def test_every_built_in_dataset_is_checked() -> None:
    """A registered name without a user path (``folder:*``, ...) is built in: a new one must be added above."""
    checked = {name for name, *_ in PAIRS} | {"emoji"}  # emoji is emoji.google
    # align's own sources only: tests register datasets of their own at import (collection imports them all)
    built_in = {name for name in DATASETS.list() if not name.endswith(":*")
                and getattr(DATASETS._entries[name].factory, "__module__", "").startswith("align.")}
    assert built_in - checked - USER_COPIES - GENERATED == set()
