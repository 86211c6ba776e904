"""benchmarks/codebook_vlp_compare.py's epoch grid: which count the validation chooses (the best mean over the
arms, ties to fewer epochs), how ``--extend-grid`` doubles the top while it is best, and the validation table.
Pure functions of scores and saved runs, so the full run and ``--report`` replay the same search."""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch

from _codebook_vlp_tables import METRICS  # the metrics' headers
from _common import markdown_table  # benchmarks/_common.py


def checkpoint_epochs(directory: Path) -> int | None:
    """Epochs completed by the ``last.ckpt`` in ``directory`` (an upper bound), or None."""
    path = directory / "last.ckpt"
    if not path.is_file():
        return None
    try:
        return int(torch.load(path, map_location="cpu", weights_only=True)["epoch"]) + 1
    except Exception:  # noqa: BLE001 - an unreadable checkpoint is simply not resumed
        return 10**9


def choose_epochs(scores: Mapping[int, float]) -> int:
    """The epoch count with the best validation score (ties: fewer epochs)."""
    return max(sorted(scores), key=lambda e: (scores[e], -e))


@dataclasses.dataclass(frozen=True)
class GridSearch:
    """Where the epoch grid's search ended."""

    chosen: int
    scores: dict[int, float]  # validation score of every count tried
    at_edge: bool  # the chosen count is the largest tried: validation may still have been climbing
    added: list[int]  # counts --extend-grid added past the given grid


def search_grid(grid: Sequence[int], evaluate: Callable[[int], float], extend: bool = False,
                limit: int = 24) -> GridSearch:
    """``evaluate(epochs)`` for each count of ``grid`` in increasing order (the fits resume from one count to
    the next). With ``extend``, while the best count is the largest tried and under ``limit``, the top is
    doubled (capped at ``limit``) and evaluated: a budget at the grid's edge may be short of the optimum,
    and one inside it (a larger count scored lower) is not."""
    points, scores, added = sorted(set(grid)), {}, []
    while points:
        epochs = points.pop(0)
        scores[epochs] = evaluate(epochs)
        top = max(scores)
        if not points and extend and choose_epochs(scores) == top and top < limit:
            points.append(min(2 * top, limit))
            added.append(points[-1])
    chosen = choose_epochs(scores)
    return GridSearch(chosen, scores, chosen == max(scores), added)


def grid_validation(labels: Sequence[str], grid: Sequence[int], run: Callable[[str, int], dict[str, Any]],
                    extend: bool = False, limit: int = 24) -> tuple[GridSearch, dict[str, dict[int, dict]]]:
    """:func:`search_grid` over the mean validation I→T R@1 of the arms, each arm's run at a count given by
    ``run(label, epochs)`` (a fit, or a saved one for ``--report``, which so replays the same search)."""
    found: dict[str, dict[int, dict]] = {label: {} for label in labels}

    def evaluate(epochs: int) -> float:
        for label in labels:
            found[label][epochs] = run(label, epochs)
        return float(np.mean([found[label][epochs]["i2t_r1"] for label in labels]))

    return search_grid(grid, evaluate, extend, limit), found


def last_epoch(result: Mapping[str, Any], key: str) -> float | None:
    """The last training epoch's value of ``key`` in a fit's history (None where it was not recorded)."""
    values = (result.get("history") or {}).get(key) or []
    return values[-1] if values else None


def validation_table(found: dict[str, dict[int, dict]], search: GridSearch) -> list[str]:
    """Each arm at each epoch count, with its last epoch's training MIM accuracy beside the marginal's (what
    always naming the batch's most frequent code scores): MIM shapes the encoder only where the first is
    clearly above the second. Likewise its last epoch's ITM loss, to read against ``itm_prior_loss()``:
    re-ranking can only help once the matching head has left it."""
    keys = ("i2t_r1", "t2i_r1", "i2t_r1_rr", "t2i_r1_rr", "subcat_acc1")
    rows = []
    for label, per_epochs in found.items():
        for epochs, r in sorted(per_epochs.items()):
            mark = " (chosen)" if epochs == search.chosen else ""
            rows.append((label, f"{epochs}{mark}", *(r.get(k) for k in keys), r.get("perplexity"),
                         last_epoch(r, "mim_acc"), last_epoch(r, "mim_marginal"), last_epoch(r, "itm"),
                         f"{r['train_s']:.0f}"))
    rows += [("mean over arms", f"{e}{' (chosen)' if e == search.chosen else ''}", search.scores[e],
              *([None] * (len(keys) + 3)), "") for e in sorted(search.scores)]
    header = ("model (seed 0)", "epochs", *(METRICS[k][0] for k in keys), "code perplexity",
              "MIM acc (train, last epoch)", "MIM marginal", "ITM loss (train, last epoch)", "train s (resumed)")
    return markdown_table(header, rows, formats=[".3f"] * (2 + len(keys)) + [".1f", ".3f", ".3f", ".3f", ""],
                          align="ll" + "r" * (len(header) - 2), missing="")


def edge_note(search: GridSearch, extend: bool, limit: int) -> str:
    """Whether the chosen count is inside the grid, and what to do when it is not."""
    tried = sorted(search.scores)
    added = f" (`--extend-grid` added {search.added})" if search.added else ""
    if not search.at_edge:
        return (f"The chosen count is inside the grid {tried}{added}: a larger count scored lower on validation.")
    what = (f"`--extend-grid` stopped at `--grid-limit` {limit}" if extend else
            "rerun with `--extend-grid` to add counts past it (the fits resume from the checkpoints kept "
            "under the runs' `val/checkpoints/`)")
    return (f"**At the grid's top edge**: the chosen count {search.chosen} is the largest tried {tried}{added}, so "
            f"validation may still have been climbing and every arm may be short of its optimum; {what}.")
