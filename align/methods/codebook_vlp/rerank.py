"""ALBEF's retrieval re-ranking: the top-k candidates of each query by contrastive similarity are
re-scored by the image-text matching head, whose cross-attention compares the pair token by token.

Kept apart from the model so the ranking logic can be tested with a planted scorer.
"""

from __future__ import annotations

from collections.abc import Callable

import torch

# score(image rows, text rows) -> a match score per row-aligned pair
PairScorer = Callable[[torch.Tensor, torch.Tensor], torch.Tensor]


def _place(similarity: torch.Tensor, top: torch.Tensor, scores: torch.Tensor) -> torch.Tensor:
    """Each row's candidates ``top`` get their ``scores``; the other columns keep their similarity order
    but rank below every candidate of their row."""
    floor = scores.min(1, keepdim=True).values - 1
    out = floor - (similarity.max(1, keepdim=True).values - similarity)  # below every candidate, same order
    return out.scatter(1, top, scores.to(similarity.dtype))


def rerank(similarity: torch.Tensor, k: int, score: PairScorer) -> tuple[torch.Tensor, torch.Tensor]:
    """``(image->text, text->image)`` score matrices, both ``[n_images, n_texts]`` like ``similarity``.

    Image->text: for each image, its ``k`` most similar texts are re-scored by ``score``; text->image:
    for each text, its ``k`` most similar images. The two directions re-score different pairs, so they
    come as two matrices (a metric reads image->text ranks from the first, text->image from the second).
    A pair among the candidates of both directions is scored once (``score`` is one call, on the
    distinct pairs): the matching head's forward pass is what re-ranking costs."""
    n_images, n_texts = similarity.shape
    texts_of = similarity.topk(min(k, n_texts), dim=1).indices  # [n_images, k]: image -> its candidate texts
    images_of = similarity.T.topk(min(k, n_images), dim=1).indices  # [n_texts, k]: text -> its candidate images
    i2t_pairs = torch.arange(n_images, device=similarity.device)[:, None] * n_texts + texts_of
    t2i_pairs = images_of * n_texts + torch.arange(n_texts, device=similarity.device)[:, None]
    pairs, where = torch.cat([i2t_pairs.flatten(), t2i_pairs.flatten()]).unique(return_inverse=True)
    scores = score(pairs // n_texts, pairs % n_texts)[where]
    i2t = _place(similarity, texts_of, scores[:i2t_pairs.numel()].view_as(texts_of))
    t2i = _place(similarity.T, images_of, scores[i2t_pairs.numel():].view_as(images_of)).T
    return i2t, t2i
