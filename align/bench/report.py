"""Aggregate result files into a leaderboard: mean and std over seeds, Markdown and CSV."""

from __future__ import annotations

import csv
import io
import statistics
from collections import defaultdict
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from align.atomic import atomic_path
from align.bench.results import read_results

# The headline metric of each task in the leaderboard (all metrics stay in the CSV).
MAIN_METRICS = {
    "zeroshot_classification": ("acc1",),
    "zeroshot_retrieval": ("image_retrieval_recall@1", "text_retrieval_recall@1"),
    "linear_probe": ("acc1",),
    "fewshot": ("acc1",),
}
_SHORT = {"image_retrieval_recall@1": "T→I R@1", "text_retrieval_recall@1": "I→T R@1", "acc1": "acc1"}


def aggregate(results: Sequence[dict[str, Any]]) -> list[dict[str, Any]]:
    """One row per (encoders, aligner, dataset, task, splits, label set) with mean/std/values per metric."""
    groups: dict[tuple[Any, ...], list[dict[str, Any]]] = defaultdict(list)
    for r in results:
        key = (r.get("image_encoder", ""), r.get("text_encoder", ""), r["model"], r["dataset"], r["task"],
               r.get("eval_split", ""), r.get("label_set") or "")
        groups[key].append(r)
    rows = []
    for (image_enc, text_enc, aligner, dataset, task, split, label_set), members in sorted(groups.items()):
        metrics: dict[str, dict[str, Any]] = {}
        for name in sorted({m for r in members for m in r["metrics"]}):
            values = [r["metrics"][name] for r in sorted(members, key=lambda r: r.get("seed", 0)) if name in r["metrics"]]
            metrics[name] = {"mean": statistics.fmean(values),
                             "std": statistics.stdev(values) if len(values) > 1 else 0.0, "values": values}
        rows.append({"image_encoder": image_enc, "text_encoder": text_enc, "aligner": aligner, "dataset": dataset,
                     "task": task, "eval_split": split, "label_set": label_set,
                     "seeds": sorted(r.get("seed", 0) for r in members), "metrics": metrics})
    return rows


def _cell(stat: dict[str, Any] | None) -> str:
    if stat is None:
        return "–"
    if len(stat["values"]) > 1:
        return f"{stat['mean']:.3f} ± {stat['std']:.3f}"
    return f"{stat['mean']:.3f}"


def markdown(rows: Sequence[dict[str, Any]]) -> str:
    """Aligners (with their encoders) as rows; dataset/task headline metrics as columns."""
    columns: list[tuple[str, str, str]] = []
    for row in rows:
        for metric in MAIN_METRICS.get(row["task"], ()):
            column = (row["dataset"] + (f"/{row['label_set']}" if row["label_set"] else ""), row["task"], metric)
            if column not in columns:
                columns.append(column)
    table: dict[tuple[str, str, str], dict[tuple[str, str, str], Any]] = defaultdict(dict)
    for row in rows:
        entity = (row["aligner"], row["image_encoder"], row["text_encoder"])
        dataset = row["dataset"] + (f"/{row['label_set']}" if row["label_set"] else "")
        for metric in MAIN_METRICS.get(row["task"], ()):
            table[entity][(dataset, row["task"], metric)] = row["metrics"].get(metric)
    header = ["aligner", "image encoder", "text encoder"] + [
        f"{d} {t.replace('zeroshot_', 'zs_')} {_SHORT.get(m, m)}" for d, t, m in columns]
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * 3 + "---:|" * len(columns)]
    for entity in sorted(table):
        cells = [_cell(table[entity].get(c)) for c in columns]
        lines.append("| " + " | ".join([*entity, *cells]) + " |")
    return "\n".join(lines)


def csv_text(rows: Sequence[dict[str, Any]]) -> str:
    metrics = sorted({m for row in rows for m in row["metrics"]})
    out = io.StringIO()
    writer = csv.writer(out)
    writer.writerow(["image_encoder", "text_encoder", "aligner", "dataset", "task", "eval_split", "label_set", "seeds",
                     *[f"{m}_{s}" for m in metrics for s in ("mean", "std")]])
    for row in rows:
        stats = [row["metrics"].get(m) for m in metrics]
        writer.writerow([row["image_encoder"], row["text_encoder"], row["aligner"], row["dataset"], row["task"],
                         row["eval_split"], row["label_set"], " ".join(map(str, row["seeds"])),
                         *[f"{s[k]:.6f}" if s else "" for s in stats for k in ("mean", "std")]])
    return out.getvalue()


def write_report(results_dir: Path) -> str:
    """Write ``leaderboard.md`` and ``leaderboard.csv`` into ``results_dir``; return the Markdown."""
    rows = aggregate(read_results(results_dir))
    text = markdown(rows)
    for name, content in (("leaderboard.md", text + "\n"), ("leaderboard.csv", csv_text(rows))):
        with atomic_path(Path(results_dir) / name) as tmp:
            tmp.write_text(content)
    return text
