"""align's metrics against CLIP_benchmark's own code on real embeddings: the unseen emoji half through a ridge
map fitted on the anchors (MobileNetV2 image features, all-MiniLM-L6-v2 text features).

The emoji test half holds pixel-identical pictures under different names and a caption shared by two
emoji, so some ties are real: CLIP_benchmark's number must equal align's wherever no tie straddles k, and
lie between align's (ties against the query) and the optimistic one where one does
(tests/clip_benchmark_bridge.py).
"""

from __future__ import annotations

import pytest
import torch
from clip_benchmark_bridge import assert_explained, classification_both, retrieval_both
from conftest import need_asset

pytestmark = [pytest.mark.integration, pytest.mark.slow]

IMAGE, TEXT = "torchvision:mobilenet_v2.imagenet1k_v1", "hf:sentence-transformers/all-MiniLM-L6-v2"


def test_emoji_metrics_equal_clip_benchmark_up_to_the_tie_rule() -> None:
    for asset in ("mobilenet_v2.imagenet1k_v1", "all-minilm-l6-v2", "emoji-google"):
        need_asset(asset)
    from align.bench.execute.features import FeatureBank, flat_captions
    from align.eval.zeroshot import class_prompts
    from align.registry import ALIGNERS, DATASETS

    bank = FeatureBank(progress=False)
    dataset = DATASETS.create("emoji")
    anchors, test = dataset.load("anchors"), dataset.load("test")
    names = [captions[0] for captions in anchors.captions]
    ridge = ALIGNERS.create("ridge").fit(bank.images(IMAGE, anchors), bank.texts(TEXT, names, anchors, "names"))
    images = ridge.encode_image(bank.images(IMAGE, test))

    captions, owner = flat_captions(test)
    texts = ridge.encode_text(bank.texts(TEXT, captions, test, "captions"))
    spans, theirs, items = retrieval_both(images, texts, owner, (1, 5, 10))
    assert 0.05 < items.metrics()["text_retrieval_recall@1"] < 0.9  # a real, imperfect aligner
    assert_explained(spans, theirs, items.metrics())
    assert sum(span.straddling for span in spans.values()) > 0  # the test half's twins tie for real

    for label_set in (None, "subcategory"):
        labels = test.label_set(label_set)
        prompts = class_prompts(labels.class_names, labels.templates)
        prompt_emb = ridge.encode_text(bank.texts(TEXT, prompts, test, f"prompts-{label_set or 'main'}"))
        spans, theirs, items = classification_both(images, prompt_emb, torch.as_tensor(labels.labels),
                                                   len(labels.templates))
        assert 0.05 < items.metrics()["acc1"] < 0.95
        assert_explained(spans, theirs, items.metrics())
