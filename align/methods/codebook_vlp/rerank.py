"""ALBEF's retrieval re-ranking: the top-k candidates of each query by contrastive similarity are
re-scored by the image-text matching head, whose cross-attention compares the pair token by token.

Kept apart from the model so the ranking logic can be tested with a planted scorer.
"""

from __future__ import annotations

from collections.abc import Callable

import torch

# score(image rows, text rows) -> a match score per row-aligned pair
PairScorer = Callable[[torch.Tensor, torch.Tensor], torch.Tensor]


def _rerank_rows(similarity: torch.Tensor, k: int, score: PairScorer) -> torch.Tensor:
    """Each row's top-k columns by ``similarity`` get ``score(row, column)``; the other columns keep
    their similarity order but rank below every candidate of their row."""
    k = min(k, similarity.shape[1])
    top = similarity.topk(k, dim=1).indices
    rows = torch.arange(len(similarity), device=similarity.device)[:, None].expand_as(top)
    scores = score(rows.flatten(), top.flatten()).view_as(top).to(similarity.dtype)
    floor = scores.min(1, keepdim=True).values - 1
    out = floor - (similarity.max(1, keepdim=True).values - similarity)  # below every candidate, same order
    return out.scatter(1, top, scores)


def rerank(similarity: torch.Tensor, k: int, score: PairScorer) -> tuple[torch.Tensor, torch.Tensor]:
    """``(image->text, text->image)`` score matrices, both ``[n_images, n_texts]`` like ``similarity``.

    Image->text: for each image, its ``k`` most similar texts are re-scored by ``score``; text->image:
    for each text, its ``k`` most similar images. The two directions re-score different pairs, so they
    come as two matrices (a metric reads image->text ranks from the first, text->image from the second)."""
    i2t = _rerank_rows(similarity, k, score)
    t2i = _rerank_rows(similarity.T, k, lambda texts, images: score(images, texts)).T
    return i2t, t2i
