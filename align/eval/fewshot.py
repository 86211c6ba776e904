"""k-shot classification with a nearest-class-mean (prototype) classifier.

For each class, k train examples are drawn with a seeded generator (all of them when a class has
fewer than k). Features are centred by the mean of that support set and L2-normalised (SimpleShot's
"CL2N"), each class is represented by its renormalised mean, and a test example is scored by cosine
with every prototype. The classifier has no hyper-parameter and no iterative fit, so it is exact,
fast and deterministic; variance comes only from which examples are drawn, which the caller
explores by passing several seeds (``fewshot_over_seeds``).
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F

from align.errors import BadInputError
from align.eval.items import ClassificationItems
from align.eval.metrics import aggregate_seeds, classification_items


def sample_support(labels: np.ndarray, k: int, seed: int) -> np.ndarray:
    """Sorted train row indices: k per class present in ``labels`` (fewer if the class is smaller)."""
    if k < 1:
        raise BadInputError(f"fewshot: k must be >= 1, got {k}")
    rng = np.random.default_rng(seed)
    picks = [
        rng.choice(np.flatnonzero(labels == c), size=min(k, int(np.sum(labels == c))), replace=False)
        for c in np.unique(labels)
    ]
    return np.sort(np.concatenate(picks))


def nearest_mean_logits(
    support_x: torch.Tensor, support_y: torch.Tensor, query_x: torch.Tensor, num_classes: int, center: bool = True
) -> torch.Tensor:
    """``[n_query, num_classes]`` cosine with each class prototype; classes without support get ``-inf``."""
    shift = support_x.mean(dim=0) if center else torch.zeros(support_x.shape[1], dtype=support_x.dtype)
    support = F.normalize(support_x - shift, dim=-1)
    query = F.normalize(query_x - shift, dim=-1)
    sums = torch.zeros(num_classes, support.shape[1], dtype=support.dtype).index_add_(0, support_y, support)
    present = torch.bincount(support_y, minlength=num_classes) > 0
    logits = query @ F.normalize(sums, dim=-1).T
    return logits.masked_fill(~present, float("-inf"))


def fewshot(
    train_features: torch.Tensor | np.ndarray,
    train_labels: torch.Tensor | np.ndarray,
    test_features: torch.Tensor | np.ndarray,
    test_labels: torch.Tensor | np.ndarray,
    k: int,
    *,
    seed: int = 0,
    num_classes: int | None = None,
    center: bool = True,
) -> dict[str, float]:
    """Test metrics of a k-shot prototype classifier built from seeded draws of the train features."""
    return fewshot_items(train_features, train_labels, test_features, test_labels, k, seed=seed,
                         num_classes=num_classes, center=center).metrics()


def fewshot_items(
    train_features: torch.Tensor | np.ndarray,
    train_labels: torch.Tensor | np.ndarray,
    test_features: torch.Tensor | np.ndarray,
    test_labels: torch.Tensor | np.ndarray,
    k: int,
    *,
    seed: int = 0,
    num_classes: int | None = None,
    center: bool = True,
) -> ClassificationItems:
    """Each test item's predictions under the k-shot prototype classifier (:func:`fewshot`)."""
    train_x = torch.as_tensor(np.asarray(train_features), dtype=torch.float64)
    test_x = torch.as_tensor(np.asarray(test_features), dtype=torch.float64)
    train_y = np.asarray(train_labels).astype(np.int64)
    test_y = np.asarray(test_labels).astype(np.int64)
    if train_x.ndim != 2 or test_x.ndim != 2 or train_x.shape[1] != test_x.shape[1]:
        raise BadInputError(
            f"fewshot: train {tuple(train_x.shape)} and test {tuple(test_x.shape)} features must be [n, D]"
        )
    if train_y.shape != (train_x.shape[0],) or test_y.shape != (test_x.shape[0],):
        raise BadInputError("fewshot: need one label per feature row")
    if not (torch.isfinite(train_x).all() and torch.isfinite(test_x).all()):
        raise BadInputError("fewshot: features contain NaN or inf")
    if min(train_y.min(initial=0), test_y.min(initial=0)) < 0:
        raise BadInputError("fewshot: labels must be non-negative")
    num_classes = num_classes or int(max(train_y.max(), test_y.max())) + 1
    support = sample_support(train_y, k, seed)
    logits = nearest_mean_logits(
        train_x[support], torch.from_numpy(train_y[support]), test_x, num_classes, center=center
    )
    return classification_items(logits, test_y)


def fewshot_over_seeds(*args: Any, seeds: Iterable[int], **kwargs: Any) -> dict[str, dict[str, Any]]:
    """``fewshot`` once per seed, aggregated as ``{metric: {"mean", "stdev", "values"}}``."""
    return aggregate_seeds([fewshot(*args, seed=seed, **kwargs) for seed in seeds])
