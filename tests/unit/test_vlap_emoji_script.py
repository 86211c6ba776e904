"""benchmarks/vlap_emoji.py's tables (no model is fitted): from a small results folder written by hand
as ``align bench`` writes it (results sealed by their checksum, per-item outputs beside them), every
score gets its interval pooled over seeds and every claim its paired interval, per-seed signs and
verdict: a planted real gap is told apart, planted noise is not; a result without per-item outputs (an
older align's) is reported without intervals; the visual arithmetic's hit rates resample the swaps."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from align.bench.record.item_files import write_items
from align.bench.plan.layout import result_path
from align.bench.record.result_json import make_result, write_result
from align.eval.bootstrap import Bootstrap
from align.eval.items import CaptionItems, ClassificationItems, MeanItems, RetrievalItems
from bench_scripts import load_benchmark

script = load_benchmark("vlap_emoji")
N, CLASSES = 200, 8  # test emoji, one name each
IMAGE, TEXT = "torchvision:mobilenet_v2.imagenet1k_v1", "table:gguf:gemma-3-270m.q4_k_m"
BOOT = Bootstrap(resamples=200)


def write(root: Path, aligner: str, seed: int, task: str, items: Any, keep_items: bool = True,
          label_set: str | None = None) -> None:
    """One result file of ``task`` whose metrics are read from ``items`` (and kept beside it)."""
    path = result_path(root, image_encoder=IMAGE, text_encoder=TEXT, aligner=aligner,
                       dataset="emoji" + (f"-{label_set}" if label_set else ""), task=task, seed=seed)
    metrics = items.metrics() if task != "captioning" else {"CIDEr": items.value("CIDEr"), "Bleu_1": 0.1 + 0.01 * seed}
    extra = {"items": write_items(path, items)} if keep_items else {}
    write_result(path, make_result(dataset="emoji", aligner=aligner, image_encoder=IMAGE, text_encoder=TEXT, task=task,
                                   metrics=metrics, seed=seed, eval_split="test", label_set=label_set, **extra))


def planted(root: Path, aligner: str, seed: int, hits: np.ndarray, keep_items: bool = True) -> None:
    """Retrieval both ways, subcategory zero-shot and CIDEr, right exactly where ``hits``."""
    ranks = np.where(hits, 0, 9).astype(np.int64)
    write(root, aligner, seed, "zeroshot_retrieval",
          RetrievalItems(ranks, ranks.copy(), np.arange(N, dtype=np.int64), (1, 5)), keep_items)
    labels = (np.arange(N) % CLASSES).astype(np.int64)
    top = np.stack([np.where(hits, labels, (labels + 1) % CLASSES)] + [(labels + j) % CLASSES for j in range(2, 6)], 1)
    write(root, aligner, seed, "zeroshot_classification", ClassificationItems(top.astype(np.int64), labels, CLASSES),
          keep_items, label_set="subcategory")
    write(root, aligner, seed, "captioning", CaptionItems(hits[:50].astype(np.float64), ("a",) * 50, (("a",),) * 50),
          keep_items)


def cells_by(lines: list[str], difference: str) -> dict[str, list[str]]:
    found = {}
    for line in lines[2:]:
        cells = [c.strip() for c in line.strip().strip("|").split("|")]
        if cells[1] == difference:
            found[cells[2]] = cells[3:]
    return found


def test_claims_get_paired_intervals_pooled_over_seeds_from_the_items_beside_the_results(tmp_path: Path) -> None:
    rng = np.random.default_rng(0)
    for seed in (0, 1):
        good = rng.random(N) < 0.7
        near = good.copy()  # the same as the full model but for two items each way: noise
        near[rng.choice(np.flatnonzero(good), 2, replace=False)] = False
        near[rng.choice(np.flatnonzero(~good), 2, replace=False)] = True
        planted(tmp_path, "vlap", seed, good)
        planted(tmp_path, "vlap-caption-only", seed, good & (rng.random(N) < 0.4))  # a real gap
        planted(tmp_path, "vlap-uniform", seed, near)
        planted(tmp_path, "vlap-prefix1", seed, near, keep_items=seed == 0)  # seed 1 written by an older align
    values = script.per_seed(tmp_path)
    assert set(values[("vlap", "zeroshot_retrieval", "text_retrieval_recall@1")]["values"]) == {0, 1}
    lines = script.claim_table(values, BOOT)
    assert lines[0].split("|")[4:8] == [" mean ± std over seeds ", " paired 95% interval (pooled) ", " seeds won ",
                                        " verdict "]
    gap = cells_by(lines, "vlap − vlap-caption-only")
    for metric in ("image→name R@1", "name→image R@1", "subcategory acc1", "CIDEr"):
        assert gap[metric][2:] == ["2/2", "higher (better)"], metric
        low = float(gap[metric][1].split("[")[1].split(",")[0])
        assert low > 0, metric
    noise = cells_by(lines, "vlap − vlap-uniform")
    assert noise["image→name R@1"][3] == "cannot be told apart" and noise["subcategory acc1"][3] == "cannot be told apart"
    older = cells_by(lines, "vlap − vlap-prefix1")
    assert older["image→name R@1"][1:] == ["no per-item outputs", older["image→name R@1"][2], "–"]
    table = script.score_table(values, ["vlap", "vlap-prefix1"], {}, BOOT)
    vlap_row = next(line for line in table if line.startswith("| vlap |")).split("|")
    assert vlap_row[3].count("[") == 1 and vlap_row[-2].count("[") == 0  # R@1 has its interval; BLEU-1 is not resampled
    assert "[" not in next(line for line in table if line.startswith("| vlap-prefix1 |"))
    notes = script.interval_notes(values, BOOT)
    assert "200 resamples" in notes[0] and notes[1].endswith("so without intervals: vlap-prefix1.")


def test_visual_arithmetic_resamples_the_swaps_and_pairs_with_and_without() -> None:
    rng = np.random.default_rng(1)
    swaps = 120
    hits = {}
    for seed in (0, 1):
        with_ = (rng.random(swaps) < 0.6).astype(float)
        runs = {"top1": with_, "top5": np.maximum(with_, rng.random(swaps) < 0.5),
                "top1 without arithmetic": with_ * (rng.random(swaps) < 0.3), "top5 without arithmetic": with_}
        hits[("vlap", "all")] = hits.get(("vlap", "all"), {}) | {seed: {k: MeanItems(v.astype(float), k)
                                                                       for k, v in runs.items()}}
    hits[("vlap", "without flags")] = {0: {k: MeanItems(np.zeros(0), k) for k in script.ARITHMETIC}}
    lines = script.arithmetic_table(hits, {"all": swaps, "without flags": 0}, BOOT)
    row = [c.strip() for c in lines[2].strip("|").split("|")]
    assert row[:3] == ["vlap", "all", "120"] and all("[" in c for c in row[3:8]) and row[8] == "higher (better)"
    assert [c.strip() for c in lines[3].strip("|").split("|")][2:] == ["0", *["–"] * 6]


def test_arithmetic_hits_are_one_value_per_swap() -> None:
    import torch

    class Words:
        def encode_text(self, vocab: list[str]) -> torch.Tensor:
            return torch.eye(4)[[{"man": 2, "woman": 3}[w] for w in vocab]]

    v = torch.tensor([[1.0, 0, 1, 0], [1.0, 0, 0, 1], [0, 1.0, 0, 0]])  # image 0 - man + woman = image 1
    found = script.arithmetic(v, Words(), [(0, 1, "man", "woman")])
    assert {k: i.values.tolist() for k, i in found.items()} == {
        "top1": [1.0], "top5": [1.0], "top1 without arithmetic": [1.0], "top5 without arithmetic": [1.0]}
