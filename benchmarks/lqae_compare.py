"""LQAE against its two baselines on the same images: does a frozen *language* codebook (and a frozen
masked LM) make an image's tokens more class-informative than a random frozen table or a learned
VQ-VAE codebook?

Variants (``align.methods.lqae.aligner.LQAE``, identical encoder, decoder, data, seed and schedule):

- ``lqae``: MiniLM's BERT WordPiece table (30,522 x 384, special tokens excluded) as the frozen
  codebook, 50% masking, MiniLM's frozen 6-layer BERT, decoder reading BERT's states;
- ``random``: the same with a frozen Gaussian table of the same shape and per-dimension statistics;
- ``vqvae``: a learned codebook of the same size and width, no masking, no LM.

Each is trained on ``--train`` unlabelled training images for ``--epochs`` epochs and scored on
``--test`` test images:

- reconstruction MSE (pixels in [0, 1]; no masking, and for the LM variants also at the training
  mask ratio 0.5);
- linear probe accuracy (``align.eval.linear_probe``: train-image features, C chosen on a validation
  part of them) on the mean token vector (``tokens``), every BERT layer mean-pooled (``bert``) and the
  encoder's output before quantization (``encoder``); raw pixels as a reference row;
- N-way K-shot in-context accuracy of Gemma-3-270M reading the token strings
  (``align.eval.incontext``; letters as labels, chance 1/N), plus a control where every item is
  written as its class name (can this LM bind labels in context at all?);
- token/class information ``I(code; class) / H(class)`` and k-means NMI of TF-IDF code histograms
  (``align.eval.token_stats``), with the number of distinct codes used;
- a PNG grid of test inputs, each variant's reconstruction and its first tokens.

    python benchmarks/lqae_compare.py [--dataset fashion_mnist|emoji] [--train 3000] [--test 1000] [--epochs 5]
        [--episodes 40] [--threads 2] [--output results/lqae_compare.md] [--figure docs/figures/lqae_fashion_mnist.png]
    python benchmarks/lqae_compare.py --quick        # smoke run: 256 images, 1 epoch, 4 episodes
"""

from __future__ import annotations

import argparse
import sys
import textwrap
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch

from _common import emit, fmt, machine_line, markdown_table, save_figure  # benchmarks/_common.py

VARIANTS = {"lqae": "language", "random": "random", "vqvae": "learned"}
GEMMA = "gguf:gemma-3-270m.q4_k_m"
PROBE_C = (1e-3, 1e-2, 1e-1, 1.0, 10.0)


def log(message: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {message}", file=sys.stderr, flush=True)


def load_data(args: argparse.Namespace) -> dict[str, Any]:
    """Pixels and labels of the train and test images, and the class names."""
    import align.data  # noqa: F401  (registers the datasets)
    from align.data.pixels import images_tensor
    from align.registry import DATASETS

    dataset = DATASETS.create(args.dataset)
    if args.dataset == "fashion_mnist":
        train, test, channels = dataset.load(f"train@{args.train}"), dataset.load(f"test@{args.test}"), 1
        labels_of = lambda split: split.labels  # noqa: E731
    else:  # emoji: anchors to train on, test to score; subcategory labels (about 100 classes)
        train, test, channels = dataset.load("anchors"), dataset.load("test"), 3
        labels_of = lambda split: split.extra_labels["subcategory"]  # noqa: E731
        if args.train < len(train):
            train = dataset.load(f"anchors@{args.train}")
        if args.test < len(test):
            test = dataset.load(f"test@{args.test}")
    return {"train_x": images_tensor(train, 32, channels), "test_x": images_tensor(test, 32, channels),
            "train_y": np.asarray(labels_of(train).labels), "test_y": np.asarray(labels_of(test).labels),
            "class_names": list(labels_of(train).class_names), "channels": channels,
            "splits": (train.split, test.split)}


def probe(train: torch.Tensor, train_y: np.ndarray, test: torch.Tensor, test_y: np.ndarray) -> float:
    from align.eval.linear_probe import linear_probe

    return linear_probe(train, train_y, test, test_y, c_grid=PROBE_C, max_iter=300).metrics["acc1"]


def evaluate(model: Any, data: dict[str, Any], args: argparse.Namespace) -> dict[str, Any]:
    from align.eval.token_stats import code_usage, histogram_cluster_nmi, token_nmi

    test_x, test_y = data["test_x"], data["test_y"]
    out: dict[str, Any] = {}
    out["rec"] = float(((model.reconstruct(test_x) - test_x) ** 2).mean())
    if model.hparams["codebook"] != "learned":
        out["rec_masked"] = float(((model.reconstruct(test_x, mask_ratio=0.5) - test_x) ** 2).mean())
    train_f, test_f = model.features(data["train_x"]), model.features(test_x)
    for key in ("tokens", "bert", "encoder"):
        if key in train_f:
            start = time.perf_counter()
            out[f"probe_{key}"] = probe(train_f[key], data["train_y"], test_f[key], test_y)
            log(f"  probe {key} ({train_f[key].shape[1]}-d): {out[f'probe_{key}']:.3f} "
                f"in {time.perf_counter() - start:.0f}s")
    codes = model.codes(test_x)
    out["token_nmi"] = token_nmi(codes, test_y)
    out["cluster_nmi"] = histogram_cluster_nmi(codes, test_y)
    out.update(code_usage(codes))
    out["strings"] = model.token_strings(test_x)
    out["recon_examples"] = model.reconstruct(test_x[data["grid_rows"]])
    return out


def incontext(strings: list[str], labels: np.ndarray, lm: Any, tokenizer: Any, args: argparse.Namespace) -> dict:
    from align.eval.incontext import incontext_accuracy

    return {(n, k): incontext_accuracy(lm, tokenizer, strings, labels, n_way=n, k_shot=k, episodes=args.episodes,
                                       seed=args.seed)
            for n, k in args.settings}


def figure(data: dict[str, Any], results: dict[str, dict], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    n, names = len(next(iter(results.values()))["recon_examples"]), list(results)
    fig, axes = plt.subplots(n, 1 + len(names), figsize=(2.2 * (1 + len(names)), 2.4 * n))
    axes = np.atleast_2d(axes)
    cmap = "gray" if data["channels"] == 1 else None

    def show(ax: Any, img: torch.Tensor, title: str) -> None:
        pixels = img.clamp(0, 1).permute(1, 2, 0).numpy()
        ax.imshow(pixels[..., 0] if data["channels"] == 1 else pixels, cmap=cmap, vmin=0, vmax=1)
        ax.set_title(title, fontsize=6)
        ax.axis("off")

    for i, row in enumerate(data["grid_rows"]):
        show(axes[i, 0], data["test_x"][row], f"input: {data['class_names'][data['test_y'][row]]}")
        for j, name in enumerate(names):
            words = results[name]["strings"][row].split()
            text = " ".join(words[:8]) + (" ..." if len(words) > 8 else "")
            show(axes[i, 1 + j], results[name]["recon_examples"][i], textwrap.fill(f"{name}: {text}", 34))
    fig.tight_layout()
    save_figure(fig, path, dpi=110)


def report(data: dict[str, Any], results: dict[str, dict], pixel_probe: float, control: dict | None,
           times: dict[str, float], args: argparse.Namespace) -> str:
    names = list(results)
    rows: list[tuple[str, ...]] = []

    def row(label: str, key: str, spec: str = ".3f") -> None:
        rows.append((label, *(fmt(results[n].get(key), spec, missing="n/a") for n in names)))

    row("reconstruction MSE (test, no masking)", "rec", ".4f")
    row("reconstruction MSE (test, 50% masked)", "rec_masked", ".4f")
    row("linear probe acc1: mean token vector", "probe_tokens")
    row("linear probe acc1: BERT layers (mean-pooled, concatenated)", "probe_bert")
    row("linear probe acc1: encoder output (before quantization)", "probe_encoder")
    for n, k in args.settings if control is not None else ():
        key = f"icl_{n}_{k}"
        for name in names:
            results[name][key] = results[name]["icl"][(n, k)]["acc"]
        row(f"in-context {n}-way {k}-shot acc (Gemma-3-270M, {args.episodes} episodes, chance {1 / n:.2f})", key)
    row("token/class information I(code; class)/H(class)", "token_nmi")
    row("k-means NMI of TF-IDF code histograms", "cluster_nmi")
    row("distinct codes used (test)", "distinct", ".0f")
    row("code perplexity (test)", "perplexity", ".0f")
    row("training time (s)", "train_s", ".0f")
    lines = [
        f"LQAE vs baselines on {args.dataset} ({data['splits'][0]}: {len(data['train_x'])} training images, "
        f"{data['splits'][1]}: {len(data['test_x'])} test images; 32 x 32, {data['channels']} channel(s)); "
        f"{args.epochs} epochs, batch {args.batch}, seed {args.seed}, {args.threads} thread(s).",
        "",
        *markdown_table(("metric", *names), rows, align="l" + "r" * len(names)),
        "",
        f"Reference: linear probe on raw pixels, acc1 {pixel_probe:.3f}.",
    ]
    if getattr(args, "icl_error", None):
        lines.append(f"In-context evaluation skipped: Gemma-3-270M could not be loaded ({args.icl_error[:200]}).")
    if control is not None:
        parts = ", ".join(f"{n}-way {k}-shot {control[(n, k)]['acc']:.3f}" for n, k in args.settings)
        prompt_len = np.mean([results[names[0]]["icl"][s]["prompt_tokens"] for s in args.settings])
        lines.append(f"In-context control, every item written as its class name: {parts} "
                     f"(how well Gemma-3-270M binds letter labels in context at all). Mean prompt length "
                     f"with {names[0]} tokens: {prompt_len:.0f} Gemma tokens.")
    lines += ["", "Example token strings (first 3 test images):", ""]
    for name in names:
        for i in range(3):
            lines.append(f"- {name}, {data['class_names'][data['test_y'][i]]}: `{results[name]['strings'][i]}`")
    lines += ["", "Wall time: " + ", ".join(f"{k} {v:.0f} s" for k, v in times.items()) + ".", "",
              machine_line(load=True)]
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--dataset", default="fashion_mnist", choices=("fashion_mnist", "emoji"))
    parser.add_argument("--train", type=int, default=3000)
    parser.add_argument("--test", type=int, default=1000)
    parser.add_argument("--epochs", type=int, default=5)
    parser.add_argument("--batch", type=int, default=64)
    parser.add_argument("--variants", default=",".join(VARIANTS))
    parser.add_argument("--episodes", type=int, default=40, help="in-context episodes per setting (0: skip)")
    parser.add_argument("--settings", default="2x1,5x1", help="in-context N-way x K-shot settings")
    parser.add_argument("--grid", type=int, default=6, help="test images in the figure (one per class)")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--quick", action="store_true", help="smoke run: 256/128 images, 1 epoch, 4 episodes")
    parser.add_argument("--output", type=Path, default=None, help="default results/lqae_compare[_DATASET].md")
    parser.add_argument("--figure", type=Path, default=None, help="default docs/figures/lqae_DATASET.png")
    args = parser.parse_args(argv)
    if args.quick:
        args.train, args.test, args.epochs, args.episodes = 256, 128, 1, min(args.episodes, 4)
    suffix = "" if args.dataset == "fashion_mnist" else f"_{args.dataset}"
    args.output = args.output or Path(f"results/lqae_compare{suffix}{'_quick' if args.quick else ''}.md")
    args.figure = args.figure or (Path(f"results/lqae_{args.dataset}_quick.png") if args.quick
                                  else Path(f"docs/figures/lqae_{args.dataset}.png"))
    args.settings = [tuple(int(v) for v in s.split("x")) for s in args.settings.split(",")]
    torch.set_num_threads(args.threads)
    from threadpoolctl import threadpool_limits  # scikit-learn's BLAS too: spinning threads on busy cores stall

    threadpool_limits(args.threads)
    from align.methods.lqae.aligner import LQAE

    start, times = time.perf_counter(), {}
    data = load_data(args)
    first_of_class = {int(c): i for i, c in reversed(list(enumerate(data["test_y"])))}  # one test image per class
    data["grid_rows"] = sorted(first_of_class.values())[: args.grid]
    log(f"data: {len(data['train_x'])} train / {len(data['test_x'])} test images")
    flat = lambda x: x.flatten(1)  # noqa: E731
    pixel_probe = probe(flat(data["train_x"]), data["train_y"], flat(data["test_x"]), data["test_y"])
    log(f"pixel probe: {pixel_probe:.3f}")
    results: dict[str, dict] = {}
    for name in args.variants.split(","):
        t0 = time.perf_counter()
        model = LQAE(codebook=VARIANTS[name], in_chans=data["channels"], max_epochs=args.epochs,
                     batch_size=args.batch, seed=args.seed)
        model.fit_images(data["train_x"])
        train_s = time.perf_counter() - t0
        log(f"{name}: trained in {train_s:.0f}s, rec per epoch {[round(v, 4) for v in model.history['rec']]}")
        results[name] = evaluate(model, data, args)
        results[name]["train_s"] = train_s
        times[name] = time.perf_counter() - t0
        log(f"{name}: {({k: v for k, v in results[name].items() if isinstance(v, float)})}")
    control, lm = None, None
    if args.episodes > 0:
        t0 = time.perf_counter()
        from align.registry import EMBEDDING_TABLES

        import align.text  # noqa: F401  (registers the tables)

        try:  # hours of training must not be lost to a missing or unloadable LM: skip, and say so
            table = EMBEDDING_TABLES.create(GEMMA)
            lm, tokenizer = table.load_lm().requires_grad_(False).eval(), table.tokenizer
            log(f"Gemma loaded in {time.perf_counter() - t0:.0f}s")
        except Exception as err:  # noqa: BLE001
            args.icl_error = f"{type(err).__name__}: {err}"
            log(f"in-context evaluation skipped: {args.icl_error}")
    if lm is not None:
        names_as_text = [data["class_names"][c] for c in data["test_y"]]
        control = incontext(names_as_text, data["test_y"], lm, tokenizer, args)
        for name in results:
            results[name]["icl"] = incontext(results[name]["strings"], data["test_y"], lm, tokenizer, args)
            log(f"{name}: in-context {({s: r['acc'] for s, r in results[name]['icl'].items()})}")
        times["in-context (Gemma load + episodes)"] = time.perf_counter() - t0
    figure(data, results, args.figure)
    times["total"] = time.perf_counter() - start
    emit(report(data, results, pixel_probe, control, times, args) + f"\nFigure: `{args.figure}`.\n", args.output)


if __name__ == "__main__":
    main()
