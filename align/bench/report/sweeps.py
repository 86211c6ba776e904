"""``sweeps.md``: what each sweep of a results folder selected, and one grid point per aligner across them.

The cross-dataset choice (:func:`align.bench.plan.sweeps.consensus`) reads validation scores only: each dataset
entry's scores are first averaged over seeds (the seeds draw different validation parts, so the mean is
less noisy), then compared across entries. The test column shows the selected point's test score on the
selection metric, for the record, and chooses nothing.
"""

from __future__ import annotations

import json
from collections import defaultdict
from collections.abc import Sequence
from typing import Any

from align.bench.plan.sweeps import consensus


def _point(values: dict[str, Any]) -> str:
    return ", ".join(f"{k}={v}" for k, v in values.items())


def _runs(results: Sequence[dict[str, Any]]) -> dict[tuple[str, str, str], dict[tuple[Any, ...], dict[str, Any]]]:
    """(aligner, encoder pair, grid) -> one entry per sweep (dataset entry x seed), with its test score.

    A shifted entry (``shift``) selects on the same fit split as its unshifted twin, so it is the same
    sweep: it is shown only when no unshifted result has it, and never counted twice."""
    groups: dict[tuple[str, str, str], dict[tuple[Any, ...], dict[str, Any]]] = defaultdict(dict)
    for r in sorted(results, key=lambda r: ((r.get("shift") or {}).get("eval") or "")):  # unshifted first
        sweep = r.get("sweep")
        if not sweep:
            continue
        group = (r["model"], r.get("pretrained", ""), json.dumps(sweep["grid"]))
        run = (r["dataset"], r.get("label_set") or "", r.get("fit_split", ""), r.get("seed", 0))
        scored_on = (r.get("shift") or {}).get("eval")
        entry = groups[group].setdefault(run, {"sweep": sweep, "test": None, "scored_on": scored_on})
        if entry["scored_on"] != scored_on:
            continue
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
            scored_on = f"→{entry['scored_on']}" if entry["scored_on"] else ""  # test column of a shifted entry
            lines.append(f"| {dataset + scored_on + ('/' + label_set if label_set else '')} | {fit_split} | "
                         f"{sweep['select']['task']} {sweep['select']['metric']} | {seed} | {_point(sweep['selected'])} | "
                         f"{sweep['validation_score']:.3f} | {'–' if test is None else f'{test:.3f}'} |")
        points = [p["hparams"] for p in first["points"]]
        by_entry: dict[str, list[list[float]]] = defaultdict(list)
        for (dataset, label_set, fit_split, _), entry in sorted(runs.items()):
            by_entry[dataset + (f"/{label_set}" if label_set else "")].append(
                [p["score"] for p in entry["sweep"]["points"]])
        seed_means = {name: [sum(col) / len(col) for col in zip(*scores)] for name, scores in by_entry.items()}
        index, means, worst, supported = consensus(list(seed_means.values()), tolerance)
        relative = {name: [s / max(scores) for s in scores] for name, scores in seed_means.items()}
        lines += ["", f"Across the {len(by_entry)} dataset entries (validation scores averaged over seeds, "
                  "each divided by the entry's best point):", "",
                  "| point | mean | worst | " + " | ".join(relative) + " |", "|---|---:|---:|" + "---:|" * len(relative)]
        for i, point in enumerate(points):
            mark = "**" if i == index else ""
            cells = " | ".join(f"{r[i]:.3f}" for r in relative.values())
            lines.append(f"| {mark}{_point(point)}{mark} | {means[i]:.3f} | {worst[i]:.3f} | {cells} |")
        verdict = (f"within {tolerance:.0%} of the best point on every dataset entry" if supported
                   else f"not within {tolerance:.0%} of the best point on every dataset entry (worst {worst[index]:.3f})")
        lines += ["", f"Highest mean: {_point(points[index])}, {verdict}."]
        sections.append("\n".join(lines))
    return "\n\n".join(sections)
