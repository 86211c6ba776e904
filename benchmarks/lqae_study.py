"""LQAE with Gemma-3's language prior against its random-table and VQ-VAE baselines, over seeds
(issue 14): does writing images in a pretrained LM's words, denoised by that LM, make their tokens
more class-informative than a random table of the same shape or a learned 1024-code VQ-VAE?

Stages, each run saved as one JSON file under ``--runs`` (written atomically; a rerun with the same
settings reuses it, so an interrupted study resumes):

1. **Selection** (seed 0, Fashion-MNIST by default): LQAE at each pair of ``--select-weights`` LM-loss
   weight and ``--select-usage`` code-usage entropy weight (the term that keeps codes in use; see
   ``benchmarks/lqae_collapse.py`` for why it is needed), trained on 80% of the fit images; the pair
   with the best linear-probe accuracy on the other 20% (validation, never test) is used everywhere
   after, the usage weight for every model alike.
2. **Study** (every dataset x seed): ``lqae`` (Gemma's table), ``random-table`` (a Gaussian table of
   the searchable rows' shape and statistics, same LM), ``vq-vae`` (1024 learned codes, same cosine,
   no LM); on the first dataset also ``lqae-lm-off`` (LM loss weight 0: the language prior's own
   effect) and, with ``--ablate-rows``, ``lqae-all-rows`` (every vocabulary row searchable instead of
   the frequent whole words). Equal budget: the same images, epochs and batch size for every model.

Scores on the test split: reconstruction MSE (pixels in [0, 1]), linear probe and 5-shot accuracy on
the representation ``align bench`` scores (``encode_image``: the LM's layers mean-pooled, or the
VQ-VAE's mean token) and on the mean token vector (comparable across all three), code/class NMI,
k-means NMI of code histograms, distinct codes and their perplexity. The report has mean ± std over
seeds, paired differences, and a figure of test images with each model's tokens.

Every score of the test split is kept per test image beside its run (``<run>.items.safetensors``,
sealed by its sha256 in the run's JSON; :mod:`align.eval.items`): each image's reconstruction error,
probe and 5-shot predictions, and codes. From them each cell gets a 95% bootstrap interval over the
test images pooled over seeds, and each claim (variant − baseline) a paired interval over the same
draws, with its verdict beside the per-seed signs (:mod:`align.eval.bootstrap`). The code statistics
(NMIs, codes used, perplexity) are statistics of the pooled codes, not means over images, and are not
resampled (a bootstrap draw shifts them; their codes are kept). Runs saved before per-item outputs
were kept are reported without intervals (``--redo-without-items`` reruns them).

    python benchmarks/lqae_study.py                       # the study (15 runs through the frozen LM)
    python benchmarks/lqae_study.py --quick               # smoke run: 96 images, 1 epoch, 1 seed
    python benchmarks/lqae_study.py --saved-only          # the report from the runs saved so far
    python benchmarks/lqae_study.py --datasets fashion_mnist --seeds 0,1 --train 96 --test 64 --epochs 1 \
        --select-weights 1 --select-usage 0 --runs /tmp/lqae/runs --output /tmp/lqae/report.md \
        --figure /tmp/lqae/tokens.png                      # a short run with pooled intervals over 2 seeds
"""

from __future__ import annotations

import argparse
import sys
import textwrap
import time
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import numpy as np
import torch

from align.eval.bootstrap import Bootstrap

from _common import (PER_ITEM, cached_run, claim_cells, emit, interval_cell, machine_line, markdown_table,  # benchmarks/_common.py
                     saved_run, save_figure)
from _lqae_data import GEMMA, MINILM, PROBE_C, load_data  # benchmarks/_lqae_data.py

MODELS = {  # label -> hyper-parameters beside the shared ones; "lm_weight": None takes the selected weight
    "lqae": {"codebook": "language", "lm_weight": None},
    "random-table": {"codebook": "random", "lm_weight": None},
    "vq-vae": {"codebook": "learned", "codebook_size": 1024},
    "lqae-lm-off": {"codebook": "language", "lm_weight": 0.0},
    "lqae-all-rows": {"codebook": "language", "lm_weight": None, "codebook_rows": "all"},
    # the paper's denoiser: a bidirectional masked LM (MiniLM's BERT) with a frozen head trained on text
    "lqae-bert": {"codebook": "language", "lm_weight": None, "table": MINILM, "mlm_head": "text"},
}
MAIN = ("lqae", "random-table", "vq-vae")
CLAIMS = (("lqae", "random-table"), ("lqae", "vq-vae"), ("lqae", "lqae-lm-off"), ("lqae", "lqae-all-rows"),
          ("lqae-bert", "lqae"))
METRICS = (  # key, header, format, higher is better, (per-item outputs, their metric; None: not resampled)
    ("rec", "reconstruction MSE", ".4f", False, ("rec", "rec")),
    ("probe", "linear probe (bench repr.)", ".3f", True, ("probe", "acc1")),
    ("fewshot", "5-shot (bench repr.)", ".3f", True, ("fewshot", "acc1")),
    ("probe_tokens", "linear probe (mean token)", ".3f", True, ("probe_tokens", "acc1")),
    ("token_nmi", "code/class NMI", ".3f", True, ("codes", None)),
    ("cluster_nmi", "histogram k-means NMI", ".3f", True, ("codes", None)),
    ("distinct", "codes used", ".0f", True, ("codes", None)),
    ("perplexity", "code perplexity", ".0f", True, ("codes", None)),
)
# The code statistics are not resampled (their codes are kept, CodeItems): they are plug-in statistics of the
# pooled codes, not means over images, and a bootstrap draw (some images repeated, others left out) shifts
# them: fewer distinct codes, lower perplexity, higher plug-in NMI, so the percentile interval can miss the
# value itself (align.eval.items.CodeItems refuses to resample them).
FEWSHOT_K = 5
BOOTSTRAP = Bootstrap()  # the intervals' settings (1000 resamples, seed 0, 95%), stated in the report
Choice = tuple[float, float]  # (LM-loss weight, code-usage weight)


def log(message: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {message}", file=sys.stderr, flush=True)


def hparams(label: str, data: dict[str, Any], args: argparse.Namespace, seed: int, chosen: Choice) -> dict:
    """The run's hyper-parameters: shared ones, the model's own, and the chosen LM-loss weight and
    code-usage weight (the usage term, when on, applies to every model alike; left out of the
    dictionary when off, so runs saved before it existed keep their keys)."""
    lm_weight, usage = chosen
    hp = {"table": GEMMA, "codebook_rows": args.rows, "codebook_size": args.codebook_size,
          "tokens_per_image": args.tokens, "in_chans": data["channels"], "augment": True,
          "max_epochs": args.epochs, "batch_size": args.batch, "seed": seed, **MODELS[label]}
    if hp.get("lm_weight", 0.0) is None:
        hp["lm_weight"] = lm_weight
    if usage > 0:
        hp |= {"usage_weight": usage, "usage_temperature": args.usage_temperature}
    return hp


def probe_items(train: torch.Tensor, train_y: np.ndarray, test: torch.Tensor, test_y: np.ndarray) -> Any:
    """Each test image's linear-probe predictions (C on a validation part of ``train``); the LM features
    are wider than the images are many, so the exact row-space form of the probe is used
    (align.eval.linear_probe)."""
    from align.eval.linear_probe import linear_probe

    return linear_probe(train, train_y, test, test_y, c_grid=PROBE_C, max_iter=300, row_space=True).items


def probe(train: torch.Tensor, train_y: np.ndarray, test: torch.Tensor, test_y: np.ndarray) -> float:
    """Linear-probe acc1 (:func:`probe_items`)."""
    return probe_items(train, train_y, test, test_y).value("acc1")


def train(hp: dict[str, Any], images: torch.Tensor) -> tuple[Any, float]:
    from align.methods.lqae.aligner import LQAE

    start = time.perf_counter()
    model = LQAE(**hp)
    model.fit_images(images)
    return model, time.perf_counter() - start


def score(model: Any, fit_x: torch.Tensor, fit_y: np.ndarray, test_x: torch.Tensor, test_y: np.ndarray,
          seed: int) -> dict[str, Any]:
    """Every metric of the table on ``test``, classifiers trained on ``fit``, and under ``PER_ITEM`` the
    per-image outputs each was computed from (the metrics are read back from them)."""
    from align.eval.fewshot import fewshot_items
    from align.eval.items import CodeItems, MeanItems

    fit_f, test_f = model.features(fit_x), model.features(test_x)
    key = "bert" if "bert" in fit_f else "tokens"  # what encode_image (and so align bench) returns
    errors = ((model.reconstruct(test_x) - test_x) ** 2).flatten(1).double().mean(1)  # each image's MSE
    items = {"rec": MeanItems(errors.numpy(), "rec"),
             "probe": probe_items(fit_f[key], fit_y, test_f[key], test_y),
             "probe_tokens": probe_items(fit_f["tokens"], fit_y, test_f["tokens"], test_y),
             "fewshot": fewshot_items(fit_f[key], fit_y, test_f[key], test_y, k=FEWSHOT_K, seed=seed),
             "codes": CodeItems(model.codes(test_x).numpy().astype(np.int64), np.asarray(test_y, dtype=np.int64), seed)}
    codes = items["codes"].metrics()
    return {"rec": items["rec"].value("rec"), "probe": items["probe"].value("acc1"),
            "probe_tokens": items["probe_tokens"].value("acc1"), "fewshot": items["fewshot"].value("acc1"),
            "token_nmi": codes["code_class_nmi"], "cluster_nmi": codes["code_histogram_nmi"],
            "distinct": codes["codes_used"], "perplexity": codes["code_perplexity"], PER_ITEM: items}


def resumed_run(path: Path, hp: dict[str, Any], make: Any, args: argparse.Namespace,
                items: bool = False) -> dict[str, Any] | None:
    """The run saved at ``path`` with these settings, else ``make()``'s (saved); with ``--saved-only``
    never trains: None when nothing matching is saved. ``items``: the run keeps its per-item outputs
    (``PER_ITEM``; None for a run saved before they were kept, rerun with ``--redo-without-items``)."""
    if args.saved_only:
        return saved_run(path, hp, items=items, log=log)
    return cached_run(path, hp, make, log, items=items, redo_without_items=getattr(args, "redo_without_items", False))


def select_weights(data: dict[str, Any], args: argparse.Namespace) -> tuple[Choice, dict[Choice, dict]]:
    """The (LM-loss weight, code-usage weight) pair with the best validation probe (seed 0, 80/20 split
    of the fit images); ties go to the earlier pair of the grid."""
    n = len(data["train_x"])
    order = torch.randperm(n, generator=torch.Generator().manual_seed(0))
    tr, va = order[: int(0.8 * n)], order[int(0.8 * n):]
    x, y = data["train_x"], data["train_y"]
    found: dict[Choice, dict] = {}
    for usage in args.select_usage:
        for weight in args.select_weights:
            hp = hparams("lqae", data, args, 0, (weight, usage))

            def make() -> dict[str, Any]:
                model, seconds = train(hp, x[tr])
                feats_tr, feats_va = model.features(x[tr]), model.features(x[va])
                codes = model.codes(x[va])
                return {"val_probe": probe(feats_tr["bert"], y[tr.numpy()], feats_va["bert"], y[va.numpy()]),
                        "val_codes": int(codes.unique().numel()), "train_s": seconds, "history": model.history}

            name = f"{args.datasets[0]}_lm{weight:g}" + (f"_usage{usage:g}" if usage > 0 else "")
            path = args.runs / "select" / f"{name}.json"
            run = resumed_run(path, hp, make, args)
            if run is None:
                continue
            found[(weight, usage)] = run
            log(f"select lm_weight={weight:g} usage_weight={usage:g}: validation probe {run['val_probe']:.3f}")
    best = max(found, key=lambda c: found[c]["val_probe"])
    return best, found


def study_run(label: str, dataset: str, seed: int, data: dict[str, Any], args: argparse.Namespace,
              chosen: Choice) -> dict[str, Any]:
    hp = hparams(label, data, args, seed, chosen)

    def make() -> dict[str, Any]:
        model, seconds = train(hp, data["train_x"])
        out = score(model, data["train_x"], data["train_y"], data["test_x"], data["test_y"], seed)
        rows = data["grid_rows"]
        out |= {"train_s": seconds, "history": model.history,
                "strings": model.token_strings(data["test_x"][rows]),
                "recon": model.reconstruct(data["test_x"][rows]).clamp(0, 1).tolist()}
        return out

    result = resumed_run(args.runs / dataset / label / f"seed{seed}.json", hp, make, args, items=True)
    if result is None:
        return None
    log(f"{dataset} {label} seed {seed}: " + ", ".join(f"{k} {result[k]:.3f}" for k, *_ in METRICS))
    return result


def dataset_runs(name: str, labels: list[str], data: dict[str, Any], args: argparse.Namespace,
                 chosen: Choice) -> dict[str, list[dict]]:
    """Every label's runs, seed by seed (so an interrupted study has whole seeds done); with
    ``--saved-only`` just the seeds that every label has saved."""
    by_seed = {seed: {label: study_run(label, name, seed, data, args, chosen) for label in labels}
               for seed in args.seeds}
    complete = [seed for seed, runs in by_seed.items() if all(r is not None for r in runs.values())]
    if args.saved_only:
        log(f"{name}: seeds with every model saved: {complete}")
    return {label: [by_seed[seed][label] for seed in complete] for label in labels}


def seed_of(run: dict[str, Any], position: int) -> int:
    """The seed a run was made with (its saved key), else its position."""
    return int(run.get("key", {}).get("seed", position))


def items_by_seed(rs: list[dict], name: str) -> dict[int, Any] | None:
    """``{seed: items}`` of one per-item output of a model's runs; None unless every run has them."""
    found = {seed_of(r, i): (r.get(PER_ITEM) or {}).get(name) for i, r in enumerate(rs)}
    return found if all(v is not None for v in found.values()) else None


def study_table(runs: dict[str, list[dict]], boot: Any) -> list[str]:
    """Per model and metric: mean ± std over seeds and [the 95% bootstrap interval of that mean over the
    test images, pooled over seeds] where the runs have per-item outputs and the metric is resampled."""
    rows = []
    for label, rs in runs.items():
        cells = []
        for key, _, spec, _, (name, metric) in METRICS:
            items = items_by_seed(rs, name)
            cells.append(interval_cell([r[key] for r in rs], None if items is None else list(items.values()),
                                       metric, boot, spec))
        rows.append((label, *cells, f"{np.mean([r['train_s'] for r in rs]):.0f}"))
    return markdown_table(("model", *(m[1] for m in METRICS), "train s"), rows, align="l" + "r" * (len(METRICS) + 1))


def claim_table(runs: dict[str, list[dict]], boot: Any) -> list[str]:
    """Paired differences (variant − baseline) per metric: mean ± std of the per-seed differences, the
    paired bootstrap interval over the same draws of test images pooled over seeds, the seeds where the
    variant is better, and the verdict (higher / lower only when the interval excludes zero)."""
    rows = []
    for variant, baseline in CLAIMS:
        a, b = runs.get(variant), runs.get(baseline)
        if not a or not b or len(a) != len(b):
            continue
        for key, header, spec, higher, (name, metric) in METRICS:
            cells = claim_cells({seed_of(r, i): r[key] for i, r in enumerate(a)},
                                {seed_of(r, i): r[key] for i, r in enumerate(b)},
                                items_by_seed(a, name), items_by_seed(b, name), metric, boot, higher, spec)
            rows.append((f"{variant} − {baseline}", header, cells.mean_std, cells.interval, cells.seeds_better,
                         cells.verdict))
    return markdown_table(("difference", "metric", "mean ± std over seeds", "paired 95% interval (pooled)",
                           "seeds better", "verdict"), rows, align="llrrrl")


def interval_notes(runs: dict[str, dict[str, list[dict]]], boot: Any) -> list[str]:
    """How the intervals are made, and which runs have none."""
    lines = [f"Intervals: {boot.describe()} (`[low, high]` in the tables), pooled over seeds: each draw of "
             "test images is applied to every seed's per-image outputs and the seeds averaged, so the interval "
             "is for the mean shown; a claim's interval is paired (both models get the same draws) and its "
             "verdict is higher / lower only when it excludes zero. Not resampled (no interval): the code statistics "
             "(code/class NMI, histogram k-means NMI, codes used, perplexity) are statistics of the pooled codes, "
             "not means over images, and a bootstrap draw (images repeated, others left out) shifts them (fewer "
             "codes, lower perplexity, higher plug-in NMI), so a percentile interval would not cover them."]
    old = sum(r.get(PER_ITEM) is None for by_model in runs.values() for rs in by_model.values() for r in rs)
    if old:
        lines.append(f"{old} run(s) were saved before per-item outputs were kept: their cells and claims have no "
                     "interval (rerun with `--redo-without-items` to get them).")
    return lines


def figure(data: dict[str, dict], runs: dict[str, dict[str, list[dict]]], path: Path) -> None:
    """Per dataset, test images (one per class) with each model's reconstruction and first tokens (seed 0)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    blocks = [(name, d) for name, d in data.items() if name in runs]
    models = [m for m in MAIN if all(m in runs[name] for name, _ in blocks)]
    per = min(4, *(len(d["grid_rows"]) for _, d in blocks))
    fig, axes = plt.subplots(per * len(blocks), 1 + len(models), figsize=(2.6 * (1 + len(models)), 2.5 * per * len(blocks)))
    axes = np.atleast_2d(axes)
    for b, (name, d) in enumerate(blocks):
        for i in range(per):
            row, ax = d["grid_rows"][i], axes[b * per + i]
            show(ax[0], d["test_x"][row], f"{name}: {d['class_names'][d['test_y'][row]]}", d["channels"])
            for j, model in enumerate(models):
                run = runs[name][model][0]
                words = run["strings"][i].split()
                text = " ".join(words[:10]) + (" …" if len(words) > 10 else "")
                show(ax[1 + j], torch.tensor(run["recon"][i]), textwrap.fill(f"{model}: {text}", 36), d["channels"])
    fig.tight_layout()
    save_figure(fig, path, dpi=100)


def show(ax: Any, img: torch.Tensor, title: str, channels: int) -> None:
    pixels = img.clamp(0, 1).permute(1, 2, 0).numpy()
    ax.imshow(pixels[..., 0] if channels == 1 else pixels, cmap="gray" if channels == 1 else None, vmin=0, vmax=1)
    ax.set_title(title, fontsize=6)
    ax.axis("off")


def report(args: argparse.Namespace, data: dict[str, dict], chosen: Choice, selection: dict[Choice, dict],
           runs: dict[str, dict[str, list[dict]]]) -> str:
    usage_line = (f"code-usage entropy weight (temperature {args.usage_temperature:g}; the same for every model)"
                  if any(u > 0 for u in args.select_usage) else "")
    lines = [f"LQAE study: Gemma-3 270M table and frozen LM (`{GEMMA}`), searchable rows `{args.rows}`"
             f"{f' (the {args.codebook_size} most frequent whole words)' if args.rows == 'words' else ''}, "
             f"{args.tokens} tokens per image, augmentation on; every model {args.epochs} epochs at batch "
             f"{args.batch} on the same fit images (equal budget), seeds {args.seeds}"
             f"{' (saved runs only: each data set lists the seeds every model has)' if args.saved_only else ''}.", "",
             f"Selection of the LM-loss weight{' and the ' + usage_line if usage_line else ''} on validation "
             f"({args.datasets[0]}, seed 0, 80/20 split of the fit images, linear probe on the LM features; "
             "codes used on the validation images beside it):", ""]
    lines += markdown_table(("lm_weight", "usage_weight", "validation probe", "validation codes used", "train s"),
                            [(f"{w:g}", f"{u:g}", f"{r['val_probe']:.3f}", str(r.get("val_codes", "not recorded")),
                              f"{r['train_s']:.0f}") for (w, u), r in selection.items()],
                            align="llrrr")
    lines += ["", f"Chosen: lm_weight = {chosen[0]:g}, usage_weight = {chosen[1]:g}.", ""]
    lines += [*interval_notes(runs, BOOTSTRAP), ""]
    for name, by_model in runs.items():
        d = data[name]
        seeds = len(next(iter(by_model.values())))
        lines += [f"#### {name}: fit {d['splits'][0]} ({len(d['train_x'])} images), test {d['splits'][1]} "
                  f"({len(d['test_x'])} images), {len(d['class_names'])} classes, {seeds} seeds", ""]
        lines += study_table(by_model, BOOTSTRAP) + ["", "Paired differences:", ""] + claim_table(by_model, BOOTSTRAP)
        lines += [""]
        lines += ["Token strings (seed 0, first two figure images):", ""]
        for model in by_model:
            for i in range(min(2, len(by_model[model][0]["strings"]))):
                lines.append(f"- {model}, {d['class_names'][d['test_y'][d['grid_rows'][i]]]}: "
                             f"`{by_model[model][0]['strings'][i]}`")
        lines.append("")
    lines += [f"Figure: `{args.figure}`.", "", machine_line(threads=args.threads, load=True)]
    return "\n".join(lines) + "\n"


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    """The study's settings; ``parse_args([])`` gives its defaults, which the bench configs
    configs/bench/lqae_compare*.yaml are held to (tests/unit/test_bench_configs_match_studies.py)."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--datasets", default="fashion_mnist,emoji")
    parser.add_argument("--seeds", default="0,1,2")
    parser.add_argument("--train", type=int, default=960, help="fit images (emoji: at most its 955 anchors)")
    parser.add_argument("--test", type=int, default=1000)
    parser.add_argument("--epochs", type=int, default=2)
    parser.add_argument("--batch", type=int, default=32)
    parser.add_argument("--tokens", type=int, default=16, help="tokens per image (16 or 64)")
    parser.add_argument("--rows", default="words", choices=("words", "all"), help="searchable rows of Gemma's table")
    parser.add_argument("--codebook-size", type=int, default=8192, help="whole words kept with --rows words")
    parser.add_argument("--select-weights", default="0.01,0.1,1", help="LM-loss weights to choose from")
    parser.add_argument("--select-usage", default="0,1", help="code-usage entropy weights to choose from")
    parser.add_argument("--usage-temperature", type=float, default=0.01)
    parser.add_argument("--ablate-rows", action="store_true", help="also lqae with every row searchable (first dataset)")
    parser.add_argument("--bidirectional", action="store_true",
                        help="also lqae with MiniLM's BERT and its text-trained head as the denoiser (every dataset)")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--runs", type=Path, default=Path("results/lqae_study"))
    parser.add_argument("--output", type=Path, default=Path("results/lqae_study.md"))
    parser.add_argument("--figure", type=Path, default=Path("docs/figures/lqae_tokens.png"))
    parser.add_argument("--quick", action="store_true", help="smoke run: 96/64 images, 1 epoch, seed 0")
    parser.add_argument("--saved-only", action="store_true",
                        help="train nothing: report the saved runs (per data set, the seeds every model has)")
    parser.add_argument("--redo-without-items", action="store_true",
                        help="rerun study runs saved before per-item outputs were kept (else reported without intervals)")
    args = parser.parse_args(argv)
    if args.quick:
        args.train, args.test, args.epochs, args.seeds = 96, 64, 1, "0"
        args.runs, args.output = Path("results/lqae_study_quick"), Path("results/lqae_study_quick.md")
        args.figure, args.select_weights, args.select_usage = Path("results/lqae_tokens_quick.png"), "1", "0"
    args.datasets = args.datasets.split(",")
    args.seeds = [int(s) for s in args.seeds.split(",")]
    args.select_weights = [float(w) for w in args.select_weights.split(",")]
    args.select_usage = [float(u) for u in args.select_usage.split(",")]
    return args


def main(argv: list[str] | None = None) -> None:
    args = parse_args(argv)
    torch.set_num_threads(args.threads)
    from threadpoolctl import threadpool_limits

    threadpool_limits(args.threads)
    data = {}
    for name in args.datasets:
        d = load_data(SimpleNamespace(dataset=name, train=args.train, test=args.test))
        first_of_class = {int(c): i for i, c in reversed(list(enumerate(d["test_y"])))}
        d["grid_rows"] = sorted(first_of_class.values())[:6]
        data[name] = d
        log(f"{name}: {len(d['train_x'])} fit / {len(d['test_x'])} test images")
    chosen, selection = select_weights(data[args.datasets[0]], args)
    log(f"chosen lm_weight {chosen[0]:g}, usage_weight {chosen[1]:g}")
    runs: dict[str, dict[str, list[dict]]] = {}
    for i, name in enumerate(args.datasets):
        labels = list(MAIN) + (["lqae-bert"] if args.bidirectional else [])
        labels += (["lqae-lm-off"] + (["lqae-all-rows"] if args.ablate_rows else [])) if i == 0 else []
        found = dataset_runs(name, labels, data[name], args, chosen)
        if all(found.values()):  # with --saved-only a data set may have no complete seed yet
            runs[name] = found
    figure(data, runs, args.figure)
    emit(report(args, data, chosen, selection, runs), args.output)


if __name__ == "__main__":
    main()
