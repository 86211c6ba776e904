"""Ground truth beyond labels and captions (visual arithmetic, attribute questions) for the items of an
eval split, read from the dataset that built it.

A task gets the eval split (a :class:`DatasetSplit`), not its dataset, and the split may be a subsample
(``test@500``) or a validation part of one; the dataset's ground truth speaks of the items of a plain
split. So the dataset is built again from the registry (the entry's options when it is the entry's own
dataset, the defaults for a shifted entry's eval dataset, as the runner builds them), its version
checked against the split's, the ground truth of the plain split read once per run and kept, and its
items mapped onto the split's through the item ids. Only what lies wholly inside the split is kept: a
swap whose target was left out of a subsample has no right answer among its candidates.
"""

from __future__ import annotations

import functools
import json
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from align.bench.plan.config import DatasetSpec
from align.bench.plan.tasks import GROUND_TRUTH, missing_truth
from align.data.base import DatasetSplit
from align.data.subsample import parse_split
from align.errors import BadInputError


@dataclass(frozen=True)
class BaseTruth:
    """A plain split's ground truth as the dataset gives it, and the id of each of its items."""

    records: tuple[Any, ...]  # Swap or Question records (align.data.shapes_truth), in the split's item numbers
    item_ids: tuple[str, ...]


@functools.lru_cache(maxsize=16)
def _base_truth(task: str, dataset: str, options: str, version: str, base: str) -> BaseTruth:
    """The ground truth of plain split ``base`` (kept for the run: every aligner and seed reads the same)."""
    from align.registry import DATASETS

    source = DATASETS.create(dataset, **json.loads(options))
    method = getattr(source, GROUND_TRUTH[task][0], None)
    if not callable(method):
        raise BadInputError(missing_truth(task, dataset))
    built = str(getattr(source, "version", ""))
    if built != version:
        raise BadInputError(f"dataset {dataset!r}: built again for task {task!r} it is version {built!r}, not the "
                            f"eval split's {version!r}, so its ground truth may not describe these images")
    ids = source.load(base).item_ids
    if ids is None or len(set(ids)) != len(ids):
        raise BadInputError(f"dataset {dataset!r}, split {base!r}: needs distinct item ids to follow a "
                            f"subsample's items to their ground truth ({task})")
    return BaseTruth(tuple(method(base)), tuple(str(i) for i in ids))


def _plain(split: DatasetSplit) -> tuple[str, str]:
    """The plain split behind ``split`` (``test@500`` and ``train@1000~val0.2~seed0`` name ``test``, ``train``)
    and the version the dataset itself has (a subsample's or a part's suffixes removed)."""
    base, _ = parse_split(split.split.split("~", 1)[0])
    return base, split.version.split("+", 1)[0]


def truth_for(task: str, spec: DatasetSpec, split: DatasetSplit) -> tuple[list[Any], list[int]]:
    """The ground truth of ``task`` for the plain split behind ``split``, and for each item of ``split`` its
    number in that plain split (ground truth records number items of the plain split)."""
    base, version = _plain(split)
    options = spec.options if split.dataset == spec.name else {}
    truth = _base_truth(task, split.dataset, json.dumps(options, sort_keys=True), version, base)
    if split.item_ids is None:
        raise BadInputError(f"dataset {split.dataset!r}, split {split.split!r}: has no item ids to find its "
                            f"ground truth ({task}) by")
    where = {item: row for row, item in enumerate(truth.item_ids)}
    unknown = [i for i in split.item_ids if str(i) not in where]
    if unknown:
        raise BadInputError(f"dataset {split.dataset!r}, split {split.split!r}: item {unknown[0]!r} is not in "
                            f"split {base!r}, whose ground truth ({task}) this is")
    return list(truth.records), [where[str(i)] for i in split.item_ids]


def arithmetic_swaps(spec: DatasetSpec, split: DatasetSplit) -> list[tuple[int, int, str, str, str]]:
    """``(source, target, attribute, old, new)`` of every swap with both images in ``split`` (its item numbers)."""
    swaps, rows = truth_for("visual_arithmetic", spec, split)
    inside = {row: i for i, row in enumerate(rows)}
    return [(inside[s.source], inside[s.target], s.attribute, s.old, s.new) for s in swaps
            if s.source in inside and s.target in inside]


@dataclass(frozen=True)
class SplitQuestions:
    """The questions about the images of a split, and every answer each attribute has in the plain split."""

    images: list[int]
    questions: list[str]
    answers: list[str]
    attributes: list[str]
    candidates: dict[str, list[str]]


def split_questions(spec: DatasetSpec, split: DatasetSplit) -> SplitQuestions:
    """The questions about ``split``'s images; an attribute's candidates are all its answers in the whole
    plain split, so a subsample that happens to miss an answer does not make its questions easier."""
    asked, rows = truth_for("attribute_questions", spec, split)
    inside = {row: i for i, row in enumerate(rows)}
    candidates: dict[str, set[str]] = {}
    for q in asked:
        candidates.setdefault(q.attribute, set()).add(q.answer)
    kept: Sequence[Any] = [q for q in asked if q.item in inside]
    return SplitQuestions([inside[q.item] for q in kept], [q.question for q in kept], [q.answer for q in kept],
                          [q.attribute for q in kept], {a: sorted(c) for a, c in sorted(candidates.items())})
