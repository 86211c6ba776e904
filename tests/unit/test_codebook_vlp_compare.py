"""benchmarks/codebook_vlp_compare.py's bookkeeping (no model is fitted): the two configs differ in
``codebook`` and ``mim`` only, saved runs are reused only for the same key, and the paired table counts
the seeds the full model wins."""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path
from types import ModuleType

BENCHMARKS = Path(__file__).resolve().parents[2] / "benchmarks"


def load_script() -> ModuleType:
    sys.path.insert(0, str(BENCHMARKS))  # the script imports benchmarks/_common.py as `_common`
    try:
        spec = importlib.util.spec_from_file_location("codebook_vlp_compare_under_test",
                                                      BENCHMARKS / "codebook_vlp_compare.py")
        module = importlib.util.module_from_spec(spec)
        sys.modules[spec.name] = module  # dataclasses look their module up there
        spec.loader.exec_module(module)
        return module
    finally:
        sys.path.remove(str(BENCHMARKS))


script = load_script()


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
