"""align's retrieval and zero-shot metrics against CLIP_benchmark's own ``evaluate`` functions, on the same
embeddings (tests/clip_benchmark_bridge.py feeds them through CLIP_benchmark's code unchanged).

Without ties the numbers must be equal; with planted ties (pixel-identical images, a shared caption, two
classes with the same prompts) align counts each tie against the query and CLIP_benchmark's number lies
between align's and the optimistic one. The real-embedding case is tests/integration/test_clip_benchmark_real.py.
"""

from __future__ import annotations

import pytest
import torch
from clip_benchmark_bridge import assert_explained, classification_both, retrieval_both

KS = (1, 5, 10)


def _captions(n_images: int) -> torch.Tensor:
    """Uneven captions: image i has 1 + i % 3 of them (every image at least one, as CLIP_benchmark needs)."""
    return torch.tensor([i for i in range(n_images) for _ in range(1 + i % 3)])


def test_retrieval_equals_clip_benchmark_without_ties() -> None:
    gen = torch.Generator().manual_seed(0)
    images = torch.randn(40, 12, generator=gen)
    index = _captions(40)
    texts = images[index] + 0.9 * torch.randn(len(index), 12, generator=gen)  # noisy: ranks spread out
    spans, theirs, items = retrieval_both(images, texts, index, KS)
    assert all(s.align == s.optimistic for s in spans.values())  # no tie anywhere
    assert 0 < items.metrics()["image_retrieval_recall@1"] < 1 and 0 < items.metrics()["text_retrieval_recall@1"] < 1
    assert_explained(spans, theirs, items.metrics())
    for name, value in items.metrics().items():
        assert theirs[name] == pytest.approx(value, abs=1e-6), name


def test_classification_equals_clip_benchmark_without_ties() -> None:
    gen = torch.Generator().manual_seed(1)
    classes, templates = 8, 3
    prompts = torch.randn(classes * templates, 10, generator=gen)
    labels = torch.arange(60) % classes
    centres = prompts.view(classes, templates, -1).mean(dim=1)
    images = centres[labels] + 1.2 * torch.randn(60, 10, generator=gen)
    spans, theirs, items = classification_both(images, prompts, labels, templates)
    assert all(s.align == s.optimistic for s in spans.values())
    assert 0 < items.metrics()["acc1"] < items.metrics()["acc5"] < 1
    assert_explained(spans, theirs, items.metrics())
    for name, value in items.metrics().items():
        assert theirs[name] == pytest.approx(value, abs=1e-9), name


def test_retrieval_ties_go_against_the_query_and_bound_clip_benchmark() -> None:
    """Images 3 and 7 are identical (one picture under two names) and each text is an exact copy of its
    image, so every text query is a clean hit at 1 except the texts of 3 and 7, tied with the twin."""
    gen = torch.Generator().manual_seed(2)
    images = torch.randn(30, 12, generator=gen)
    images[7] = images[3]
    index = _captions(30)
    texts = images[index].clone()
    spans, theirs, items = retrieval_both(images, texts, index, KS)
    tied_texts = int(((index == 3) | (index == 7)).sum())
    assert items.metrics()["image_retrieval_recall@1"] == 1 - tied_texts / len(index)
    assert items.metrics()["image_retrieval_recall@5"] == 1.0
    assert spans["image_retrieval_recall@1"].straddling == tied_texts
    assert_explained(spans, theirs, items.metrics())


def test_classification_ties_go_against_the_image_and_bound_clip_benchmark() -> None:
    """Classes 2 and 4 have the same prompts and every image sits on its class: their images tie at the top."""
    gen = torch.Generator().manual_seed(3)
    classes, templates = 8, 2
    prompts = torch.randn(classes * templates, 10, generator=gen).view(classes, templates, -1)
    prompts[4] = prompts[2]
    labels = torch.arange(48) % classes
    images = prompts.mean(dim=1)[labels]
    spans, theirs, items = classification_both(images, prompts.reshape(classes * templates, -1), labels, templates)
    got = items.metrics()
    assert got["acc1"] == 1 - 2 / classes and got["acc5"] == 1.0
    assert got["mean_per_class_recall"] == pytest.approx(1 - 2 / classes)
    assert spans["acc1"].straddling == int(((labels == 2) | (labels == 4)).sum())
    assert_explained(spans, theirs, got)
