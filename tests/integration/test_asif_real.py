"""ASIF on real features: image-to-name retrieval over the unseen half of the emoji."""

from __future__ import annotations

import pytest
import torch

from conftest import need_asset

pytestmark = [pytest.mark.integration, pytest.mark.slow]


def test_asif_retrieves_unseen_emoji_names_far_above_chance() -> None:
    for asset in ("mobilenet_v2.imagenet1k_v1", "all-minilm-l6-v2", "emoji-google"):
        need_asset(asset)
    from align.bench.execute.features import FeatureBank
    from align.eval.metrics import retrieval_metrics
    from align.registry import ALIGNERS, DATASETS

    bank = FeatureBank(progress=False)
    dataset = DATASETS.create("emoji")
    anchors, test = dataset.load("anchors"), dataset.load("test")
    assert not set(anchors.item_ids) & set(test.item_ids)  # concept-disjoint
    image, text = "torchvision:mobilenet_v2.imagenet1k_v1", "hf:sentence-transformers/all-MiniLM-L6-v2"
    names = {split.split: [caps[0] for caps in split.captions] for split in (anchors, test)}
    anchor_x, test_x = bank.images(image, anchors), bank.images(image, test)
    anchor_y = bank.texts(text, names["anchors"], anchors, "names")
    test_y = bank.texts(text, names["test"], test, "names")

    def r_at_1(**hparams: object) -> float:
        asif = ALIGNERS.create("asif", **hparams).fit(anchor_x, anchor_y)
        similarity = asif.encode_image(test_x) @ asif.encode_text(test_y).T
        return retrieval_metrics(similarity, torch.arange(len(test_y)), ks=(1,))["text_retrieval_recall@1"]

    sparse, dense = r_at_1(k=50, p=8), r_at_1(k=None, p=1)
    assert sparse >= 0.12  # the bar; chance is 1/956
    assert dense < sparse / 5  # without top-k and the power, ASIF is near chance at ~1k anchors
