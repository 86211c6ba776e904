"""Aggregate result files into a leaderboard: mean and std over seeds with a 95% interval, Markdown and CSV.

Each cell's interval is a bootstrap over the test items pooled over seeds, and a row's best cell is
bold only where the paired bootstrap tells it apart from the runner-up (:mod:`align.bench.report.uncertainty`).

A shifted result (fit on one dataset, scored on another: its ``shift`` field) is its own row, shown as
``fit→eval`` with a note under the table, and its CSV row names the eval dataset in ``eval_dataset``."""

from __future__ import annotations

import csv
import io
import statistics
from collections import defaultdict
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from align.atomic import atomic_path
from align.bench.record.result_files import read_results
from align.bench.report.uncertainty import BOOTSTRAP, add_intervals, load_items, standing
from align.errors import AlignError
from align.eval.items import Items

# The headline metric of each task in the leaderboard (all metrics stay in the CSV).
MAIN_METRICS = {
    "zeroshot_classification": ("acc1",),
    "zeroshot_retrieval": ("image_retrieval_recall@1", "text_retrieval_recall@1"),
    "linear_probe": ("acc1",),
    "fewshot": ("acc1",),
    "captioning": ("CIDEr",),
    "code_statistics": ("code_class_nmi", "code_perplexity"),
    "visual_arithmetic": ("recall@1", "recall@5"),
    "attribute_questions": ("acc1",),
}
_SHORT = {"image_retrieval_recall@1": "T→I R@1", "text_retrieval_recall@1": "I→T R@1", "acc1": "acc1",
          "CIDEr": "CIDEr", "code_class_nmi": "code NMI", "code_perplexity": "code ppl", "recall@1": "R@1",
          "recall@5": "R@5"}


def aggregate(results: Sequence[dict[str, Any]], items: Sequence[Items | None] | None = None) -> list[dict[str, Any]]:
    """One row per (encoders, aligner, dataset, task, splits, label set) with mean/std/values per metric;
    with ``items`` (each result's per-item outputs, :func:`align.bench.report.uncertainty.load_items`), each
    metric also gets its 95% interval (``low``, ``high``) and its seeds' items (``items``), which the
    leaderboard compares cell against cell."""
    groups: dict[tuple[Any, ...], list[tuple[dict[str, Any], Items | None]]] = defaultdict(list)
    for r, found in zip(results, items if items is not None else [None] * len(results)):
        key = (r.get("image_encoder", ""), r.get("text_encoder", ""), r["model"], r["dataset"], r["task"],
               r.get("eval_split", ""), r.get("label_set") or "", (r.get("shift") or {}).get("eval", ""))
        groups[key].append((r, found))
    return [_row(key, sorted(members, key=lambda m: m[0].get("seed", 0))) for key, members in sorted(groups.items())]


def _row(key: tuple[Any, ...], members: list[tuple[dict[str, Any], Items | None]]) -> dict[str, Any]:
    image_enc, text_enc, aligner, dataset, task, split, label_set, shifted = key
    results = [r for r, _ in members]
    by_seed = {r.get("seed", 0): found for r, found in members}
    seed_items = by_seed if all(found is not None for found in by_seed.values()) else None
    metrics: dict[str, dict[str, Any]] = {}
    for name in sorted({m for r in results for m in r["metrics"]}):
        values = [r["metrics"][name] for r in results if name in r["metrics"]]
        metrics[name] = {"mean": statistics.fmean(values), "std": statistics.stdev(values) if len(values) > 1 else 0.0,
                         "values": values, "items": seed_items}
    add_intervals(metrics, seed_items)
    reasons = {r.get("task_details", {}).get("not_applicable") for r in results} - {None}
    timed = [r for r in results if isinstance(r.get("wall_time_s"), dict)]
    encoded = [r for r in timed if isinstance(r["wall_time_s"].get("encoding"), dict)]
    return {"fit_seconds": {_fit_key(r): float(r["wall_time_s"].get("fit", 0.0)) for r in timed},
            "task_seconds": sum(float(r["wall_time_s"].get("task", 0.0)) for r in timed),
            "fit_encoding_seconds": {_fit_key(r): float(r["wall_time_s"]["encoding"].get("fit", 0.0)) for r in encoded},
            "task_encoding_seconds": sum(float(r["wall_time_s"]["encoding"].get("task", 0.0)) for r in encoded),
            "untimed": len(results) - len(timed), "encoding_untimed": len(timed) - len(encoded),
            "image_encoder": image_enc, "text_encoder": text_enc, "aligner": aligner, "dataset": dataset,
            "task": task, "eval_split": split, "label_set": label_set, "eval_dataset": shifted,
            "seeds": sorted(r.get("seed", 0) for r in results), "metrics": metrics,
            "not_applicable": " / ".join(sorted(reasons))}


def cell_text(stat: dict[str, Any] | None) -> str:
    """``0.945 [0.930, 0.958]`` (mean over seeds and its 95% interval), with ``± std`` over several seeds."""
    if stat is None:
        return "–"
    text = f"{stat['mean']:.3f}"
    if len(stat["values"]) > 1:
        text += f" ± {stat['std']:.3f}"
    if "low" in stat:
        text += f" [{stat['low']:.3f}, {stat['high']:.3f}]"
    return text


def marked_cell(stat: dict[str, Any] | None, mark: str) -> str:
    """A cell as the Markdown leaderboard shows it: bold when best and told apart, ``≈`` when tied."""
    text = cell_text(stat)
    return f"**{text}**" if mark == "best" else f"≈ {text}" if mark == "tied" else text


Entity = tuple[str, str, str]  # (aligner, image encoder, text encoder): one leaderboard column


def grid(rows: Sequence[dict[str, Any]]) -> tuple[list[tuple[Entity, str]], dict[tuple[str, str, str], dict[Entity, Any]]]:
    """The leaderboard's columns (entity and its header) and its rows: ``(dataset label, task, metric)`` to
    each entity's statistics (None where it has none), as ``markdown`` and the HTML report show them
    (:func:`align.bench.report.uncertainty.standing` marks each row's best or tied cells)."""
    pairs = sorted({(r["image_encoder"], r["text_encoder"]) for r in rows})
    entities: list[Entity] = sorted({(r["aligner"], r["image_encoder"], r["text_encoder"]) for r in rows},
                                    key=lambda e: (e[1], e[2], e[0]))

    # one column per aligner when each aligner ran beside one encoder pair (e.g. VLAP beside its own
    # LM table, the others beside a sentence encoder); else one per aligner and pair
    by_aligner = len({e[0] for e in entities}) == len(entities)

    def column(entity: Entity) -> str:
        return entity[0] if len(pairs) == 1 or by_aligner else f"{entity[0]} ({entity[1]} + {entity[2]})"

    lines_by_metric: dict[tuple[str, str, str], dict[Entity, Any]] = defaultdict(dict)
    for row in rows:
        dataset = _dataset_label(row)
        for metric in MAIN_METRICS.get(row["task"], ()):
            lines_by_metric[(dataset, row["task"], metric)][(row["aligner"], row["image_encoder"],
                                                             row["text_encoder"])] = row["metrics"].get(metric)
    return [(e, column(e)) for e in entities], dict(sorted(lines_by_metric.items()))


def encoder_lines(rows: Sequence[dict[str, Any]]) -> list[str]:
    """Which encoders the columns used (one line, or one per encoder pair when columns are per aligner)."""
    pairs = sorted({(r["image_encoder"], r["text_encoder"]) for r in rows})
    entities = {(r["aligner"], r["image_encoder"], r["text_encoder"]) for r in rows}
    if len(pairs) == 1:
        return [f"Encoders: image `{pairs[0][0]}`, text `{pairs[0][1]}`."]
    if len({e[0] for e in entities}) != len(entities):
        return []
    return [f"Encoders of {', '.join(sorted(e[0] for e in entities if e[1:] == pair))}: image `{pair[0]}`, "
            f"text `{pair[1]}`." for pair in pairs]


def markdown(rows: Sequence[dict[str, Any]]) -> str:
    """One row per dataset/task headline metric, one column per aligner (per encoder pair when a run
    has several). Each cell is the mean over seeds and its 95% interval; a row's best cell is bold only
    when the paired bootstrap tells it apart from the runner-up, else the cells tied with it are marked."""
    columns, lines_by_metric = grid(rows)
    header = ["dataset", "task", "metric", *(name for _, name in columns)]
    lines = encoder_lines(rows)
    lines += [""] if lines else []
    lines += ["| " + " | ".join(header) + " |", "|" + "---|" * 3 + "---:|" * len(columns)]
    for (dataset, task, metric), stats in lines_by_metric.items():
        verdict = standing(stats, metric)
        cells = [marked_cell(stats.get(entity), verdict.mark(entity)) for entity, _ in columns]
        lines.append("| " + " | ".join([dataset, task, short_metric(metric), *cells]) + " |")
    return "\n".join(lines + notes(rows))


def short_metric(metric: str) -> str:
    return _SHORT.get(metric, metric)


def _fit_key(result: dict[str, Any]) -> tuple[Any, ...]:
    """What one fit is: several tasks, or several label sets of one dataset, are scored on the same fit."""
    return (result.get("image_encoder", ""), result.get("text_encoder", ""), result["model"], result["dataset"],
            result.get("fit_split", ""), result.get("seed", 0), repr(sorted((result.get("hparams") or {}).items())))


def notes(rows: Sequence[dict[str, Any]]) -> list[str]:
    """The lines under the table: how sure the cells are, shifted rows, why some cells are "–", and how
    long each aligner took."""
    return _interval_notes(rows) + _shift_notes(rows) + _not_applicable_notes(rows) + _time_notes(rows)


def _time_notes(rows: Sequence[dict[str, Any]]) -> list[str]:
    """Each aligner's wall time from its result files (``wall_time_s``): its fits, each counted once, and its
    scoring, over every dataset and seed of the table; the time spent encoding features apart, where every
    result records it (older results count it in the fit or task that first needed the features);
    aligners with an untimed result are named."""
    fits: dict[str, dict[tuple[Any, ...], float]] = defaultdict(dict)
    fit_encoding: dict[str, dict[tuple[Any, ...], float]] = defaultdict(dict)
    scoring: dict[str, float] = defaultdict(float)
    encoding: dict[str, float] = defaultdict(float)
    untimed = sorted({row["aligner"] for row in rows if row.get("untimed")})
    for row in rows:
        for key, seconds in row.get("fit_seconds", {}).items():
            fits[row["aligner"]][key] = max(seconds, fits[row["aligner"]].get(key, 0.0))
        for key, seconds in row.get("fit_encoding_seconds", {}).items():
            fit_encoding[row["aligner"]][key] = max(seconds, fit_encoding[row["aligner"]].get(key, 0.0))
        scoring[row["aligner"]] += row.get("task_seconds", 0.0)
        encoding[row["aligner"]] += row.get("task_encoding_seconds", 0.0)
    timed = sorted(name for name in scoring if name not in untimed)
    if not timed:
        return []
    apart = not any(row.get("encoding_untimed") for row in rows if row["aligner"] in timed)
    cells = []
    for name in timed:
        cells.append(f"{name} {sum(fits[name].values()):.0f} + {scoring[name]:.0f}")
        if apart and (encoded := sum(fit_encoding[name].values()) + encoding[name]) >= 0.5:
            cells[-1] += f" (+ {encoded:.0f} encoding)"
    how = ("the time spent encoding features in brackets, paid by the aligner that first needed them and "
           "read from the cache by the others" if apart else
           "the aligner run first on a dataset also pays for encoding the features that the others then read "
           "from the cache")
    lines = ["", "Wall time in seconds, fitting + scoring, summed over the table's datasets and seeds, from each "
                 "result's `wall_time_s` on the machine that wrote it (a fit that several tasks or label sets share "
                 f"counted once; {how}): {', '.join(cells)}."]
    if untimed:
        lines[-1] += f" Not timed (results without `wall_time_s`): {', '.join(untimed)}."
    return lines


def _interval_notes(rows: Sequence[dict[str, Any]]) -> list[str]:
    """What the brackets, bold and ``≈`` mean, and which rows have no interval (results without per-item outputs)."""
    shown = [(row, stat) for row in rows for metric in MAIN_METRICS.get(row["task"], ())
             if (stat := row["metrics"].get(metric)) is not None]
    lines = []
    if any("low" in stat for _, stat in shown):
        lines += ["", f"[low, high]: {BOOTSTRAP.describe()} (pooled over seeds; ± is the std over seeds). "
                      "**Bold**: the row's best, told apart from the runner-up by a paired bootstrap over the same "
                      "test items (its 95% interval of the difference excludes 0); ≈: tied with the best (that "
                      "interval includes 0), so the row has no single best."]
    missing = sorted({f"{row['aligner']} on {_dataset_label(row)}" for row, stat in shown
                      if stat.get("items") is None})
    if missing:
        lines += ["", f"No interval (written by an older align, without per-item outputs; rerun `align bench` into "
                      f"this folder to add them): {', '.join(missing)}."]
    pooled = sorted({short_metric(metric) for row in rows for metric in MAIN_METRICS.get(row["task"], ())
                     if (stat := row["metrics"].get(metric)) is not None and stat.get("items") and "low" not in stat})
    if pooled:
        lines += ["", f"No interval for {', '.join(pooled)}: a statistic of the pooled test items, not a mean over "
                      "them, which a bootstrap draw would shift; these cells are not compared."]
    return lines


def _dataset_label(row: dict[str, Any]) -> str:
    """``emoji/subcategory``, or ``emoji→emoji.twitter/subcategory`` for a shifted row."""
    shifted = row.get("eval_dataset")
    return row["dataset"] + (f"→{shifted}" if shifted else "") + (f"/{row['label_set']}" if row["label_set"] else "")


def _shift_notes(rows: Sequence[dict[str, Any]]) -> list[str]:
    """One line saying which rows were scored on another dataset than their aligners were fitted on."""
    shifted = sorted({(r["dataset"], r["eval_dataset"]) for r in rows if r.get("eval_dataset")})
    if not shifted:
        return []
    pairs = ", ".join(f"{fit}→{scored}" for fit, scored in shifted)
    return ["", f"Shifted evaluation (fitted on the first dataset, scored on the second's eval split): {pairs}."]


def _not_applicable_notes(rows: Sequence[dict[str, Any]]) -> list[str]:
    """One line per aligner and reason for the "–" cells of tasks it cannot do."""
    tasks: dict[tuple[str, str], set[str]] = defaultdict(set)
    for row in rows:
        if row.get("not_applicable"):
            tasks[(row["aligner"], row["not_applicable"])].add(row["task"])
    if not tasks:
        return []
    notes = [f"- {aligner} ({', '.join(sorted(names))}): {reason}." for (aligner, reason), names in sorted(tasks.items())]
    return ["", "Not applicable (–):", *notes]


def csv_text(rows: Sequence[dict[str, Any]]) -> str:
    """Every metric's mean and std over seeds and its 95% interval (``ci_low``/``ci_high``: empty where the
    result has no per-item outputs or the metric is a corpus statistic); the bootstrap's settings last."""
    metrics = sorted({m for row in rows for m in row["metrics"]})
    out = io.StringIO()
    writer = csv.writer(out)
    fields = ("mean", "std", "ci_low", "ci_high")
    writer.writerow(["image_encoder", "text_encoder", "aligner", "dataset", "task", "eval_split", "label_set", "seeds",
                     "eval_dataset", *[f"{m}_{f}" for m in metrics for f in fields], "bootstrap"])
    for row in rows:
        stats = [row["metrics"].get(m) for m in metrics]
        values = [s.get(key) if s else None for s in stats for key in ("mean", "std", "low", "high")]
        writer.writerow([row["image_encoder"], row["text_encoder"], row["aligner"], row["dataset"], row["task"],
                         row["eval_split"], row["label_set"], " ".join(map(str, row["seeds"])), row["eval_dataset"],
                         *["" if v is None else f"{v:.6f}" for v in values], BOOTSTRAP.describe()])
    return out.getvalue()


def write_report(results_dir: Path) -> str:
    """Write ``leaderboard.md`` and ``leaderboard.csv`` into ``results_dir`` (and ``sweeps.md`` when some
    aligner was swept, :mod:`align.bench.report.sweeps`); return the leaderboard's Markdown."""
    from align.bench.report.sweeps import sweep_markdown

    results = read_results(results_dir)  # every result file verified; any that is not is an error naming it
    rows = aggregate(results, load_items(Path(results_dir), results))
    text = markdown(rows)
    outputs = [("leaderboard.md", text + "\n"), ("leaderboard.csv", csv_text(rows))]
    sweeps = sweep_markdown(results)
    if sweeps:
        outputs.append(("sweeps.md", sweeps + "\n"))
    for name, content in outputs:
        target = Path(results_dir) / name
        try:
            with atomic_path(target) as tmp:
                tmp.write_text(content)
        except OSError as err:
            raise AlignError(f"{target}: cannot write the leaderboard ({err.strerror or err})") from None
    return text
