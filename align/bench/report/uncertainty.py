"""Intervals for a leaderboard: each cell's bootstrap interval, and which cells of a row can be told apart.

Every cell is a mean over seeds; its interval is the percentile bootstrap over the test items, pooled
over the seeds (:mod:`align.eval.bootstrap`). A row's best cell is bold only when its paired interval
against the runner-up excludes zero; otherwise every cell whose paired interval against the best
includes zero is marked as tied with it. Results written before per-item outputs existed have no
interval, and their rows mark nothing.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any, TypeVar

from align.bench.record.item_files import ItemsProblem, read_items
from align.bench.record.result_files import UnreadableResults, result_location
from align.errors import BadInputError
from align.eval.bootstrap import Bootstrap, metric_interval, paired_difference
from align.eval.items import Items

BOOTSTRAP = Bootstrap()  # the leaderboard's settings: 1000 resamples, seed 0, 95%
Key = TypeVar("Key")


def load_items(root: Path, results: Sequence[dict[str, Any]]) -> list[Items | None]:
    """Each result's verified per-item outputs (None for one that has none: an older align's, or a task
    the aligner cannot do); damaged or swapped items files are an error naming every one of them."""
    found: list[Items | None] = []
    problems = []
    for result in results:
        if "items" not in result:
            found.append(None)
            continue
        try:
            found.append(read_items(result, result_location(Path(root), result)))
        except ItemsProblem as err:
            problems.append(str(err))
            found.append(None)
    if problems:
        raise UnreadableResults(problems)
    return found


def add_intervals(metrics: dict[str, dict[str, Any]], items: Mapping[int, Items] | None,
                  boot: Bootstrap = BOOTSTRAP) -> None:
    """Give each metric statistic of a row its interval (``low``, ``high``) where its items allow one."""
    if not items:
        return
    for name, stat in metrics.items():
        try:
            interval = metric_interval(list(items.values()), name, boot)
        except BadInputError:  # a corpus statistic that is not resampled (k-means NMI, BLEU)
            continue
        stat.update(low=interval.low, high=interval.high)


@dataclasses.dataclass(frozen=True)
class Standing:
    """A row's verdict: the best cell when it is told apart from the runner-up, else the tied cells."""

    best: Any | None = None  # bold: the best cell, separated from every other
    tied: frozenset[Any] = frozenset()  # marked: cells that cannot be told apart from the best

    def mark(self, key: Any) -> str:
        return "best" if key == self.best else "tied" if key in self.tied else ""


def standing(stats: Mapping[Key, dict[str, Any] | None], metric: str, boot: Bootstrap = BOOTSTRAP) -> Standing:
    """Which cell of a row is best, by the paired bootstrap over the same test items (higher is better).
    A row whose cells lack per-item outputs, or were scored on different items, marks nothing."""
    cells = {key: stat for key, stat in stats.items() if stat is not None}
    if not cells or any(not stat.get("items") for stat in cells.values()):
        return Standing()
    if len(cells) == 1:
        return Standing(best=next(iter(cells)))
    order = sorted(cells, key=lambda key: cells[key]["mean"], reverse=True)
    best = order[0]
    try:
        lower = {key: paired_difference(cells[best]["items"], cells[key]["items"], metric, boot) for key in order[1:]}
    except BadInputError:
        return Standing()
    if lower[order[1]].interval.low > 0:
        return Standing(best=best)
    tied = {best, *(key for key, diff in lower.items() if diff.interval.low <= 0)}
    return Standing(tied=frozenset(tied))
