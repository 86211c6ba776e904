"""benchmarks/codebook_vlp_compare.py's bookkeeping (no model is fitted): the two configs differ in
``codebook`` and ``mim`` only, the paired table counts the seeds the full model wins and gives the
paired bootstrap interval and verdict from planted per-item outputs (a real gap is told apart, noise
is not), and a study run's per-item outputs are saved with it and read back (saved runs:
``cached_run`` in tests/unit/test_bench_common.py)."""

from __future__ import annotations

from pathlib import Path
from types import SimpleNamespace
from typing import Any

import numpy as np
import pytest

from bench_scripts import load_benchmark

script = load_benchmark("codebook_vlp_compare")
N = 300  # test images, one caption each


def test_the_two_configs_differ_in_codebook_and_mim_only() -> None:
    full, ablation = script.load_variants().values()
    assert (full["codebook"], full["mim"], ablation["codebook"], ablation["mim"]) == (True, True, False, False)
    assert full["rerank_k"] == 0  # re-ranking is set after the fit, so one fitted model gives both rows


def test_paired_table_counts_the_seeds_the_full_model_wins() -> None:
    full = [{"i2t_r1": 0.3, "train_s": 10.0}, {"i2t_r1": 0.2, "train_s": 12.0}]
    ablation = [{"i2t_r1": 0.1, "train_s": 8.0}, {"i2t_r1": 0.4, "train_s": 8.0}]
    lines = script.main_table({"full": full, "no codebook/MIM": ablation}, [0, 1])
    cells = cells_of(lines, "I→T R@1")
    assert cells[-2:] == ["1/2", "–"] and cells[-3] == "no per-item outputs"  # runs saved before items were kept
    assert cells[2].endswith("0.000 ± 0.283")  # paired differences 0.2 and -0.2


def cells_of(lines: list[str], metric: str) -> list[str]:
    row = next(line for line in lines if line.startswith(f"| {metric} |"))
    return [c.strip() for c in row.strip().strip("|").split("|")][1:]


def planted(hits: np.ndarray, seed: int, codes: bool) -> dict[str, Any]:
    """A study run whose image and text queries find their match first exactly where ``hits``, whose
    zero-shot predictions are right there too, and (full model) whose codes follow the labels."""
    from align.eval.items import ClassificationItems, CodeItems, RetrievalItems

    labels = np.arange(N) % 10
    ranks = np.where(hits, 0, 7).astype(np.int64)
    items: dict[str, Any] = {
        "retrieval": RetrievalItems(ranks, ranks.copy(), np.arange(N, dtype=np.int64), (1, 5)),
        "zeroshot": ClassificationItems(np.stack([np.where(hits, labels, (labels + 1) % 10)] +
                                                 [(labels + j) % 10 for j in range(2, 6)], 1).astype(np.int64),
                                        labels.astype(np.int64), 10)}
    if codes:
        items["codes"] = CodeItems(np.stack([labels, labels + 10], 1).astype(np.int64), labels.astype(np.int64), seed)
    out = {key: items[name].value(metric) for key, (_, _, (name, metric)) in script.METRICS.items()
           if name in items and key != "subcat_acc1"}
    if codes:
        usage = items["codes"].metrics()
        out |= {"perplexity": usage["code_perplexity"], "used_codes": usage["codes_used"], "top_share": 0.05,
                "dead_codes": 64 - usage["codes_used"], "code_nmi": usage["code_class_nmi"]}
    return out | {"train_s": 1.0, "eval_s": 0.1, script.PER_ITEM: items}


def test_paired_table_tells_a_planted_gap_apart_and_calls_planted_noise_a_tie() -> None:
    from align.eval.bootstrap import Bootstrap

    rng = np.random.default_rng(0)
    boot = Bootstrap(resamples=200)
    full, gap, noise = [], [], []
    for seed in (0, 1):
        hits = rng.random(N) < 0.7
        worse = hits & (rng.random(N) < 0.5)  # about 35% right: a real gap of about 0.35
        near = hits.copy()
        near[rng.choice(np.flatnonzero(hits), 2, replace=False)] = False
        near[rng.choice(np.flatnonzero(~hits), 2, replace=False)] = True
        full.append(planted(hits, seed, codes=True))
        gap.append(planted(worse, seed, codes=False))
        noise.append(planted(near, seed, codes=False))
    told = script.main_table({"full": full, "no codebook/MIM": gap}, [0, 1], boot)
    assert told[0].split("|")[4:8] == [" paired diff (full - ablation), mean ± std over seeds ",
                                       " paired 95% interval (pooled) ", " seeds full wins ", " verdict "]
    for metric in ("I→T R@1", "T→I R@1", "zero-shot acc1"):
        cells = cells_of(told, metric)
        assert cells[-2:] == ["2/2", "higher (better)"], metric
        low, high = (float(x) for x in cells[3].split("[")[1].rstrip("]").split(","))
        assert 0 < low < high, metric
        assert cells[0].count("[") == 1 and cells[1].count("[") == 1  # each variant's own interval
    assert cells_of(told, "seconds per fit")[3] == "not resampled"
    tie = script.main_table({"full": full, "no codebook/MIM": noise}, [0, 1], boot)
    assert cells_of(tie, "I→T R@1")[-1] == "cannot be told apart"
    assert cells_of(tie, "zero-shot acc1")[-1] == "cannot be told apart"
    codes = script.code_table({"full": full, "no codebook/MIM": gap}, [0, 1], "class")
    assert any(line.startswith("| mean ± std |") for line in codes)
    assert not any("[" in line for line in codes)  # statistics of the pooled codes: not resampled
    notes = script.interval_notes([{"full": full, "no codebook/MIM": noise[:1] + [noise[1] | {script.PER_ITEM: None}]}], boot)
    assert "200 resamples" in notes[0] and "1 run(s) were saved before per-item outputs" in notes[2]


def test_a_study_run_saves_its_items_and_a_rerun_reads_them_back(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    rng = np.random.default_rng(3)

    def fake_score(aligner: Any, data: Any, rerank_k: int) -> dict[str, Any]:
        return planted(rng.random(N) < 0.5, 0, codes=aligner.hparams["codebook"])

    monkeypatch.setattr(script, "fit", lambda hp, tokens, captions: (SimpleNamespace(hparams=hp, history={}), 1.0))
    monkeypatch.setattr(script, "score", fake_score)
    variants = {"full": {"codebook": True}, "no codebook/MIM": {"codebook": False}}
    first = script.study("emoji", variants, [0], 1, None, [], None, 0, {"fit": "x"}, tmp_path, keep_grid=False)
    assert sorted(p.name for p in (tmp_path / "emoji").iterdir()) == [
        "full_seed0.items.safetensors", "full_seed0.json", "no_codebook_mim_seed0.items.safetensors",
        "no_codebook_mim_seed0.json"]
    monkeypatch.setattr(script, "fit", lambda *a: pytest.fail("a saved run was refitted"))
    again = script.study("emoji", variants, [0], 1, None, [], None, 0, {"fit": "x"}, tmp_path, keep_grid=False)
    for label in variants:
        saved, back = first[label][0][script.PER_ITEM], again[label][0][script.PER_ITEM]
        assert list(saved) == list(back)
        for name in saved:
            assert all(np.array_equal(saved[name].arrays()[k], back[name].arrays()[k]) for k in saved[name].arrays())
        assert again[label][0]["i2t_r1"] == first[label][0]["i2t_r1"]
