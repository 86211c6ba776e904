"""VLAP through the real frozen Gemma-3 270M on real emoji pairs: two steps, so it stays near a minute."""

from __future__ import annotations

import math

import pytest
import torch

from conftest import need_asset

pytestmark = [pytest.mark.integration, pytest.mark.slow]


def test_vlap_trains_through_gemma_and_speaks_its_vocabulary() -> None:
    for asset in ("mobilenet_v2.imagenet1k_v1", "gemma-3-270m.q4_k_m", "emoji-google"):
        need_asset(asset)
    from align.bench.execute.features import FeatureBank
    from align.registry import ALIGNERS, DATASETS

    anchors = DATASETS.create("emoji").load("anchors")
    x = FeatureBank(progress=False).images("torchvision:mobilenet_v2.imagenet1k_v1", anchors)[:16]
    names = [caps[0] for caps in anchors.captions][:16]
    # the same 16 pairs in one batch twice: the second epoch's losses are after one AdamW step
    vlap = ALIGNERS.create("vlap", vocab_subset=20000, lr=3e-3, batch_size=16, max_epochs=2, seed=0)
    vlap.fit_captions(x, names)
    l_cap, l_map = vlap.history["l_cap"], vlap.history["l_map"]
    assert all(math.isfinite(v) for v in l_cap + l_map)
    assert l_cap[1] < l_cap[0] and l_map[1] < l_map[0], vlap.history

    words = vlap.nearest_words(x[:2], top=3)
    assert len(words) == 2 and all(len(row) == 3 and all(isinstance(w, str) and w for w in row) for row in words)
    captions = vlap.caption(x[:2], max_new_tokens=4)
    assert len(captions) == 2 and all(isinstance(c, str) for c in captions)
    texts = vlap.encode_text(names[:4])  # t in Gemma's raw word space (unit test: equal to table:<table>)
    assert texts.shape == (4, 640) and torch.isfinite(texts).all()
