"""VLAP on the emoji concept-disjoint split: the full model against its ablations and ridge, in one space,
over three seeds, with the paper's two claims tested by paired differences.

Every method maps MobileNetV2 image features into Gemma-3 270M's raw word-embedding space; texts are
the mean word embedding of their tokens (VLAP's own text feature, registered as the text encoder
``table:gguf:gemma-3-270m.q4_k_m``, so ridge is fitted into exactly that space). Fit on the 955
image-name pairs of the anchor half, scored on the 956 unseen test emoji (captioning on 100 of them).
Settings come from ``configs/bench/vlap_emoji.yaml`` (chosen on validation by
``configs/bench/vlap_select.yaml``). Writes:

1. mean ± std over the seeds of image<->name retrieval, zero-shot subcategory accuracy and captioning
   scores (greedy captions against the emoji names);
2. paired differences over the seeds for each claim (assignment prediction over caption-only; the
   frequency-aware prior over the uniform one) and for each fix of the assignment-only variant;
3. visual semantic arithmetic: for every pair of test emoji whose names differ in one word
   (``man frowning`` / ``woman frowning``), the image of the first minus that word plus the other,
   searched among the test images (query excluded), against the same search without the arithmetic;
4. training loss and validation R@1 per epoch for each variant (``--figure``), from the fits' histories;
5. for a few test emoji, the captions of each captioning variant (seed 0) and the full model's nearest words.

    python benchmarks/vlap_emoji.py [--results results/vlap-emoji] [--output results/vlap_emoji.md]
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F

from _common import emit, machine_line, markdown_table, mean_std, save_figure  # benchmarks/_common.py
from align.bench.config import load_config
from align.bench.pairs import FeatureBank
from align.bench.report import aggregate
from align.bench.result_files import read_results
from align.bench.results import aligner_path
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


def per_seed(results: Path) -> dict[tuple[str, str, str], list[float]]:
    """``(aligner, task, metric) -> values`` ordered by seed."""
    rows = aggregate(read_results(results))
    return {(r["aligner"], r["task"], m): s["values"] for r in rows for m, s in r["metrics"].items()}


def score_table(values: dict[tuple[str, str, str], list[float]], aligners: list[str],
                histories: dict[str, list[dict[str, list[float]]]]) -> list[str]:
    """Test scores, and first the validation R@1 of each fit's last epoch (held-out fit pairs, not test)."""
    rows = []
    for name in aligners:
        val = [run["val_r1"][-1] for run in histories.get(name, []) if run.get("val_r1")]
        rows.append((name, mean_std(val) if val else None,
                     *(mean_std(values[key]) if (key := (name, task, metric)) in values else None
                       for task, metric, _ in COLUMNS)))
    header = ("aligner", "validation image→name R@1", *(h for _, _, h in COLUMNS))
    return markdown_table(header, rows, align="l" + "r" * (len(COLUMNS) + 1), missing="–")


def claim_table(values: dict[tuple[str, str, str], list[float]]) -> list[str]:
    """Paired differences (variant - baseline) per seed: mean ± std and how many seeds the variant won."""
    rows = []
    for claim, variant, baseline in CLAIMS:
        for task, metric, header in CLAIM_METRICS:
            a, b = values.get((variant, task, metric)), values.get((baseline, task, metric))
            if not a or not b or len(a) != len(b):
                continue
            diffs = [x - y for x, y in zip(a, b)]
            wins = sum(d > 0 for d in diffs)
            rows.append((claim, f"{variant} − {baseline}", header, mean_std(diffs), f"{wins}/{len(diffs)}"))
    return markdown_table(("claim", "difference", "metric", "mean ± std over seeds", "seeds won"), rows,
                          align="lllrr")


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


def arithmetic(v: torch.Tensor, words: Any, swaps: list[tuple[int, int, str, str]]) -> dict[str, float]:
    """Hit rates of image(i) - word(a) + word(b) -> image(j) among the test images (query excluded)."""
    v = F.normalize(v, dim=-1)
    vocab = sorted({w for _, _, a, b in swaps for w in (a, b)})
    e = dict(zip(vocab, F.normalize(words.encode_text(vocab), dim=-1)))
    hits = {"top1": 0, "top5": 0, "top1 without arithmetic": 0, "top5 without arithmetic": 0}
    for i, j, a, b in swaps:
        for query, key in ((v[i] - e[a] + e[b], ""), (v[i], " without arithmetic")):
            sim = F.normalize(query, dim=-1) @ v.T
            sim[i] = -float("inf")
            rank = int((sim > sim[j]).sum())
            hits["top1" + key] += rank < 1
            hits["top5" + key] += rank < 5
    return {k: n / max(len(swaps), 1) for k, n in hits.items()}


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

    hits: dict[tuple[str, str], list[dict[str, float]]] = {}
    histories: dict[str, list[dict[str, list[float]]]] = {}
    for (name, seed), path in paths.items():
        aligner = load_aligner(path)
        v = aligner.encode_image(inputs[aligner.image_input_spec().kind])
        for group, members in groups.items():
            hits.setdefault((name, group), []).append(arithmetic(v, words, members))
        history = json.loads(path.with_suffix(".json").read_text()).get("provenance", {}).get("history")
        if history:
            histories.setdefault(name, []).append(history)

    values = per_seed(args.results)
    seeds = ", ".join(str(s) for s in config.seeds)
    lines = [
        f"VLAP on emoji ({spec.fit} -> {spec.eval}, concept-disjoint): {image_encoder} image features, "
        f"texts and words in {text_encoder} (Gemma-3 270M raw word embeddings). Seeds {seeds} (mean ± std); "
        f"config `{args.config.name}`.",
        "",
        *score_table(values, names, histories),
        "",
        f"Chance: retrieval R@1 1/{len(test_names)} on test, about 1/96 on the validation pairs (10% of the fit "
        "pairs, held out of every trained variant's fit; ridge has none); subcategory accuracy depends on the class "
        "sizes. Ridge has no language model, so no captions.",
        "",
        "Paired differences over the seeds (variant − baseline, same seed, same data, same steps):",
        "",
        *claim_table(values),
        "",
        "Visual arithmetic over the one-word swaps among the test emoji (image of `i` - word a + word b, nearest "
        "test image, query excluded; unit vectors). Most swaps are between country flags, which need knowledge "
        "that image features of a flag do not carry, so they are also counted apart:",
        "",
    ]
    rows = [(name, group, len(groups[group]), *(mean_std(h[k] for h in runs) for k in
             ("top1", "top5", "top1 without arithmetic", "top5 without arithmetic")))
            for (name, group), runs in hits.items()]
    lines += markdown_table(("aligner", "swaps", "count", "top-1", "top-5", "top-1 without arithmetic",
                             "top-5 without arithmetic"), rows)
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
