"""``sweeps.md``: what each sweep of a results folder selected, and one grid point per aligner across them.

The cross-sweep choice (:func:`align.bench.sweep.consensus`) reads validation scores only; the test
column shows the selected point's test score on the selection metric, for the record, and chooses nothing.
"""

from __future__ import annotations

import json
from collections import defaultdict
from collections.abc import Sequence
from typing import Any

from align.bench.sweep import consensus


def _point(values: dict[str, Any]) -> str:
    return ", ".join(f"{k}={v}" for k, v in values.items())


def _runs(results: Sequence[dict[str, Any]]) -> dict[tuple[str, str, str], dict[tuple[Any, ...], dict[str, Any]]]:
    """(aligner, encoder pair, grid) -> one entry per sweep (dataset entry x seed), with its test score."""
    groups: dict[tuple[str, str, str], dict[tuple[Any, ...], dict[str, Any]]] = defaultdict(dict)
    for r in results:
        sweep = r.get("sweep")
        if not sweep:
            continue
        group = (r["model"], r.get("pretrained", ""), json.dumps(sweep["grid"]))
        run = (r["dataset"], r.get("label_set") or "", r.get("fit_split", ""), r.get("seed", 0))
        entry = groups[group].setdefault(run, {"sweep": sweep, "test": None})
        if r["task"] == sweep["select"]["task"]:
            entry["test"] = r["metrics"].get(sweep["select"]["metric"])
    return groups


def sweep_markdown(results: Sequence[dict[str, Any]], tolerance: float = 0.05) -> str:
    """Markdown tables for every swept aligner in ``results`` ('' when nothing was swept)."""
    sections = []
    for (aligner, pair, grid_json), runs in sorted(_runs(results).items()):
        grid = json.loads(grid_json)
        first = next(iter(runs.values()))["sweep"]
        lines = [f"#### {aligner} ({pair})", "",
                 "Grid: " + "; ".join(f"{k} in {v}" for k, v in grid.items())
                 + f". Validation part: {first['validation']['fraction']:g} of each fit split. "
                 + "Selected on the validation part, refitted on the whole fit split, then scored on test.", "",
                 "| dataset | fit split | selected on | seed | selected | validation | test |",
                 "|---|---|---|---:|---|---:|---:|"]
        for (dataset, label_set, fit_split, seed), entry in sorted(runs.items()):
            sweep, test = entry["sweep"], entry["test"]
            lines.append(f"| {dataset + ('/' + label_set if label_set else '')} | {fit_split} | "
                         f"{sweep['select']['task']} {sweep['select']['metric']} | {seed} | {_point(sweep['selected'])} | "
                         f"{sweep['validation_score']:.3f} | {'–' if test is None else f'{test:.3f}'} |")
        points = [p["hparams"] for p in first["points"]]
        index, means, worst, supported = consensus(
            [[p["score"] for p in e["sweep"]["points"]] for e in runs.values()], tolerance)
        lines += ["", f"Across these {len(runs)} sweeps (validation scores, each divided by its sweep's best):", "",
                  "| point | mean relative | worst relative |", "|---|---:|---:|"]
        for i, point in enumerate(points):
            mark = "**" if i == index else ""
            lines.append(f"| {mark}{_point(point)}{mark} | {means[i]:.3f} | {worst[i]:.3f} |")
        verdict = (f"within {tolerance:.0%} of the best point in every sweep" if supported
                   else f"not within {tolerance:.0%} of the best point in every sweep (worst {worst[index]:.3f})")
        lines += ["", f"Highest mean: {_point(points[index])}, {verdict}."]
        sections.append("\n".join(lines))
    return "\n\n".join(sections)
