"""Codebook-VLP with and without its visual codebook and MIM, on the same frozen tokens and seeds.

Both models are ``configs/codebook_vlp/full.yaml`` and ``no_codebook_mim.yaml``, which differ only in
``codebook`` and ``mim`` (checked here). Image side: MobileNetV2's 7x7x1280 feature map as 49 spatial
tokens, computed once and kept in the feature cache. Text side: all-MiniLM-L6-v2's tokenizer and first
layers (inside the model).

- emoji, concept-disjoint: pretrain on the 955 image-name pairs of the anchor half; on the 956 unseen
  test emoji score image<->caption retrieval (every caption of an image counts, CLIP_benchmark's
  recall) and zero-shot subcategory classification (emoji templates, mean of prompt embeddings);
- Fashion-MNIST: pretrain on ``train@1000`` with class-name captions (templates in turn, as the
  default benchmark), zero-shot classification on ``test@1000``.

For each: mean ± sample std over seeds, the mean paired difference (full - ablation), code usage
(perplexity and dead codes on the eval tokens), wall time per fit, and the total wall time. A PNG
shows, for the most used codes of the seed-0 emoji model, the test emoji with most tokens on that code.

    python benchmarks/codebook_vlp_compare.py [--quick] [--seeds 0 1 2] [--epochs N] [--threads 1]
        [--datasets emoji fashion_mnist] [--output results/codebook_vlp_compare.md]
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch
import yaml

from _common import emit, machine_line, markdown_table, mean_std  # benchmarks/_common.py
from align.bench.pairs import fit_captions
from align.data.base import DatasetSplit
from align.eval.metrics import classification_metrics
from align.eval.retrieval import evaluate_retrieval, flatten_captions
from align.eval.zeroshot import class_prompts, zeroshot_logits
from align.features.cache import FeatureCache, FeatureKey, weights_fingerprint
from align.methods.codebook_vlp.aligner import CodebookVLPAligner
from align.registry import DATASETS, VISION_ENCODERS

IMAGE_ENCODER = "torchvision:mobilenet_v2.imagenet1k_v1"
CONFIGS = Path(__file__).resolve().parents[1] / "configs" / "codebook_vlp"
VARIANTS = {"full": "full.yaml", "no codebook/MIM": "no_codebook_mim.yaml"}


def load_variants() -> dict[str, dict[str, Any]]:
    """Hyper-parameters of both variants; they must differ in ``codebook`` and ``mim`` only."""
    hparams = {label: yaml.safe_load((CONFIGS / file).read_text())["hparams"] for label, file in VARIANTS.items()}
    full, ablation = hparams.values()
    differ = sorted(k for k in full.keys() | ablation.keys() if full.get(k) != ablation.get(k))
    if differ != ["codebook", "mim"]:
        raise SystemExit(f"the two configs must differ in codebook and mim only; they differ in {differ}")
    return hparams


def spatial_tokens(split: DatasetSplit, encoder: Any, cache: FeatureCache) -> torch.Tensor:
    """``[N, 49, 1280]`` MobileNetV2 feature-map tokens, through the feature cache (stored flattened)."""
    weights = weights_fingerprint(VISION_ENCODERS, IMAGE_ENCODER, encoder)
    preprocessing = json.dumps(dataclasses.asdict(encoder.data_config), sort_keys=True)
    key = FeatureKey(IMAGE_ENCODER, weights, preprocessing, split.dataset, split.version, split.split, "image-tokens")

    @torch.inference_mode()
    def embed_batch(start: int, stop: int) -> torch.Tensor:
        pixels = torch.stack([encoder.preprocess(split.load_image(i)) for i in range(start, stop)])
        return encoder.eval().forward_tokens(pixels).float().flatten(1)

    flat = cache.compute(key, split.num_items, embed_batch, batch_size=32, progress=False)
    return flat.view(len(flat), -1, encoder.embed_dim)


def emoji_task(anchors: DatasetSplit, test: DatasetSplit) -> Callable[[CodebookVLPAligner, torch.Tensor], dict[str, float]]:
    texts, owner = flatten_captions(test.captions)
    labels = test.extra_labels["subcategory"]
    prompts = class_prompts(labels.class_names, labels.templates)

    def score(aligner: CodebookVLPAligner, tokens: torch.Tensor) -> dict[str, float]:
        images = aligner.encode_image(tokens)
        retrieval = evaluate_retrieval(images, aligner.encode_text_strings(texts), owner, ks=(1, 5))
        logits = zeroshot_logits(images, aligner.encode_text_strings(prompts), len(labels.class_names), "mean")
        return {"I→T R@1": retrieval["text_retrieval_recall@1"], "T→I R@1": retrieval["image_retrieval_recall@1"],
                "I→T R@5": retrieval["text_retrieval_recall@5"],
                "subcategory acc1": classification_metrics(logits, torch.as_tensor(labels.labels))["acc1"]}

    return score


def fashion_task(test: DatasetSplit) -> Callable[[CodebookVLPAligner, torch.Tensor], dict[str, float]]:
    labels = test.labels
    prompts = class_prompts(labels.class_names, labels.templates)

    def score(aligner: CodebookVLPAligner, tokens: torch.Tensor) -> dict[str, float]:
        logits = zeroshot_logits(aligner.encode_image(tokens), aligner.encode_text_strings(prompts),
                                 len(labels.class_names), "mean")
        return {"zero-shot acc1": classification_metrics(logits, torch.as_tensor(labels.labels))["acc1"]}

    return score


def run(variants: dict[str, dict[str, Any]], seeds: list[int], epochs: int | None, fit_tokens: torch.Tensor,
        captions: list[str], eval_tokens: torch.Tensor, score: Callable) -> tuple[dict, dict, CodebookVLPAligner]:
    """``results[variant][metric] = [value per seed]``, seconds per fit, and the seed-0 full model."""
    results: dict[str, dict[str, list[float]]] = {v: {} for v in variants}
    seconds: dict[str, list[float]] = {v: [] for v in variants}
    keep = None
    for seed in seeds:
        for label, hparams in variants.items():
            hp = dict(hparams, seed=seed) | ({"max_epochs": epochs} if epochs is not None else {})
            started = time.perf_counter()
            aligner = CodebookVLPAligner(**hp).fit_captions(fit_tokens, captions)
            seconds[label].append(time.perf_counter() - started)
            metrics = score(aligner, eval_tokens)
            if hp["codebook"]:
                usage = aligner.code_usage(eval_tokens)
                metrics |= {"code perplexity": usage["perplexity"], "dead codes": usage["dead_codes"]}
                if keep is None:
                    keep = aligner
            for key, value in metrics.items():
                results[label].setdefault(key, []).append(float(value))
            print(f"  {label} seed {seed}: " + ", ".join(f"{k} {v:.3f}" for k, v in metrics.items())
                  + f" ({seconds[label][-1]:.0f} s)", flush=True)
    return results, seconds, keep


def table(results: dict[str, dict[str, list[float]]], seconds: dict[str, list[float]]) -> list[str]:
    """Mean ± sample std over seeds per variant, and of the paired per-seed difference."""
    full, ablation = results.values()
    labels = list(results)
    rows = []
    for metric in full:
        if metric in ablation:
            diffs = [a - b for a, b in zip(full[metric], ablation[metric])]
            rows.append((metric, mean_std(full[metric]), mean_std(ablation[metric]), mean_std(diffs)))
        else:
            rows.append((metric, mean_std(full[metric]), "—", "—"))
    rows.append(("seconds per fit", mean_std(seconds[labels[0]]), mean_std(seconds[labels[1]]), ""))
    return [*markdown_table(("metric", *labels, "paired diff (full - ablation)"), rows, align="lrrr"), ""]


def code_grid(aligner: CodebookVLPAligner, tokens: torch.Tensor, split: DatasetSplit, path: Path,
              codes_shown: int = 6, per_code: int = 8) -> list[str]:
    """PNG: a row per frequently used code, the test images with the largest share of tokens on it."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    indices = aligner.code_indices(tokens)  # [N, T]
    counts = torch.nn.functional.one_hot(indices, aligner.core.codebook.num_codes).sum(1)  # [N, K]
    top_codes = counts.sum(0).argsort(descending=True)[:codes_shown].tolist()
    fig, axes = plt.subplots(len(top_codes), per_code, figsize=(per_code * 1.1, len(top_codes) * 1.25))
    lines = ["Most used codes on the test emoji and the images with most tokens on each "
             f"(figure: `{path}`):", ""]
    for row, code in enumerate(top_codes):
        images = counts[:, code].argsort(descending=True)[:per_code].tolist()
        names = [split.captions[i][0] for i in images]
        lines.append(f"- code {code} ({int(counts[:, code].sum())} tokens): " + ", ".join(names))
        for col, i in enumerate(images):
            ax = axes[row][col]
            ax.imshow(split.load_image(i).convert("RGBA"))
            ax.set_xticks([])
            ax.set_yticks([])
            ax.set_title(f"{int(counts[i, code])}/{indices.shape[1]}", fontsize=6)
            if col == 0:
                ax.set_ylabel(f"code {code}", fontsize=7)
    fig.suptitle("Codebook-VLP (emoji, seed 0): test images with most tokens on each frequent code", fontsize=8)
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return lines + [""]


def emoji_section(variants: dict, seeds: list[int], epochs: int | None, tokens: dict, anchors: DatasetSplit,
                  test: DatasetSplit, figure: Path) -> list[str]:
    print(f"emoji: {anchors.num_items} anchor pairs -> {test.num_items} unseen test emoji", flush=True)
    anchor_captions, _ = fit_captions(anchors)
    results, seconds, model = run(variants, seeds, epochs, tokens["anchors"], anchor_captions, tokens["test"],
                                  emoji_task(anchors, test))
    n_sub = len(test.extra_labels["subcategory"].class_names)
    out = [f"**Emoji, concept-disjoint**: pretrained on {anchors.num_items} anchor image-name pairs; scored on "
           f"{test.num_items} unseen test emoji ({sum(map(len, test.captions))} captions; chance R@1 "
           f"{1 / test.num_items:.4f}; {n_sub} subcategory classes, chance acc1 {1 / n_sub:.3f}).", "",
           *table(results, seconds)]
    if model is not None:
        out += code_grid(model, tokens["test"], test, figure)
    return out


def fashion_section(variants: dict, seeds: list[int], epochs: int | None, tokens: dict, f_train: DatasetSplit,
                    f_test: DatasetSplit) -> list[str]:
    print(f"fashion_mnist: {f_train.num_items} pairs -> {f_test.num_items} test images", flush=True)
    f_captions, how = fit_captions(f_train)
    results, seconds, _ = run(variants, seeds, epochs, tokens["f_train"], f_captions, tokens["f_test"],
                              fashion_task(f_test))
    return [f"**Fashion-MNIST**: pretrained on {f_train.split} ({how}); zero-shot on {f_test.split} "
            f"(10 classes, chance 0.100).", "", *table(results, seconds)]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--output", type=Path, default=Path("results/codebook_vlp_compare.md"))
    parser.add_argument("--figure", type=Path, default=Path("docs/figures/codebook_vlp_codes.png"))
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--epochs", type=int, default=None, help="override max_epochs of both configs")
    parser.add_argument("--quick", action="store_true", help="smoke run: 120 pairs, 120 eval items, 1 epoch, seed 0")
    parser.add_argument("--datasets", nargs="+", choices=["emoji", "fashion_mnist"], default=["emoji", "fashion_mnist"])
    parser.add_argument("--threads", type=int, default=None,
                        help="torch threads (default: torch's choice; 1 is faster when other jobs share the cores)")
    args = parser.parse_args()
    if args.threads is not None:
        torch.set_num_threads(args.threads)
    started = time.perf_counter()
    variants = load_variants()
    seeds, epochs = (args.seeds, args.epochs) if not args.quick else ([0], 1)
    n_fit, n_eval = ("@120", "@120") if args.quick else ("", "")
    cache = FeatureCache()
    encoder = VISION_ENCODERS.create(IMAGE_ENCODER)
    emoji, fashion = DATASETS.create("emoji"), DATASETS.create("fashion_mnist")
    anchors, test = emoji.load(f"anchors{n_fit}"), emoji.load(f"test{n_eval}")
    f_train, f_test = fashion.load("train@120" if args.quick else "train@1000"), fashion.load(
        "test@120" if args.quick else "test@1000")
    wanted = {"anchors": "emoji", "test": "emoji", "f_train": "fashion_mnist", "f_test": "fashion_mnist"}
    tokens = {name: spatial_tokens(split, encoder, cache)
              for name, split in (("anchors", anchors), ("test", test), ("f_train", f_train), ("f_test", f_test))
              if wanted[name] in args.datasets}
    shape = next(iter(tokens.values())).shape
    token_seconds = time.perf_counter() - started
    hp = variants["full"]
    out = [f"Codebook-VLP: full model vs the same config with `codebook: false, mim: false` "
           f"(configs/codebook_vlp/). Image tokens: `{IMAGE_ENCODER}` 7x7 grid "
           f"({shape[1]} x {shape[2]}); text: `{hp['table']}` "
           f"({hp['text_layers']} text + {hp['fusion_layers']} fusion layers). Seeds {seeds}; "
           f"{epochs or hp['max_epochs']} epochs, batch {hp['batch_size']}; torch threads {torch.get_num_threads()}.",
           "", f"Spatial tokens (cached after the first run): {token_seconds:.0f} s.", ""]
    print("\n".join(out), flush=True)

    if "emoji" in args.datasets:
        out += emoji_section(variants, seeds, epochs, tokens, anchors, test, args.figure)
    if "fashion_mnist" in args.datasets:
        out += fashion_section(variants, seeds, epochs, tokens, f_train, f_test)
    out += [f"Total wall time: {time.perf_counter() - started:.0f} s.", "", machine_line(load=True)]
    emit("\n".join(out), args.output)


if __name__ == "__main__":
    main()
