"""LQAE's headline claim (issue 31): does a frozen LM classify images from a few examples in its prompt
when they are written as LQAE's words, better than when written as a random table's or a VQ-VAE's?

Reads the runs of ``benchmarks/lqae_study.py`` (``<runs>/<dataset>/<model>/seed<s>.json`` and their
sealed per-item outputs, which keep every test image's codes: table row ids), writes each test image
as the table's tokens joined the tokenizer's way, and scores N-way K-shot episodes with Gemma-3 270M
reading the strings (:mod:`align.eval.incontext`: letters as labels, rank classification of the
letters, a tie is a miss). Every model of a dataset gets the same episodes (the draws depend on the
test labels only), so differences between models are paired. Beside them: chance (1/N), and the
label-shuffled control (LQAE's strings with the support letters dealt out at random: a reader that
binds letters to classes falls to chance there; one that guesses from letter frequencies does not).

An episode is one support set with ``--queries`` queries that share its prompt (its key-value cache):
the support is the expensive part of a pass. Intervals resample episodes, not queries (a support set's
queries are not independent), pooled over seeds (:mod:`align.eval.bootstrap`).

Each (dataset, setting, model, seed) is one JSON file under ``--out`` holding every query's hit
(committed: small, no weights), keyed by the run's items sha256 and the episode settings, so a rerun
reuses it and a changed run is scored again.

    python benchmarks/lqae_incontext.py --runs results/lqae_study --out studies/lqae/incontext \
        --output docs/studies/lqae_incontext.md
    python benchmarks/lqae_incontext.py --saved-only ...      # the report from what is scored so far
"""

from __future__ import annotations

import argparse
import functools
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from _common import cached_run, emit, markdown_table, read_run_items, saved_run  # benchmarks/_common.py
from _lqae_data import SHAPES  # benchmarks/_lqae_data.py

MODELS = ("lqae", "random-table", "vq-vae", "lqae-lm-off", "lqae-bert")
SHUFFLED = "lqae (labels shuffled)"
CLAIMS = (("lqae", "random-table"), ("lqae", "vq-vae"), ("lqae", "lqae-lm-off"), ("lqae", SHUFFLED),
          ("lqae-bert", "lqae"))
SETTINGS = ("2x1", "2x3", "2x5", "5x1", "5x3", "5x5")  # n_way x k_shot


def log(message: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {message}", file=sys.stderr, flush=True)


def parse_setting(text: str) -> tuple[int, int]:
    n_way, _, k_shot = text.partition("x")
    try:
        return int(n_way), int(k_shot)
    except ValueError:
        raise SystemExit(f"lqae_incontext: setting {text!r} is not N x K (like 5x1)") from None


@dataclass(frozen=True)
class StudyCodes:
    """A study run's test images as codes (row ids of ``table``, the table the model quantised onto)."""

    codes: np.ndarray  # [n, T]
    labels: np.ndarray  # [n]
    sha256: str  # of the run's sealed per-item outputs
    table: str | None  # None: a run that does not name its table (read as the reader's)


def attribute_labels(dataset: str, attribute: str, count: int) -> np.ndarray:
    """Each test image's ``attribute`` (a procedural set's colour, shape, size or position), for a study run
    on ``dataset`` that scored its first ``count`` test images (the split ``load_data`` reads)."""
    import align.data  # noqa: F401  (registers the datasets)
    from align.registry import DATASETS

    if dataset != "shapes":
        raise SystemExit(f"lqae_incontext: {dataset}:{attribute}: only the procedural set (shapes) has attributes")
    split = DATASETS.create(SHAPES).load(f"test@{count}")
    if attribute not in split.extra_labels:
        raise SystemExit(f"lqae_incontext: shapes has no attribute {attribute!r} "
                         f"(it has {', '.join(split.extra_labels)})")
    labels = np.asarray(split.extra_labels[attribute].labels)
    if len(labels) != count:
        raise SystemExit(f"lqae_incontext: shapes test@{count} has {len(labels)} images, the run {count}")
    return labels


def study_codes(runs: Path, dataset: str, model: str, seed: int) -> StudyCodes | None:
    """A study run's test-image codes, verified against the sha256 its run sealed; None when not saved.
    ``dataset`` may name an attribute (``shapes:colour``): the codes of the run on ``shapes``, labelled by it."""
    import json

    dataset, _, attribute = dataset.partition(":")
    path = runs / dataset / model / f"seed{seed}.json"
    if not path.is_file():
        return None
    run = json.loads(path.read_text())
    items = read_run_items(path, run)
    if not items or "codes" not in items:
        raise SystemExit(f"lqae_incontext: {path} keeps no per-image codes (rerun it with lqae_study.py)")
    table = (run.get("key") or {}).get("table")
    codes, labels = items["codes"].codes, items["codes"].labels
    if attribute:
        labels = attribute_labels(dataset, attribute, len(codes))
    return StudyCodes(codes, labels, run["items"]["sha256"], table)


def token_texts(codes: np.ndarray, table: Any) -> list[str]:
    """Each row of ``table``'s row ids as text: its tokens joined its tokenizer's way (as ``LQAE.token_strings``;
    MiniLM's WordPiece pieces merge into words), which the reader then tokenizes its own way."""
    join = getattr(table.tokenizer, "convert_tokens_to_string", None)
    rows = [[table.tokens[int(c)] for c in row] for row in codes]
    return [join(row) if join else " ".join(row) for row in rows]


def episode_key(args: argparse.Namespace, dataset: str, setting: str, model: str, seed: int, sha: str) -> dict:
    return {"dataset": dataset, "setting": setting, "model": model, "seed": seed, "run_items_sha256": sha,
            "episodes": args.episodes, "queries": args.queries, "episode_seed": args.episode_seed, "lm": args.lm}


def score_cell(args: argparse.Namespace, lm: Any, table: Any, dataset: str, setting: str, model: str,
               seed: int, code_table: Callable[[str], Any] | None = None) -> dict[str, Any] | None:
    """One (model, seed) on one setting: every query's hit, saved; None when its study run is missing.
    ``table`` is the reader's (its tokenizer); a run quantised onto another table (the BERT arm's MiniLM)
    is written in that table's tokens, ``code_table(name)``."""
    from align.eval.incontext import draw_episodes, score_episodes

    shuffled = model == SHUFFLED
    found = study_codes(args.runs, dataset, "lqae" if shuffled else model, seed)
    if found is None:
        return None
    codes, labels, sha = found.codes, found.labels, found.sha256
    writer = table if found.table in (None, args.lm) else _code_table(code_table, found.table)
    n_way, k_shot = parse_setting(setting)
    classes = int((np.bincount(labels) > k_shot).sum())  # classes with a support and a query to draw
    if classes < n_way:  # e.g. 5-way on the procedural set's 4 shape kinds: the report shows "–"
        log(f"{dataset} {setting}: only {classes} classes have {k_shot + 1} test images; not scored")
        return None
    name = model.replace(' ', '_').replace('(', '').replace(')', '')
    path = args.out / dataset.replace(":", "-") / setting / f"{name}-seed{seed}.json"
    key = episode_key(args, dataset, setting, model, seed, sha)

    def make() -> dict[str, Any]:
        episodes = draw_episodes(labels, n_way, k_shot, args.episodes, args.queries, args.episode_seed,
                                 shuffle_labels=shuffled)
        start = time.perf_counter()
        hits = score_episodes(lm(), table.tokenizer, token_texts(codes, writer), episodes, n_way)
        log(f"{dataset} {setting} {model} seed {seed}: accuracy {hits.mean():.3f}")
        return {"hits": hits.astype(int).tolist(), "accuracy": float(hits.mean()),
                "seconds": time.perf_counter() - start}

    if args.saved_only:
        return saved_run(path, key)
    return cached_run(path, key, make, log)


def _code_table(load: Callable[[str], Any] | None, name: str) -> Any:
    if load is None:
        raise SystemExit(f"lqae_incontext: a run quantised onto {name!r} needs that table to write its codes")
    return load(name)


def episode_items(cell: dict[str, Any]) -> Any:
    """Per-episode accuracy (the mean over its queries) as items: intervals resample episodes."""
    from align.eval.items import MeanItems

    return MeanItems(np.asarray(cell["hits"], dtype=np.float64).mean(1), "acc")


def report(args: argparse.Namespace, cells: dict[str, dict[str, dict[str, dict[int, dict]]]]) -> str:
    from _common import claim_cells, interval_cell
    from align.eval.bootstrap import Bootstrap

    boot = Bootstrap()
    lines = [f"In-context classification by Gemma-3 270M reading each test image as its words ({args.episodes} "
             f"episodes a setting, {args.queries} queries each, episode seed {args.episode_seed}; the same episodes "
             "for every model of a dataset). Cells: accuracy over all queries, mean over seeds, [95% interval, "
             f"{boot.describe().replace('test items', 'episodes')}, pooled over seeds]. Runs from `{args.runs}`.", ""]
    for dataset, by_setting in cells.items():
        settings = list(by_setting)
        rows = [("chance", *(f"{1 / parse_setting(s)[0]:.3f}" for s in settings))]
        for model in (*MODELS, SHUFFLED):
            cell_row = []
            for setting in settings:
                seeds = by_setting[setting].get(model, {})
                cell_row.append(interval_cell([c["accuracy"] for c in seeds.values()],
                                              [episode_items(c) for c in seeds.values()], "acc", boot)
                                if seeds else None)
            if any(cell_row):
                rows.append((model, *cell_row))
        lines += [f"### {dataset}", "", *markdown_table(("model", *(f"{s} (N-way x K-shot)" for s in settings)),
                                                        rows, missing="–"), ""]
        claim_rows = []
        for variant, baseline in CLAIMS:
            for setting in settings:
                a, b = by_setting[setting].get(variant, {}), by_setting[setting].get(baseline, {})
                if set(a) & set(b):
                    c = claim_cells({s: v["accuracy"] for s, v in a.items()}, {s: v["accuracy"] for s, v in b.items()},
                                    {s: episode_items(v) for s, v in a.items()},
                                    {s: episode_items(v) for s, v in b.items()}, "acc", boot)
                    claim_rows.append((f"{variant} − {baseline}", setting, c.mean_std, c.interval, c.seeds_better,
                                       c.verdict))
        if claim_rows:
            lines += markdown_table(("difference", "setting", "mean ± std over seeds", "paired 95% interval",
                                     "seeds better", "verdict"), claim_rows, align="llrrrl") + [""]
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--runs", type=Path, default=Path("results/lqae_study"), help="lqae_study.py's --runs")
    parser.add_argument("--out", type=Path, default=Path("studies/lqae/incontext"))
    parser.add_argument("--datasets", default="fashion_mnist,emoji,shapes:colour,shapes:shape",
                        help="comma-separated; shapes:ATTRIBUTE labels the procedural set's run by that attribute")
    parser.add_argument("--seeds", default="0,1,2")
    parser.add_argument("--settings", default=",".join(SETTINGS))
    parser.add_argument("--models", default=",".join((*MODELS, SHUFFLED)))
    parser.add_argument("--episodes", type=int, default=100)
    parser.add_argument("--queries", type=int, default=5)
    parser.add_argument("--episode-seed", type=int, default=0)
    parser.add_argument("--lm", default="gguf:gemma-3-270m.q4_k_m", help="the table whose LM reads the strings")
    parser.add_argument("--saved-only", action="store_true", help="report what is scored; score nothing")
    parser.add_argument("--output", type=Path)
    args = parser.parse_args()
    import align.text  # noqa: F401  (registers the tables)
    from align.registry import EMBEDDING_TABLES

    table = EMBEDDING_TABLES.create(args.lm)
    loaded: list[Any] = []
    code_tables = functools.cache(EMBEDDING_TABLES.create)

    def lm() -> Any:  # loaded on the first cell that is not saved yet
        if not loaded:
            loaded.append(table.load_lm().eval())
        return loaded[0]

    cells: dict[str, dict[str, dict[str, dict[int, dict]]]] = {}
    for dataset in args.datasets.split(","):
        for setting in args.settings.split(","):
            for model in args.models.split(","):
                for seed in (int(s) for s in args.seeds.split(",")):
                    cell = score_cell(args, lm, table, dataset, setting, model, seed, code_tables)
                    if cell is not None:
                        cells.setdefault(dataset, {}).setdefault(setting, {}).setdefault(model, {})[seed] = cell
    emit(report(args, cells), args.output)


if __name__ == "__main__":
    main()
