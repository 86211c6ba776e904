"""Linear probe: standardised features, multinomial logistic regression, C chosen on validation.

The validation split is carved out of the *train* features only (stratified when every class has at
least two examples, seeded), each C of a log grid is fit on the rest and scored by validation
``acc1``; the best C (the smallest one among ties: the strongest regularisation) is refit on all
train features and scored on test. Test features are touched once, for the final score. lbfgs is
deterministic, so the same inputs and seed give the same result.

``row_space=True`` (off by default) is a speed-up for features wider than the train set (``D > n``,
e.g. every layer of an LM concatenated): the L2-penalised logistic regression's weights lie in the
span of the (standardised) train rows, so projecting onto an orthonormal basis of that span first
gives the same optimum in ``n`` instead of ``D`` dimensions (the same predictions, up to the solver's
tolerance).
"""

from __future__ import annotations

import warnings
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch

from align.errors import BadInputError
from align.eval.items import ClassificationItems
from align.eval.metrics import classification_items

C_GRID: tuple[float, ...] = tuple(float(c) for c in np.logspace(-4, 4, 9))


@dataclass(frozen=True)
class ProbeResult:
    """Test metrics under CLIP_benchmark's names, kept apart from the chosen hyper-parameter."""

    metrics: dict[str, float]  # acc1, acc5 (>= 5 classes), mean_per_class_recall on test
    C: float  # inverse L2 strength chosen on validation
    val_acc1: dict[float, float]  # validation acc1 of every C tried
    items: ClassificationItems | None = field(default=None, compare=False)  # each test item's predictions


def _as_numpy(features: Any, labels: Any, what: str) -> tuple[np.ndarray, np.ndarray]:
    x = features.detach().cpu().numpy() if isinstance(features, torch.Tensor) else np.asarray(features)
    y = labels.detach().cpu().numpy() if isinstance(labels, torch.Tensor) else np.asarray(labels)
    if x.ndim != 2 or y.shape != (x.shape[0],):
        raise BadInputError(f"{what}: expected features [n, D] and labels [n], got {x.shape} and {y.shape}")
    if not np.isfinite(x).all():
        raise BadInputError(f"{what}: features contain NaN or inf")
    if y.size and (y.min() < 0 or not np.issubdtype(y.dtype, np.integer)):
        raise BadInputError(f"{what}: labels must be non-negative integers")
    return x.astype(np.float64), y.astype(np.int64)


class RowSpace:
    """Projection onto an orthonormal basis of the fit rows' span (identity when ``D <= n``); a scikit-learn
    transformer. Exact for an L2-penalised linear model: its optimal weights lie in that span."""

    def fit(self, x: np.ndarray, y: Any = None) -> RowSpace:
        self.basis_: np.ndarray | None = None
        if x.shape[1] > x.shape[0]:
            _, s, vt = np.linalg.svd(x, full_matrices=False)
            self.basis_ = vt[s > s.max() * max(x.shape) * np.finfo(x.dtype).eps].T  # [D, rank]
        return self

    def transform(self, x: np.ndarray) -> np.ndarray:
        return x if self.basis_ is None else x @ self.basis_

    def fit_transform(self, x: np.ndarray, y: Any = None) -> np.ndarray:
        return self.fit(x).transform(x)

    def get_params(self, deep: bool = True) -> dict[str, Any]:
        return {}

    def set_params(self, **params: Any) -> RowSpace:
        return self


def _probe(c: float, max_iter: int, row_space: bool = False) -> Any:
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    steps = [StandardScaler(), *([RowSpace()] if row_space else []), LogisticRegression(C=c, max_iter=max_iter)]
    return make_pipeline(*steps)


def _fit(model: Any, x: np.ndarray, y: np.ndarray) -> Any:
    from sklearn.exceptions import ConvergenceWarning

    with warnings.catch_warnings():  # a probe stopped at max_iter is still a probe; C selection copes
        warnings.simplefilter("ignore", ConvergenceWarning)
        return model.fit(x, y)


def probe_logits(model: Any, x: np.ndarray, num_classes: int) -> torch.Tensor:
    """``[n, num_classes]`` log-probabilities; classes the probe never saw score ``-inf``."""
    logits = torch.full((x.shape[0], num_classes), float("-inf"), dtype=torch.float64)
    logits[:, torch.as_tensor(model.classes_)] = torch.from_numpy(model.predict_log_proba(x))
    return logits


def validation_split(labels: np.ndarray, val_fraction: float, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Seeded (fit, validation) index arrays over the train rows; stratified whenever possible."""
    from sklearn.model_selection import train_test_split

    rows = np.arange(len(labels))
    counts = np.bincount(labels)
    n_val = int(np.ceil(val_fraction * len(labels)))
    stratify = labels if counts[counts > 0].min() >= 2 and n_val >= np.count_nonzero(counts) else None
    fit_rows, val_rows = train_test_split(rows, test_size=n_val, random_state=seed, stratify=stratify)
    return np.sort(fit_rows), np.sort(val_rows)


def select_c(
    train_x: np.ndarray, train_y: np.ndarray, c_grid: Sequence[float] = C_GRID, val_fraction: float = 0.2,
    seed: int = 0, max_iter: int = 1000, row_space: bool = False,
) -> tuple[float, dict[float, float]]:
    """Best C on a validation split of the train features, and the validation acc1 of every C."""
    fit_rows, val_rows = validation_split(train_y, val_fraction, seed)
    if len(np.unique(train_y[fit_rows])) < 2:
        raise BadInputError("linear probe: the fit part of the validation split has fewer than two classes")
    scores: dict[float, float] = {}
    for c in sorted(c_grid):
        model = _fit(_probe(c, max_iter, row_space), train_x[fit_rows], train_y[fit_rows])
        scores[c] = float(np.mean(model.predict(train_x[val_rows]) == train_y[val_rows]))
    best = max(scores, key=lambda c: (scores[c], -c))
    return best, scores


def linear_probe(
    train_features: torch.Tensor | np.ndarray,
    train_labels: torch.Tensor | np.ndarray,
    test_features: torch.Tensor | np.ndarray,
    test_labels: torch.Tensor | np.ndarray,
    *,
    num_classes: int | None = None,
    c_grid: Sequence[float] = C_GRID,
    val_fraction: float = 0.2,
    seed: int = 0,
    max_iter: int = 1000,
    row_space: bool = False,
) -> ProbeResult:
    """Test ``acc1``/``acc5``/``mean_per_class_recall`` of the probe, with the chosen ``C``."""
    train_x, train_y = _as_numpy(train_features, train_labels, "linear probe train")
    test_x, test_y = _as_numpy(test_features, test_labels, "linear probe test")
    if train_x.shape[1] != test_x.shape[1]:
        raise BadInputError(f"linear probe: train features have width {train_x.shape[1]}, test {test_x.shape[1]}")
    if not 0 < val_fraction < 1:
        raise BadInputError(f"linear probe: val_fraction must be in (0, 1), got {val_fraction}")
    if len(np.unique(train_y)) < 2:
        raise BadInputError("linear probe: train labels have fewer than two classes")
    num_classes = num_classes or int(max(train_y.max(), test_y.max())) + 1
    best_c, val_acc1 = select_c(train_x, train_y, c_grid, val_fraction, seed, max_iter, row_space)
    model = _fit(_probe(best_c, max_iter, row_space), train_x, train_y)
    items = classification_items(probe_logits(model, test_x, num_classes), test_y)
    return ProbeResult(metrics=items.metrics(), C=best_c, val_acc1=val_acc1, items=items)
