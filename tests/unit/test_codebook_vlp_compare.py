"""benchmarks/codebook_vlp_compare.py's bookkeeping (no model is fitted): the two configs differ in
``codebook`` and ``mim`` only, and the paired table counts the seeds the full model wins (saved runs:
``cached_run`` in tests/unit/test_bench_common.py)."""

from __future__ import annotations

from bench_scripts import load_benchmark

script = load_benchmark("codebook_vlp_compare")


def test_the_two_configs_differ_in_codebook_and_mim_only() -> None:
    full, ablation = script.load_variants().values()
    assert (full["codebook"], full["mim"], ablation["codebook"], ablation["mim"]) == (True, True, False, False)
    assert full["rerank_k"] == 0  # re-ranking is set after the fit, so one fitted model gives both rows


def test_paired_table_counts_the_seeds_the_full_model_wins() -> None:
    full = [{"i2t_r1": 0.3, "train_s": 10.0}, {"i2t_r1": 0.2, "train_s": 12.0}]
    ablation = [{"i2t_r1": 0.1, "train_s": 8.0}, {"i2t_r1": 0.4, "train_s": 8.0}]
    lines = script.main_table({"full": full, "no codebook/MIM": ablation})
    row = next(line for line in lines if line.startswith("| I→T R@1 |"))
    assert row.split("|")[-2].strip() == "1/2"
    assert "0.000 ± 0.283" in row  # paired differences 0.2 and -0.2
