"""Registered datasets on the real packaged data (pulled by `align assets pull`).

Without an asset a test skips naming the pull command (and fails under `make test` / CI, see
tests/conftest.py).
"""

from __future__ import annotations

import numpy as np
import pytest
from conftest import need_asset

from align.registry import DATASETS

pytestmark = pytest.mark.integration


def test_fashion_mnist_sizes_and_balance() -> None:
    need_asset("fashion-mnist")
    dataset = DATASETS.create("fashion_mnist")
    train, test = dataset.load("train"), dataset.load("test")
    assert (len(train), len(test)) == (60000, 10000)
    assert np.bincount(train.labels.labels, minlength=10).tolist() == [6000] * 10
    assert np.bincount(test.labels.labels, minlength=10).tolist() == [1000] * 10
    assert train.labels.class_names[0] == "T-shirt/top" and train.labels.class_names[9] == "Ankle boot"
    image = test.load_image(0)
    assert image.mode == "L" and image.size == (28, 28)
    sub = dataset.load("test@1000")
    assert len(sub) == 1000 and np.bincount(sub.labels.labels).tolist() == [100] * 10


def test_mnist_sizes() -> None:
    need_asset("mnist")
    dataset = DATASETS.create("mnist")
    assert [len(dataset.load(s)) for s in ("train", "val", "test")] == [50000, 10000, 10000]
    test = dataset.load("test")
    assert set(np.unique(test.labels.labels).tolist()) == set(range(10))
    pixels = np.asarray(test.load_image(0))
    assert pixels.max() == 255 and pixels[0, 0] == 0  # white digit on black, as in the file


def test_emoji_google() -> None:
    need_asset("emoji-google")
    dataset = DATASETS.create("emoji")
    everything, anchors, test = (dataset.load(s) for s in ("all", "anchors", "test"))
    assert 1850 <= len(everything) <= 1950  # 1911 for emoji-datasource 16.0.0
    assert set(anchors.item_ids).isdisjoint(test.item_ids)
    # the halves differ by at most 1; the anchors then leave out the few emoji whose picture a test emoji
    # shares (948 of 955 in 16.0.0; tests/integration/test_no_shared_images.py)
    assert set(anchors.item_ids) <= set(everything.item_ids) - set(test.item_ids)
    assert len(everything) - len(test) - 15 <= len(anchors) <= len(everything) - len(test)
    assert abs(len(everything) - 2 * len(test)) <= 1
    by_name = {captions[0]: i for i, captions in enumerate(everything.captions)}
    subcategories = everything.extra_labels["subcategory"]
    for name, subcategory in (("red apple", "food fruit"), ("dove", "animal bird")):
        i = by_name[name]
        assert subcategories.class_names[subcategories.labels[i]] == subcategory
    assert everything.captions[by_name["red apple"]] == ["red apple", "apple"]
    assert everything.load_image(by_name["dove"]).mode == "RGBA"
    assert len(everything.labels.class_names) == 10


@pytest.mark.parametrize("style", ["twitter", "apple", "facebook"])
def test_emoji_styles_share_the_halves(style: str) -> None:
    need_asset("emoji-google")
    need_asset(f"emoji-{style}")
    google, other = DATASETS.create("emoji.google"), DATASETS.create(f"emoji.{style}")
    google_anchors, google_test = set(google.load("anchors").item_ids), set(google.load("test").item_ids)
    other_anchors, other_test = set(other.load("anchors").item_ids), set(other.load("test").item_ids)
    assert len(other_anchors) > 400 and other_anchors.isdisjoint(other_test)
    both = set(google.load("all").item_ids) & set(other.load("all").item_ids)
    # a test emoji is a test emoji in every style, and an emoji fitted on in one style is never tested
    # in another (each style's anchors leave out their own pictures shared with a test emoji)
    assert all((code in google_test) == (code in other_test) for code in both)
    assert not google_anchors & other_test and not other_anchors & google_test
    assert other.load("all").load_image(0).mode == "RGBA"


def test_emoji_validation_part_is_concept_disjoint_and_stratified() -> None:
    """The sweeps' validation part of the real emoji anchors: no emoji code in both parts, 20% of each category."""
    from align.data.validation import carve_validation

    need_asset("emoji-google")
    anchors = DATASETS.create("emoji").load("anchors")
    holdout = carve_validation(anchors, 0.2, seed=0)
    fit_ids, validation_ids = set(holdout.fit_split.item_ids), set(holdout.validation_split.item_ids)
    assert len(validation_ids) == round(0.2 * len(anchors)) and len(fit_ids) + len(validation_ids) == len(anchors)
    assert not fit_ids & validation_ids
    categories = np.bincount(anchors.labels.labels, minlength=10)
    held = np.bincount(holdout.validation_split.labels.labels, minlength=10)
    assert np.all(np.abs(held - 0.2 * categories) < 1)
