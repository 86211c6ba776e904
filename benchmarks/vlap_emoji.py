"""VLAP on the emoji concept-disjoint split: the full model against its ablations and ridge, in one space.

Every method maps MobileNetV2 image features into Gemma-3 270M's raw word-embedding space; texts are
the mean word embedding of their tokens (VLAP's own text feature, registered as the text encoder
``table:gguf:gemma-3-270m.q4_k_m``, so ridge is fitted into exactly that space). Fit on the 955
image-name pairs of the anchor half, scored on the 956 unseen test emoji. Writes:

1. the scores of ``configs/bench/vlap_emoji.yaml`` (run through ``align bench``; fitted aligners are
   saved beside the results and reused, so a re-run only re-reads them): image<->name retrieval
   R@1/R@5, zero-shot subcategory accuracy, and CIDEr of greedy captions against the emoji names;
2. visual semantic arithmetic: for every pair of test emoji whose names differ in one word
   (``man frowning`` / ``woman frowning``), the image of the first minus that word plus the other,
   searched among the test images (the query image excluded), against the same search without the
   arithmetic (the query image alone);
3. for a few test emoji, the captions of each captioning variant and VLAP's nearest vocabulary words.

    python benchmarks/vlap_emoji.py [--results results/vlap-emoji] [--output results/vlap_emoji.md]
"""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F

from _common import emit, machine_line, markdown_table  # benchmarks/_common.py
from align.bench.config import load_config
from align.bench.pairs import FeatureBank
from align.bench.report import aggregate
from align.bench.results import aligner_path, read_results
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
SHOWN = 8  # test emoji shown with their captions
FULL = "vlap"  # the label of the full model in the config: its nearest words are shown


def score_table(results: Path, aligners: list[str]) -> list[str]:
    rows = aggregate(read_results(results))
    cell = {(r["aligner"], r["task"], m): s["mean"] for r in rows for m, s in r["metrics"].items()}
    rows = [(name, *(cell.get((name, task, metric)) for task, metric, _ in COLUMNS)) for name in aligners]
    return markdown_table(("aligner", *(h for _, _, h in COLUMNS)), rows, align="l" + "r" * len(COLUMNS), missing="–")


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


def arithmetic(aligner: Any, images: torch.Tensor, words: Any, swaps: list[tuple[int, int, str, str]]) -> dict[str, float]:
    """Hit rates of image(i) - word(a) + word(b) -> image(j) among the test images (query excluded)."""
    v = F.normalize(aligner.encode_image(images), dim=-1)
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


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--config", type=Path, default=CONFIG)
    parser.add_argument("--results", type=Path, default=Path("results/vlap-emoji"))
    parser.add_argument("--output", type=Path, default=Path("results/vlap_emoji.md"))
    args = parser.parse_args(argv)

    config = load_config(args.config)
    run_benchmark(config, args.results, progress=False, save_aligners=True)
    (image_encoder,), (text_encoder,) = config.image_encoders, config.text_encoders
    spec = config.datasets[0]
    seed = config.seeds[0]
    names = [a.display for a in config.aligners]
    fitted = {name: load_aligner(aligner_path(args.results, image_encoder=image_encoder, text_encoder=text_encoder,
                                              aligner=name, dataset=spec.name, fit_split=spec.fit, seed=seed))
              for name in names}

    test = DATASETS.create(spec.name).load(spec.eval)
    images = FeatureBank(progress=False).images(image_encoder, test)
    test_names = [caps[0] for caps in test.captions]
    words = TEXT_ENCODERS.create(text_encoder)
    swaps = one_word_swaps(test_names)

    lines = [
        f"VLAP on emoji ({spec.fit} -> {spec.eval}, concept-disjoint): {image_encoder} image features, "
        f"texts and words in {text_encoder} (Gemma-3 270M raw word embeddings). Seed {seed}; "
        f"config `{args.config.relative_to(Path.cwd()) if args.config.is_relative_to(Path.cwd()) else args.config}`.",
        "",
        *score_table(args.results, names),
        "",
        f"Chance: retrieval R@1 1/{len(test_names)}; subcategory accuracy depends on the class sizes. Ridge has "
        "no language model, so no captions.",
        "",
        "Visual arithmetic over the one-word swaps among the test emoji (image of `i` - word a + word b, nearest "
        "test image, query excluded; unit vectors). Most swaps are between country flags, which need knowledge "
        "that image features of a flag do not carry, so they are also counted apart:",
        "",
    ]
    groups = {"all": swaps, "without flags": [w for w in swaps if "flag" not in test_names[w[0]].split()]}
    hits = []
    for name in names:
        for group, members in groups.items():
            hit = arithmetic(fitted[name], images, words, members)
            hits.append((name, group, len(members), hit["top1"], hit["top5"], hit["top1 without arithmetic"],
                         hit["top5 without arithmetic"]))
    lines += markdown_table(("aligner", "swaps", "count", "top-1", "top-5", "top-1 without arithmetic",
                             "top-5 without arithmetic"), hits)
    shown = torch.linspace(0, len(test_names) - 1, SHOWN).long().tolist()
    captioners = [n for n in names if callable(getattr(fitted[n], "caption", None))]
    captions = {n: fitted[n].caption(images[shown], max_new_tokens=12) for n in captioners}
    nearest = fitted[FULL].nearest_words(images[shown], top=5) if FULL in fitted else []
    examples = [(test_names[index], *(captions[n][row] for n in captioners), ", ".join(nearest[row]) if nearest else "")
                for row, index in enumerate(shown)]
    lines += ["", f"Greedy captions of {SHOWN} test emoji (and the full model's nearest words):", "",
              *markdown_table(("emoji name", *captioners, f"nearest words ({FULL})"), examples),
              "", machine_line()]
    emit("\n".join(lines), args.output)


if __name__ == "__main__":
    main()
