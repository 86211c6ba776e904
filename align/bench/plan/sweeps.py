"""Choosing an aligner's hyper-parameters on a validation part of the fit split.

A sweep fits every point of a grid on the fit part, scores one metric of one task on the validation
part (:mod:`align.data.validation`), and keeps the best point: the highest score, ties going to the
first point in grid order (every selectable metric is higher-is-better; a NaN score never wins).

Refit rule (:data:`REFIT_RULE`, recorded in every result): the selected point is fitted again on the
*whole* fit split, and only that fit is scored on the test split. Selection sees the fit part and the
validation part only: this module gets them as two callables ("fit on these rows", "score on these
rows"), and the runner reads the test split after every selection of a dataset entry is done.
"""

from __future__ import annotations

import itertools
import math
import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any, Protocol

from align.errors import BadInputError

REFIT_RULE = "selected hyper-parameters refitted on the whole fit split; only that fit is scored on the test split"
_CLASSIFICATION = ("acc1", "acc5", "mean_per_class_recall")
_CAPTIONING = ("Bleu_1", "Bleu_2", "Bleu_3", "Bleu_4", "ROUGE_L", "CIDEr")
# What a dataset entry selects on when neither it nor the sweep says: its first task's headline metric
# (the leaderboard's; retrieval at the entry's smallest recall_k).
DEFAULT_METRICS = {"zeroshot_classification": "acc1", "zeroshot_retrieval": "image_retrieval_recall@{k}",
                   "linear_probe": "acc1", "fewshot": "acc1", "captioning": "CIDEr",
                   "code_statistics": "code_class_nmi", "visual_arithmetic": "recall@1",
                   "attribute_questions": "acc1"}
_CODES = ("codes_used", "code_perplexity", "code_class_nmi", "code_histogram_nmi")
_GROUND_TRUTH = {"visual_arithmetic": ("recall@1", "recall@5"), "attribute_questions": ("acc1",)}
_RETRIEVAL = re.compile(r"^(image|text)_retrieval_recall@[1-9][0-9]*$")


def task_metrics(task: str, recall_k: Sequence[int] = (1, 5, 10)) -> tuple[str, ...]:
    """Metrics ``task`` reports (align/eval), all higher-is-better; retrieval's depend on the entry's ``recall_k``."""
    if task == "zeroshot_retrieval":
        return tuple(f"{side}_retrieval_recall@{k}" for side in ("image", "text") for k in recall_k)
    if task == "code_statistics":
        return _CODES
    if task in _GROUND_TRUTH:
        return _GROUND_TRUTH[task]
    return _CAPTIONING if task == "captioning" else _CLASSIFICATION


def is_metric(task: str, metric: str) -> bool:
    """Whether ``task`` can report ``metric`` for some ``recall_k`` (a sweep's selector, before it meets a dataset)."""
    return metric in task_metrics(task) or (task == "zeroshot_retrieval" and bool(_RETRIEVAL.match(metric)))


@dataclass(frozen=True)
class Selector:
    """The validation score a sweep maximises: ``metric`` of ``task``."""

    task: str
    metric: str

    def as_dict(self) -> dict[str, str]:
        return {"task": self.task, "metric": self.metric}


@dataclass(frozen=True)
class SweepSpec:
    """A grid over some hyper-parameters (the others stay as the aligner entry sets them)."""

    grid: tuple[tuple[str, tuple[Any, ...]], ...]  # (name, values) in config order: hashable and ordered
    validation: float = 0.2  # fraction of the fit split held out for selection
    select: Selector | None = None  # None: the dataset entry's selector (or its default)

    def points(self) -> list[dict[str, Any]]:
        """Every combination, the first hyper-parameter varying slowest (grid order = ties' order)."""
        names = [name for name, _ in self.grid]
        return [dict(zip(names, values)) for values in itertools.product(*(v for _, v in self.grid))]

    def grid_dict(self) -> dict[str, list[Any]]:
        return {name: list(values) for name, values in self.grid}


@dataclass(frozen=True)
class Selection:
    """Every grid point's validation score and the one chosen."""

    points: list[dict[str, Any]]
    scores: list[float]
    metrics: list[dict[str, float]]  # every metric of the selection task, per point
    index: int  # position of the chosen point in ``points``

    @property
    def selected(self) -> dict[str, Any]:
        return dict(self.points[self.index])

    @property
    def score(self) -> float:
        return self.scores[self.index]

    def record(self, sweep: SweepSpec, selector: Selector, holdout: dict[str, Any]) -> dict[str, Any]:
        """The ``sweep`` field of a result JSON."""
        return {
            "grid": sweep.grid_dict(), "select": selector.as_dict(), "validation": holdout,
            "points": [{"hparams": p, "score": s, "metrics": m}
                       for p, s, m in zip(self.points, self.scores, self.metrics)],
            "selected": self.selected, "validation_score": self.score, "refit": REFIT_RULE,
        }


class _EntryLike(Protocol):
    tasks: tuple[str, ...]
    recall_k: tuple[int, ...]
    select: Selector | None


def selector_for(sweep: SweepSpec, spec: _EntryLike) -> Selector:
    """The sweep's own selector, else the dataset entry's, else the entry's first task's headline metric."""
    if sweep.select is not None:
        return sweep.select
    if spec.select is not None:
        return spec.select
    task = spec.tasks[0]
    return Selector(task, DEFAULT_METRICS[task].format(k=min(spec.recall_k)))


def best_index(scores: Sequence[float]) -> int:
    """Position of the highest score, the first on ties; NaN never wins."""
    best = None
    for i, score in enumerate(scores):
        if not math.isnan(score) and (best is None or score > scores[best]):
            best = i
    if best is None:
        raise BadInputError("sweep: every grid point scored NaN on the validation part; nothing to select")
    return best


def select(points: Sequence[dict[str, Any]], fit: Callable[[dict[str, Any]], Any],
           score: Callable[[Any], dict[str, float]], metric: str) -> Selection:
    """Fit each point (``fit(point)`` on the fit part), score it (``score(fitted)`` on the validation part)
    and choose by ``metric``."""
    scores, metrics = [], []
    for point in points:
        measured = score(fit(dict(point)))
        if metric not in measured:
            raise BadInputError(f"sweep: selection metric {metric!r} not reported (got: {', '.join(measured)})")
        metrics.append({k: float(v) for k, v in measured.items()})
        scores.append(float(measured[metric]))
    return Selection([dict(p) for p in points], scores, metrics, best_index(scores))


def consensus(runs: Sequence[Sequence[float]], tolerance: float = 0.05) -> tuple[int, list[float], list[float], bool]:
    """One grid point for many sweeps of the same grid (e.g. one run per dataset entry), from validation scores.

    Each run's scores are divided by that run's best, so every run counts the same whatever its scale;
    the point with the highest mean relative score wins (ties: first in grid order). It is *well supported*
    when it is within ``tolerance`` (relative) of the best point in every run. Returns (index, mean relative
    score per point, worst relative score per point, well supported)."""
    if not runs or any(len(r) != len(runs[0]) for r in runs):
        raise BadInputError("sweep consensus: needs sweeps of one grid (the same number of points in each)")
    relative = []
    for scores in runs:
        best = scores[best_index(scores)]
        if not best > 0:
            raise BadInputError("sweep consensus: a sweep's best validation score is not positive")
        relative.append([s / best if not math.isnan(s) else 0.0 for s in scores])
    means = [sum(column) / len(column) for column in zip(*relative)]
    worst = [min(column) for column in zip(*relative)]
    index = best_index(means)
    return index, means, worst, worst[index] >= 1 - tolerance
