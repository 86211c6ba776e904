"""CLIP_benchmark's metrics, under its exact names, as pure functions of score matrices.

Retrieval follows the CLIP-paper recall (CLIP_benchmark ``metrics/zeroshot_retrieval.py``): a query
scores 1 at k if at least one of its correct candidates is among its k best-scored candidates, and
the recall is the mean over queries. Classification gives ``acc1``, ``acc5`` and
``mean_per_class_recall`` (scikit-learn's balanced accuracy, as CLIP_benchmark computes it). Ties
count against the query in every task (:mod:`align.eval.ties`, where it says how CLIP_benchmark differs).
"""

from __future__ import annotations

import statistics
from collections.abc import Iterable, Sequence
from typing import Any

import numpy as np
import torch

from align.errors import BadInputError
from align.eval.items import ClassificationItems, RetrievalItems
from align.eval.ties import rank_of_best_positive

_CHUNK = 1024  # query rows compared at once: bounds memory to CHUNK x candidates booleans


def _check_scores(scores: torch.Tensor, what: str) -> torch.Tensor:
    scores = torch.as_tensor(scores)
    if scores.ndim != 2:
        raise BadInputError(f"{what}: expected a 2-D score matrix, got shape {tuple(scores.shape)}")
    if scores.is_floating_point() and not torch.isfinite(scores).all():
        raise BadInputError(f"{what}: scores contain NaN or inf")
    return scores.float()


def _check_ks(ks: Iterable[int]) -> tuple[int, ...]:
    ks = tuple(ks)
    if not ks or any(isinstance(k, bool) or not isinstance(k, (int, np.integer)) or k < 1 for k in ks):
        raise BadInputError(f"recall ks must be positive integers, got {ks!r}")
    return tuple(int(k) for k in ks)


def retrieval_items(
    similarity: torch.Tensor, text_image_index: torch.Tensor | Sequence[int], ks: Iterable[int] = (1, 5, 10)
) -> RetrievalItems:
    """Each query's rank (:class:`align.eval.items.RetrievalItems`) from a ``[n_images, n_texts]`` similarity.

    ``text_image_index [n_texts]`` gives the image each text describes; an image may have any number of
    texts, and one without any cannot be queried (its rank is -1). Ties: :mod:`align.eval.ties`
    (pessimistic: a negative tied with a positive ranks first)."""
    sim = _check_scores(similarity, "retrieval_metrics")
    ks = _check_ks(ks)
    n_images, n_texts = sim.shape
    index = torch.as_tensor(text_image_index, dtype=torch.long)
    if index.shape != (n_texts,):
        raise BadInputError(
            f"retrieval_metrics: text_image_index has shape {tuple(index.shape)}, expected ({n_texts},)"
        )
    if n_texts == 0 or n_images == 0:
        raise BadInputError("retrieval_metrics: no images or no texts to retrieve")
    if index.min() < 0 or index.max() >= n_images:
        raise BadInputError(f"retrieval_metrics: text_image_index values must lie in [0, {n_images})")

    images = torch.arange(n_images)
    # text -> image: the one positive of text t is image index[t]
    text_ranks = torch.cat([
        rank_of_best_positive(sim[:, s:s + _CHUNK].T, index[s:s + _CHUNK, None] == images[None, :])
        for s in range(0, n_texts, _CHUNK)
    ])
    # image -> text: the positives of image i are the texts t with index[t] == i
    image_ranks = torch.cat([
        rank_of_best_positive(sim[s:s + _CHUNK], images[s:s + _CHUNK, None] == index[None, :])
        for s in range(0, n_images, _CHUNK)
    ])
    image_ranks[torch.bincount(index, minlength=n_images) == 0] = -1  # no text: not a query
    return RetrievalItems(text_ranks.numpy().astype(np.int64), image_ranks.numpy().astype(np.int64),
                          index.numpy().astype(np.int64), ks)


def retrieval_metrics(
    similarity: torch.Tensor, text_image_index: torch.Tensor | Sequence[int], ks: Iterable[int] = (1, 5, 10)
) -> dict[str, float]:
    """Text->image and image->text recall@k from a ``[n_images, n_texts]`` similarity matrix.

    ``image_retrieval_recall@k`` is the fraction of texts whose image is among the top-k images;
    ``text_retrieval_recall@k`` the fraction of images with at least one of their texts among the top-k
    texts. Images without any text cannot be queried and are left out of the latter. A k larger than
    the number of candidates counts every query as a hit (CLIP_benchmark would fail). Computed from
    :func:`retrieval_items`, so the per-item outputs always give back these numbers.
    """
    return retrieval_items(similarity, text_image_index, ks).metrics()


def classification_items(logits: torch.Tensor, labels: torch.Tensor | Sequence[int]) -> ClassificationItems:
    """Each item's first predictions and label (:class:`align.eval.items.ClassificationItems`)."""
    return ClassificationItems.from_scores(logits, labels)


def classification_metrics(logits: torch.Tensor, labels: torch.Tensor | Sequence[int]) -> dict[str, float]:
    """``acc1``, ``acc5`` (only with >= 5 classes) and ``mean_per_class_recall`` for ``[n, C]`` scores.

    ``mean_per_class_recall`` averages recall over the classes present in ``labels`` (scikit-learn's
    ``balanced_accuracy_score``, as in CLIP_benchmark). Scores may be logits, probabilities or
    cosines: only their order matters. Unreachable classes may score ``-inf``. Ties count against the
    image (:mod:`align.eval.ties`): a wrong class tied with the label ranks first. Computed from
    :func:`classification_items`, so the per-item outputs always give back these numbers."""
    return classification_items(logits, labels).metrics()


def aggregate_seeds(runs: Sequence[dict[str, float]]) -> dict[str, dict[str, Any]]:
    """``{metric: {"mean", "stdev", "values"}}`` over per-seed metric dicts (sample stdev; 0 for one run)."""
    if not runs:
        raise BadInputError("aggregate_seeds: no runs to aggregate")
    out: dict[str, dict[str, Any]] = {}
    for name in runs[0]:
        values = [float(run[name]) for run in runs]
        stdev = statistics.stdev(values) if len(values) > 1 else 0.0
        out[name] = {"mean": statistics.fmean(values), "stdev": stdev, "values": values}
    return out
