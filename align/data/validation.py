"""A validation part carved out of a fit split, so hyper-parameters are chosen without the test split.

Recipe (:data:`VALIDATION_RECIPE`): ``n_val = round(fraction * n)`` items (clipped to ``[1, n - 1]``)
go to the validation part, allocated to the classes of the main labels by largest remainder (as
``NAME@N``), each class taking its first items in the order of ``sha256(f"{seed}:val:{key}")``
(``key`` = the item id; the ``val:`` salt keeps this order independent of the ``NAME@N`` order, which
hashes the same ids). Without labels the first ``n_val`` items in that order are taken. The rest is
the fit part. Both parts keep the parent's order.

Parts are *row selections* of the parent: callers index the parent's cached features with
:attr:`Holdout.fit` and :attr:`Holdout.validation`, so no image feature is recomputed and no image
cache key is added.

Concept-disjoint on emoji: every emoji row is a distinct base emoji (its item id is the emoji's
``unified`` code), so a row split puts each emoji in exactly one part and validation emoji are never
seen while fitting. On labelled image sets (digits, Fashion-MNIST) the classes are shared by both
parts, as they are by the benchmark's fit and test splits.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np

from align.data.subsample import item_keys, select, subsample_indices
from align.errors import BadInputError

if TYPE_CHECKING:
    from align.data.base import DatasetSplit

VALIDATION_RECIPE = "val1"


def validation_size(n: int, fraction: float) -> int:
    """``round(fraction * n)`` (halves round up), kept within ``[1, n - 1]`` so neither part is empty."""
    if not 0.0 < fraction < 1.0:
        raise BadInputError(f"validation fraction must lie strictly between 0 and 1, got {fraction!r}")
    if n < 2:
        raise BadInputError(f"cannot hold out a validation part of a split with {n} item(s)")
    return min(max(math.floor(fraction * n + 0.5), 1), n - 1)


def holdout_indices(labels: np.ndarray | None, keys: list[str], fraction: float,
                    seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Sorted row indices ``(fit, validation)`` of the recipe above; together they are every row once."""
    n_val = validation_size(len(keys), fraction)
    validation = subsample_indices(labels, [f"val:{key}" for key in keys], n_val, seed)
    fit = np.setdiff1d(np.arange(len(keys)), validation, assume_unique=True)
    return fit, validation


@dataclass(frozen=True)
class Holdout:
    """A fit split divided in two: row indices into the parent, and the parts as splits."""

    fraction: float
    seed: int
    fit: np.ndarray  # sorted rows of the parent the grid points are fitted on
    validation: np.ndarray  # sorted rows of the parent they are scored on
    fit_split: DatasetSplit
    validation_split: DatasetSplit

    def describe(self) -> dict[str, object]:
        """What a result records about the parts."""
        return {"fraction": self.fraction, "seed": self.seed, "recipe": VALIDATION_RECIPE,
                "fit_part": self.fit_split.split, "validation_part": self.validation_split.split,
                "num_fit": int(len(self.fit)), "num_validation": int(len(self.validation))}


def carve_validation(split: DatasetSplit, fraction: float, seed: int) -> Holdout:
    """Divide ``split`` into a fit part and a validation part (recipe in the module docstring)."""
    labels = None if split.labels is None else np.asarray(split.labels.labels)
    try:
        fit, validation = holdout_indices(labels, item_keys(split), fraction, seed)
    except BadInputError as err:
        raise BadInputError(f"dataset {split.dataset!r}, split {split.split!r}: {err}") from None
    version = f"{split.version}+{VALIDATION_RECIPE}"
    tag = f"{fraction:g}~seed{seed}"
    return Holdout(fraction, seed, fit, validation,
                   select(split, fit, f"{split.split}~fit{tag}", version),
                   select(split, validation, f"{split.split}~val{tag}", version))
