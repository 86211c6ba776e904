"""The validation part carved out of a fit split: seeded, stratified, a partition, concept-disjoint on emoji."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from align.data.base import DatasetSplit, LabelSet
from align.data.emoji import Emoji
from align.data.validation import carve_validation, holdout_indices, validation_size
from align.errors import BadInputError


def labelled_split(class_sizes: list[int], name: str = "train") -> DatasetSplit:
    labels = np.repeat(np.arange(len(class_sizes)), class_sizes)
    rng = np.random.default_rng(0)
    labels = labels[rng.permutation(len(labels))]  # classes interleaved, as in a real split
    return DatasetSplit(
        dataset="toy", split=name, version="v1", num_items=len(labels), load_image=lambda i: Image.new("RGB", (2, 2)),
        captions=[[f"item {i}"] for i in range(len(labels))],
        labels=LabelSet(labels, [f"c{c}" for c in range(len(class_sizes))]),
        item_ids=[f"id{i:03d}" for i in range(len(labels))],
    )


def test_parts_partition_the_split_and_are_stratified_by_hand() -> None:
    split = labelled_split([2, 4, 6, 8])
    holdout = carve_validation(split, 0.25, seed=0)
    assert sorted(np.concatenate([holdout.fit, holdout.validation]).tolist()) == list(range(20))
    assert len(holdout.validation) == 5
    # quotas 5 * [2, 4, 6, 8] / 20 = [0.5, 1, 1.5, 2]: floors [0, 1, 1, 2], the spare item goes to the
    # largest remainder (0.5, tied between classes 0 and 2: the lower index wins)
    per_class = np.bincount(split.labels.labels[holdout.validation], minlength=4)
    assert per_class.tolist() == [1, 1, 1, 2]
    assert holdout.validation_split.labels.labels.tolist() == split.labels.labels[holdout.validation].tolist()
    assert holdout.fit_split.item_ids == [split.item_ids[i] for i in holdout.fit]
    assert holdout.validation_split.version == "v1+val1" and holdout.validation_split.split.startswith("train~val0.25")


def test_parts_are_seeded() -> None:
    split = labelled_split([10, 10, 10])
    first, again = carve_validation(split, 0.2, seed=0), carve_validation(split, 0.2, seed=0)
    assert first.validation.tolist() == again.validation.tolist()
    assert carve_validation(split, 0.2, seed=1).validation.tolist() != first.validation.tolist()


def test_unlabelled_split_and_order_independent_of_the_subsample_order() -> None:
    keys = [f"k{i}" for i in range(100)]
    fit, validation = holdout_indices(None, keys, 0.1, seed=0)
    assert len(validation) == 10 and len(fit) == 90 and not set(fit) & set(validation)
    from align.data.subsample import subsample_indices

    assert validation.tolist() != subsample_indices(None, keys, 10, 0).tolist()  # the "val:" salt


@pytest.mark.parametrize("fraction", [0.0, 1.0, -0.1, 1.5])
def test_fraction_out_of_range_is_refused(fraction: float) -> None:
    with pytest.raises(BadInputError, match="strictly between 0 and 1"):
        carve_validation(labelled_split([3, 3]), fraction, seed=0)


def test_neither_part_is_ever_empty() -> None:
    assert validation_size(10, 0.01) == 1 and validation_size(10, 0.99) == 9
    with pytest.raises(BadInputError, match="split 'train'"):
        carve_validation(labelled_split([1]), 0.5, seed=0)


def tiny_emoji_root(root: Path, n: int = 24) -> Path:
    (root / "64").mkdir(parents=True)
    records = []
    for i in range(n):
        code = f"1F{600 + i:03X}"
        Image.new("RGBA", (4, 4), (i * 10, 0, 0, 255)).save(root / "64" / f"{code.lower()}.png")
        records.append({"unified": code, "image": f"{code.lower()}.png", "name": f"FACE {i}", "short_names": [f"f{i}"],
                        "category": ["Smileys", "Animals"][i % 2], "subcategory": f"sub-{i % 3}",
                        "sort_order": i, "has_img_google": True})
    (root / "emoji.json").write_text(json.dumps(records))
    return root


def test_emoji_validation_part_holds_emoji_never_seen_while_fitting(tmp_path: Path) -> None:
    """Each emoji row is a distinct base emoji, so a row split is concept-disjoint: no emoji code is in both parts."""
    anchors = Emoji(root=tiny_emoji_root(tmp_path)).load("anchors")
    holdout = carve_validation(anchors, 0.25, seed=0)
    fit_ids, validation_ids = set(holdout.fit_split.item_ids), set(holdout.validation_split.item_ids)
    assert len(fit_ids) == len(holdout.fit) and len(validation_ids) == len(holdout.validation) == 3
    assert not fit_ids & validation_ids and fit_ids | validation_ids == set(anchors.item_ids)
    fit_names = {caps[0] for caps in holdout.fit_split.captions}
    assert not fit_names & {caps[0] for caps in holdout.validation_split.captions}
