"""VLAP on the emoji concept-disjoint split: the full model against its ablations and ridge, in one space,
over three seeds, with the paper's two claims tested by paired differences.

Every method maps MobileNetV2 image features into Gemma-3 270M's raw word-embedding space; texts are
the mean word embedding of their tokens (VLAP's own text feature, registered as the text encoder
``table:gguf:gemma-3-270m.q4_k_m``, so ridge is fitted into exactly that space). Fit on the 955
image-name pairs of the anchor half, scored on the 956 unseen test emoji (captioning on 100 of them).
Settings come from ``configs/bench/vlap_emoji.yaml`` (chosen on validation by
``configs/bench/vlap_select.yaml``). Writes:

1. mean ± std over the seeds of image<->name retrieval, zero-shot subcategory accuracy and captioning
   scores (greedy captions against the emoji names), each with its 95% bootstrap interval over the test
   items pooled over seeds (from the per-item outputs ``align bench`` keeps beside every result;
   BLEU is a corpus statistic and is not resampled);
2. paired differences for each claim (assignment prediction over caption-only; the frequency-aware
   prior over the uniform one) and for each fix of the assignment-only variant: mean ± std of the
   per-seed differences, the paired bootstrap interval over the same draws of test items pooled over
   seeds, the seeds the variant won and the verdict (higher / lower only when the interval excludes 0);
3. visual semantic arithmetic: for every pair of test emoji whose names differ in one word
   (``man frowning`` / ``woman frowning``), the image of the first minus that word plus the other,
   searched among the test images (query excluded), against the same search without the arithmetic
   (intervals over the swaps, and the paired interval of what the arithmetic adds to top-1);
4. training loss and validation R@1 per epoch for each variant (``--figure``), from the fits' histories;
5. for a few test emoji, the captions of each captioning variant (seed 0) and the full model's nearest words.

    python benchmarks/vlap_emoji.py [--results results/vlap-emoji] [--output results/vlap_emoji.md]
    python benchmarks/vlap_emoji.py --config tiny.yaml --results /tmp/vlap/results --output /tmp/vlap/report.md \
        --figure /tmp/vlap/curves.png    # a short run: a config with seeds [0, 1], fewer steps, smaller splits
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F

from _common import claim_cells, emit, interval_cell, machine_line, markdown_table, mean_std, save_figure  # benchmarks/_common.py
from align.bench.plan.config import load_config
from align.bench.execute.features import FeatureBank
from align.bench.report.leaderboard import aggregate
from align.bench.record.result_files import read_results
from align.bench.report.uncertainty import load_items
from align.eval.bootstrap import Bootstrap
from align.eval.items import MeanItems
from align.bench.plan.layout import aligner_path
from align.bench.runner import run_benchmark
from align.methods.base import load_aligner
from align.registry import DATASETS, TEXT_ENCODERS

CONFIG = Path(__file__).resolve().parents[1] / "configs" / "bench" / "vlap_emoji.yaml"
COLUMNS = (  # (task, metric, header)
    ("zeroshot_retrieval", "text_retrieval_recall@1", "image→name R@1"),
    ("zeroshot_retrieval", "text_retrieval_recall@5", "image→name R@5"),
    ("zeroshot_retrieval", "image_retrieval_recall@1", "name→image R@1"),
    ("zeroshot_retrieval", "image_retrieval_recall@5", "name→image R@5"),
    ("zeroshot_classification", "acc1", "subcategory acc1"),
    ("captioning", "CIDEr", "CIDEr"),
    ("captioning", "Bleu_1", "BLEU-1"),
)
NOT_RESAMPLED = {"Bleu_1"}  # a corpus statistic (clipped n-gram counts over all captions), not a mean over images
BOOTSTRAP = Bootstrap()  # the intervals' settings (1000 resamples, seed 0, 95%), stated in the report
# (claim, variant, against it): paired over the seeds
CLAIMS = (
    ("assignment prediction helps over caption-only training", "vlap", "vlap-caption-only"),
    ("the frequency-aware prior helps over the uniform one (full model)", "vlap", "vlap-uniform"),
    ("the frequency-aware prior helps over the uniform one (assignment only)", "vlap-assignment-only",
     "vlap-assignment-only-uniform"),
    ("English word frequency (wordfreq) as the prior, over uniform (assignment only)",
     "vlap-assignment-only-wordfreq", "vlap-assignment-only-uniform"),
    ("P = 4 grid tokens over one pooled prefix token (full model)", "vlap", "vlap-prefix1"),
    ("the full model over assignment prediction alone (what captioning adds)", "vlap", "vlap-assignment-only"),
    ("fix: full-batch OT over per-batch OT (assignment only)", "vlap-assignment-only", "vlap-assignment-only-batch-ot"),
    ("fix: caption words in the vocabulary over 20,000 frequent words (assignment only)", "vlap-assignment-only",
     "vlap-assignment-only-frequent-vocab"),
    ("fix: warm-up + cosine over a constant rate (assignment only)", "vlap-assignment-only",
     "vlap-assignment-only-constant-lr"),
)
CLAIM_METRICS = COLUMNS[0], COLUMNS[2], COLUMNS[4], COLUMNS[5]
SHOWN = 8  # test emoji shown with their captions
FULL = "vlap"  # the label of the full model in the config: its nearest words are shown


Values = dict[tuple[str, str, str], dict[str, Any]]  # (aligner, task, metric) -> {"values": {seed: v}, "items": ...}


def per_seed(results: Path) -> Values:
    """``(aligner, task, metric) -> {"values": {seed: value}, "items": {seed: Items} or None}``: the
    per-item outputs ``align bench`` keeps beside each result (None where a seed's result has none)."""
    found = read_results(results)
    rows = aggregate(found, load_items(results, found))
    return {(r["aligner"], r["task"], m): {"values": dict(zip(r["seeds"], s["values"])), "items": s.get("items")}
            for r in rows for m, s in r["metrics"].items()}


def score_table(values: Values, aligners: list[str], histories: dict[str, list[dict[str, list[float]]]],
                boot: Bootstrap = BOOTSTRAP) -> list[str]:
    """Test scores (mean ± std over seeds [bootstrap interval of the mean over test items pooled over
    seeds]), and first the validation R@1 of each fit's last epoch (held-out fit pairs, not test)."""
    rows = []
    for name in aligners:
        val = [run["val_r1"][-1] for run in histories.get(name, []) if run.get("val_r1")]
        cells = []
        for task, metric, _ in COLUMNS:
            stat = values.get((name, task, metric))
            if stat is None:
                cells.append(None)
                continue
            items = None if stat["items"] is None else list(stat["items"].values())
            cells.append(interval_cell(list(stat["values"].values()), items,
                                       None if metric in NOT_RESAMPLED else metric, boot))
        rows.append((name, mean_std(val) if val else None, *cells))
    header = ("aligner", "validation image→name R@1", *(h for _, _, h in COLUMNS))
    return markdown_table(header, rows, align="l" + "r" * (len(COLUMNS) + 1), missing="–")


def claim_table(values: Values, boot: Bootstrap = BOOTSTRAP) -> list[str]:
    """Paired differences (variant - baseline): mean ± std of the per-seed differences, the paired
    bootstrap interval over the same draws of test items pooled over seeds, the seeds the variant won,
    and the verdict."""
    rows = []
    for claim, variant, baseline in CLAIMS:
        for task, metric, header in CLAIM_METRICS:
            a, b = values.get((variant, task, metric)), values.get((baseline, task, metric))
            if not a or not b or set(a["values"]) != set(b["values"]):
                continue
            cells = claim_cells(a["values"], b["values"], a["items"], b["items"],
                                None if metric in NOT_RESAMPLED else metric, boot)
            rows.append((claim, f"{variant} − {baseline}", header, cells.mean_std, cells.interval, cells.seeds_better,
                         cells.verdict))
    return markdown_table(("claim", "difference", "metric", "mean ± std over seeds", "paired 95% interval (pooled)",
                           "seeds won", "verdict"), rows, align="lllrrrl")


def interval_notes(values: Values, boot: Bootstrap = BOOTSTRAP) -> list[str]:
    """How the intervals are made, and which results have none."""
    lines = [f"Intervals: {boot.describe()} (`[low, high]`), pooled over seeds: each draw of test items (images; "
             "a name is drawn with its image) is applied to every seed's per-item outputs and the seeds averaged, "
             "so the interval is for the mean shown. A claim's interval is paired (both aligners get the same "
             "draws); its verdict is higher / lower only when the interval excludes zero, else the two cannot be "
             "told apart. BLEU-1 is a corpus statistic (clipped n-gram counts over all captions) and is not "
             "resampled."]
    missing = sorted({aligner for (aligner, _, _), stat in values.items() if stat["items"] is None})
    if missing:
        lines.append(f"Without per-item outputs (results written by an older align; rerun `align bench` into the "
                     f"results folder to recompute them), so without intervals: {', '.join(missing)}.")
    return lines


def one_word_swaps(names: list[str]) -> list[tuple[int, int, str, str]]:
    """``(i, j, a, b)``: names i and j (two words or more) are the same but for word ``a`` in i, ``b`` in j."""
    swaps = []
    split = [n.split() for n in names]
    for i, wi in enumerate(split):
        for j, wj in enumerate(split):
            if i == j or len(wi) != len(wj) or len(wi) < 2 or len(set(wi)) != len(wi):
                continue
            diff = [(a, b) for a, b in zip(wi, wj) if a != b]
            if len(diff) == 1:
                swaps.append((i, j, *diff[0]))
    return swaps


ARITHMETIC = ("top1", "top5", "top1 without arithmetic", "top5 without arithmetic")


def arithmetic(v: torch.Tensor, words: Any, swaps: list[tuple[int, int, str, str]]) -> dict[str, MeanItems]:
    """Per swap, whether image(i) - word(a) + word(b) finds image(j) among the test images (query
    excluded) in the first 1 or 5, with and without the arithmetic: one hit (1.0) or miss per swap, so
    each hit rate is a mean over the swaps (``MeanItems``, resampled over the swaps)."""
    v = F.normalize(v, dim=-1)
    vocab = sorted({w for _, _, a, b in swaps for w in (a, b)})
    e = dict(zip(vocab, F.normalize(words.encode_text(vocab), dim=-1))) if vocab else {}
    hits = {k: np.zeros(len(swaps)) for k in ARITHMETIC}
    for n, (i, j, a, b) in enumerate(swaps):
        for query, key in ((v[i] - e[a] + e[b], ""), (v[i], " without arithmetic")):
            sim = F.normalize(query, dim=-1) @ v.T
            sim[i] = -float("inf")
            rank = int((sim > sim[j]).sum())
            hits["top1" + key][n] = rank < 1
            hits["top5" + key][n] = rank < 5
    return {k: MeanItems(h, k) for k, h in hits.items()}


def arithmetic_table(hits: dict[tuple[str, str], dict[int, dict[str, MeanItems]]], counts: dict[str, int],
                     boot: Bootstrap = BOOTSTRAP) -> list[str]:
    """Hit rates over the swaps (mean ± std over seeds [interval over the swaps pooled over seeds]) and
    the paired interval of what the arithmetic adds to top-1, with its verdict."""
    rows = []
    for (name, group), by_seed in hits.items():
        if not counts[group]:
            rows.append((name, group, 0, *(["–"] * (len(ARITHMETIC) + 2))))
            continue
        cells = [interval_cell([h[k].value(k) for h in by_seed.values()], [h[k] for h in by_seed.values()], k, boot)
                 for k in ARITHMETIC]
        with_, without = ({s: h[k] for s, h in by_seed.items()} for k in ("top1", "top1 without arithmetic"))
        gain = claim_cells({s: i.value("top1") for s, i in with_.items()},
                           {s: i.value("top1 without arithmetic") for s, i in without.items()},
                           {s: MeanItems(i.values, "top1") for s, i in with_.items()},
                           {s: MeanItems(i.values, "top1") for s, i in without.items()}, "top1", boot)
        rows.append((name, group, counts[group], *cells, gain.interval, gain.verdict))
    return markdown_table(("aligner", "swaps", "count", "top-1", "top-5", "top-1 without arithmetic",
                           "top-5 without arithmetic", "top-1 gain, paired 95% interval", "verdict"), rows,
                          align="llrrrrrrl")


def curves_figure(histories: dict[str, list[dict[str, list[float]]]], path: Path) -> None:
    """Training loss and validation R@1 per epoch (mean over seeds) for each trained variant."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, (loss_ax, r1_ax) = plt.subplots(1, 2, figsize=(12, 4.5))
    for name, runs in histories.items():
        for ax, key in ((loss_ax, "train_loss"), (r1_ax, "val_r1")):
            series = [run[key] for run in runs if run.get(key)]
            if not series:
                continue
            length = min(len(s) for s in series)
            mean = torch.tensor([s[:length] for s in series]).mean(0)
            ax.plot(range(1, length + 1), mean.tolist(), marker="o", markersize=3, label=name)
    loss_ax.set(xlabel="epoch", ylabel="training loss (its own objective)", yscale="log", title="training loss")
    r1_ax.set(xlabel="epoch", ylabel="image→caption R@1", title="validation R@1 (10% of the fit pairs held out)")
    r1_ax.legend(fontsize=7)
    fig.tight_layout()
    save_figure(fig, path, dpi=110)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--config", type=Path, default=CONFIG)
    parser.add_argument("--results", type=Path, default=Path("results/vlap-emoji"))
    parser.add_argument("--output", type=Path, default=Path("results/vlap_emoji.md"))
    parser.add_argument("--figure", type=Path, default=Path("docs/figures/vlap_curves.png"))
    args = parser.parse_args(argv)

    config = load_config(args.config)
    run_benchmark(config, args.results, progress=False, save_aligners=True)
    (image_encoder,), (text_encoder,) = config.image_encoders, config.text_encoders
    spec = config.datasets[0]
    names = [a.display for a in config.aligners]
    paths = {(name, seed): aligner_path(args.results, image_encoder=image_encoder, text_encoder=text_encoder,
                                        aligner=name, dataset=spec.name, fit_split=spec.fit, seed=seed)
             for name in names for seed in config.seeds}

    test = DATASETS.create(spec.name).load(spec.eval)
    bank = FeatureBank(progress=False)
    inputs = {"pooled": bank.images(image_encoder, test), "tokens": bank.tokens(image_encoder, test).float()}
    test_names = [caps[0] for caps in test.captions]
    words = TEXT_ENCODERS.create(text_encoder)
    swaps = one_word_swaps(test_names)
    groups = {"all": swaps, "without flags": [w for w in swaps if "flag" not in test_names[w[0]].split()]}

    hits: dict[tuple[str, str], dict[int, dict[str, MeanItems]]] = {}
    histories: dict[str, list[dict[str, list[float]]]] = {}
    for (name, seed), path in paths.items():
        aligner = load_aligner(path)
        v = aligner.encode_image(inputs[aligner.image_input_spec().kind])
        for group, members in groups.items():
            hits.setdefault((name, group), {})[seed] = arithmetic(v, words, members)
        history = json.loads(path.with_suffix(".json").read_text()).get("provenance", {}).get("history")
        if history:
            histories.setdefault(name, []).append(history)

    values = per_seed(args.results)
    seeds = ", ".join(str(s) for s in config.seeds)
    lines = [
        f"VLAP on emoji ({spec.fit} -> {spec.eval}, concept-disjoint): {image_encoder} image features, "
        f"texts and words in {text_encoder} (Gemma-3 270M raw word embeddings). Seeds {seeds} (mean ± std "
        f"[95% interval]); config `{args.config.name}`.",
        "",
        *interval_notes(values),
        "",
        *score_table(values, names, histories),
        "",
        f"Chance: retrieval R@1 1/{len(test_names)} on test, about 1/96 on the validation pairs (10% of the fit "
        "pairs, held out of every trained variant's fit; ridge has none); subcategory accuracy depends on the class "
        "sizes. Ridge has no language model, so no captions.",
        "",
        "Paired differences (variant − baseline, same seed, same data, same steps), with the paired bootstrap "
        "interval over the same test items pooled over seeds:",
        "",
        *claim_table(values),
        "",
        "Visual arithmetic over the one-word swaps among the test emoji (image of `i` - word a + word b, nearest "
        "test image, query excluded; unit vectors). Most swaps are between country flags, which need knowledge "
        "that image features of a flag do not carry, so they are also counted apart. Intervals resample the "
        "swaps (two swaps may share an image, so they are not independent draws of images):",
        "",
    ]
    lines += arithmetic_table(hits, {group: len(members) for group, members in groups.items()})
    if histories and args.figure:
        curves_figure(histories, args.figure)
        lines += ["", f"Training curves: `{args.figure}`."]

    seed = config.seeds[0]
    shown = torch.linspace(0, len(test_names) - 1, SHOWN).long().tolist()
    fitted = {name: load_aligner(paths[(name, seed)]) for name in names}
    vlaps = [n for n in names if callable(getattr(fitted[n], "nearest_words", None))]
    captioners = [n for n in vlaps if fitted[n].hparams["w_cap"] > 0]
    shown_inputs = {n: inputs[fitted[n].image_input_spec().kind][shown] for n in vlaps}
    captions = {n: fitted[n].caption(shown_inputs[n], max_new_tokens=12) for n in captioners}
    full = FULL if FULL in vlaps else (vlaps[0] if vlaps else None)
    nearest = fitted[full].nearest_words(shown_inputs[full], top=5) if full else []
    examples = [(test_names[index], *(captions[n][row] for n in captioners), ", ".join(nearest[row]) if nearest else "")
                for row, index in enumerate(shown)]
    what = "greedy captions and nearest words" if captioners else "nearest words"
    lines += ["", f"{SHOWN} test emoji, seed {seed}: {what} ({full})", "",
              *markdown_table(("emoji name", *captioners, f"nearest words ({full})"), examples),
              "", machine_line()]
    emit("\n".join(lines), args.output)


if __name__ == "__main__":
    main()
