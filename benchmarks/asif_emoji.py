"""ASIF on the emoji concept-disjoint split: the paper's claims at small scale, checked.

Image-to-name retrieval over the 956 test emoji (each image against the 956 test names; R@1 is
CLIP_benchmark's ``text_retrieval_recall@1``) with MobileNetV2 image features and all-MiniLM-L6-v2
name features; anchors / training pairs are the 955 image-name pairs of the anchor half, which share
no emoji with the test half. Writes three tables and a plot:

1. ASIF (k=50, p=8, fixed in advance from the reference measurement) against dense ASIF, the
   trained and closed-form baselines, and chance;
2. R@1 against the number of pairs (seeded prefixes of a shuffled anchor set) for ASIF, ridge,
   procrustes and contrastive (3 seeds), and the plot of it;
3. a k x p sweep at all 955 anchors (a sensitivity analysis on the test half, not model selection),
   with the clamp-negatives ablation;
4. explanations: for the first test emoji ASIF retrieves correctly, the anchor pairs that contributed
   most to the match.

    python benchmarks/asif_emoji.py [--output results/asif_emoji.md] [--figure docs/figures/asif_anchors.png]
"""

from __future__ import annotations

import argparse
from pathlib import Path

import torch

from _common import MeanStd, emit, machine_line, markdown_table, mean_std, save_figure  # benchmarks/_common.py
from align.bench.execute.features import FeatureBank
from align.eval.metrics import retrieval_metrics
from align.methods.asif.aligner import scores, sweep
from align.registry import ALIGNERS, DATASETS

IMAGE_ENCODER = "torchvision:mobilenet_v2.imagenet1k_v1"
TEXT_ENCODER = "hf:sentence-transformers/all-MiniLM-L6-v2"
COUNTS = (30, 100, 300, 955)
KS: tuple[int | None, ...] = (5, 10, 20, 50, 100, 320, None)
PS = (1.0, 2.0, 4.0, 8.0, 16.0)


def r_at_1(similarity: torch.Tensor) -> float:
    """Image-to-name R@1 with one name per image (name i belongs to image i)."""
    owner = torch.arange(similarity.shape[1])
    return retrieval_metrics(similarity, owner, ks=(1,))["text_retrieval_recall@1"]


def names(split) -> list[str]:  # noqa: ANN001
    return [caps[0] for caps in split.captions]


def features() -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor, list[str], list[str]]:
    bank = FeatureBank(progress=False)
    dataset = DATASETS.create("emoji")
    anchors, test = dataset.load("anchors"), dataset.load("test")
    return (bank.images(IMAGE_ENCODER, anchors), bank.texts(TEXT_ENCODER, names(anchors), anchors, "names"),
            bank.images(IMAGE_ENCODER, test), bank.texts(TEXT_ENCODER, names(test), test, "names"),
            names(anchors), names(test))


def approximate_search(anchor_x, anchor_y, test_x, test_y) -> list[str]:  # noqa: ANN001
    """Recall@50 of faiss's approximate indexes against the exact search, and ASIF's R@1 through them."""
    from align.kernels.topk import approx_recall

    rows = []
    for backend in ("torch", "faiss", "faiss-ivf", "faiss-hnsw"):
        approximate = backend.startswith("faiss-")
        recall_i = approx_recall(test_x, anchor_x, 50, backend) if approximate else 1.0
        recall_t = approx_recall(test_y, anchor_y, 50, backend) if approximate else 1.0
        r1 = aligner_r1("asif", {"k": 50, "p": 8, "search": backend}, anchor_x, anchor_y, test_x, test_y)
        rows.append((backend, recall_i, recall_t, r1))
    return ["Approximate anchor search (k=50) against the exact one:", "",
            *markdown_table(("search", "recall@50 (images)", "recall@50 (names)", "ASIF R@1"), rows), ""]


def explanations(anchor_x, anchor_y, test_x, test_y, anchor_names, test_names, shown: int = 4) -> list[str]:  # noqa: ANN001
    """Top contributing anchors for the first ``shown`` test emoji whose name ASIF ranks first."""
    from align.methods.asif.explain import explain

    aligner = ALIGNERS.create("asif", k=50, p=8).fit(anchor_x, anchor_y)
    image_rel, text_rel = aligner.represent_image(test_x), aligner.represent_text(test_y)
    best = scores(image_rel, text_rel).argmax(dim=1)
    lines = ["Why ASIF matched (top 3 anchor pairs by their share of the score):", ""]
    for i in [int(i) for i in torch.nonzero(best == torch.arange(len(best))).flatten()[:shown]]:
        why = explain(aligner, image_rel, text_rel, top=3, image_row=i, text_row=i, anchor_captions=anchor_names)
        parts = ", ".join(f"{c.caption!r} {c.share:.0%}" for c in why.contributions)
        lines.append(f"- image of {test_names[i]!r} -> {test_names[i]!r}: {parts}")
    return lines


def aligner_r1(name: str, hparams: dict, fit_x: torch.Tensor, fit_y: torch.Tensor,
               test_x: torch.Tensor, test_y: torch.Tensor) -> float:
    aligner = ALIGNERS.create(name, **hparams).fit(fit_x, fit_y)
    img = torch.nn.functional.normalize(aligner.encode_image(test_x), dim=1)
    txt = torch.nn.functional.normalize(aligner.encode_text(test_y), dim=1)
    return r_at_1(img @ txt.T)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--output", type=Path, default=Path("results/asif_emoji.md"))
    parser.add_argument("--figure", type=Path, default=Path("docs/figures/asif_anchors.png"))
    args = parser.parse_args()
    torch.manual_seed(0)
    anchor_x, anchor_y, test_x, test_y, anchor_names, test_names = features()
    n_test = test_x.shape[0]
    out = [f"Image-to-name retrieval over {n_test} unseen emoji; anchors / pairs from the {anchor_x.shape[0]} "
           f"emoji of the anchor half. Image `{IMAGE_ENCODER}`, text `{TEXT_ENCODER}`.", ""]

    # 1. headline comparison on all anchors
    rows = [
        ("ASIF k=50, p=8", aligner_r1("asif", {"k": 50, "p": 8}, anchor_x, anchor_y, test_x, test_y)),
        ("ASIF dense (k=all, p=1)", aligner_r1("asif", {"k": None, "p": 1}, anchor_x, anchor_y, test_x, test_y)),
        ("ridge (alpha=1)", aligner_r1("ridge", {}, anchor_x, anchor_y, test_x, test_y)),
        ("procrustes", aligner_r1("procrustes", {}, anchor_x, anchor_y, test_x, test_y)),
        ("contrastive (seed 0)", aligner_r1("contrastive", {"seed": 0}, anchor_x, anchor_y, test_x, test_y)),
        ("chance", 1.0 / n_test),
    ]
    out += [*markdown_table(("method", "R@1"), rows), ""]

    # 2. R@1 against the number of pairs (seeded shuffle, then prefixes)
    order = torch.randperm(anchor_x.shape[0], generator=torch.Generator().manual_seed(0))
    ax, ay = anchor_x[order], anchor_y[order]
    image_sweep = sweep(test_x, ax, COUNTS, [50], [8.0])
    text_sweep = sweep(test_y, ay, COUNTS, [50], [8.0])
    curve: dict[str, list[MeanStd]] = {"ASIF k=50, p=8": [], "ridge": [], "procrustes": [], "contrastive": []}
    for n in COUNTS:
        asif_r1 = r_at_1(scores(image_sweep.relative(n, 50, 8.0), text_sweep.relative(n, 50, 8.0)))
        curve["ASIF k=50, p=8"].append(mean_std([asif_r1]))
        curve["ridge"].append(mean_std([aligner_r1("ridge", {}, ax[:n], ay[:n], test_x, test_y)]))
        curve["procrustes"].append(mean_std([aligner_r1("procrustes", {}, ax[:n], ay[:n], test_x, test_y)]))
        curve["contrastive"].append(mean_std(aligner_r1("contrastive", {"seed": s}, ax[:n], ay[:n], test_x, test_y)
                                             for s in (0, 1, 2)))
    out += ["R@1 against the number of pairs (contrastive: mean ± std over seeds 0, 1, 2):", "",
            *markdown_table(("pairs", *curve), [(n, *(points[i] for points in curve.values()))
                                                for i, n in enumerate(COUNTS)]), ""]

    # 3. k x p sweep at all anchors, plus the clamp ablation
    images_all = sweep(test_x, anchor_x, [anchor_x.shape[0]], KS, PS)
    texts_all = sweep(test_y, anchor_y, [anchor_x.shape[0]], KS, PS)
    n_all = anchor_x.shape[0]
    grid = [("all" if k is None else k,
             *(r_at_1(scores(images_all.relative(n_all, k, p), texts_all.relative(n_all, k, p))) for p in PS))
            for k in KS]
    out += [f"ASIF R@1 for k x p at {n_all} anchors (negatives clamped before the power):", "",
            *markdown_table(("k \\ p", *(f"{p:g}" for p in PS)), grid, align="r" * (len(PS) + 1))]
    no_clamp = aligner_r1("asif", {"k": 50, "p": 8, "clamp_negative": False}, anchor_x, anchor_y, test_x, test_y)
    no_clamp_all = aligner_r1("asif", {"k": None, "p": 8, "clamp_negative": False}, anchor_x, anchor_y, test_x, test_y)
    out += ["", f"Clamp ablation: k=50, p=8 without clamping R@1 = {no_clamp:.3f}; "
            f"k=all, p=8 without clamping R@1 = {no_clamp_all:.3f}.", ""]
    out += approximate_search(anchor_x, anchor_y, test_x, test_y)
    out += explanations(anchor_x, anchor_y, test_x, test_y, anchor_names, test_names)
    out += ["", machine_line()]

    emit("\n".join(out), args.output)
    plot(curve, args.figure)


def plot(curve: dict[str, list[MeanStd]], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(5.5, 3.6), dpi=120)
    for name, points in curve.items():
        means = [p.mean for p in points]
        stds = [p.std for p in points]
        ax.errorbar(COUNTS, means, yerr=stds if any(stds) else None, marker="o", capsize=3, label=name)
    ax.set_xscale("log")
    ax.set_xticks(COUNTS, [str(c) for c in COUNTS])
    ax.set_xlabel("image-name pairs (anchors)")
    ax.set_ylabel("image-to-name R@1 (956 unseen emoji)")
    ax.set_title("Emoji, MobileNetV2 + MiniLM")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    fig.tight_layout()
    save_figure(fig, path)


if __name__ == "__main__":
    main()
