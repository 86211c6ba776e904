"""``codebook_vlp_compare.py --progress``: what a study that spans sessions has saved and what is left, read
from the run files alone (a fit saved at another budget, or unreadable, is not counted as done)."""

from __future__ import annotations

import json
from pathlib import Path

from bench_scripts import load_benchmark

script = load_benchmark("codebook_vlp_compare")
ARMS = {"k-means codes": "full", "joint codebook": "joint"}
HEADS = {"linear contrastive head": "contrastive"}


def save(runs: Path, dataset: str, slug: str, seed: int, epochs: int) -> None:
    (runs / dataset).mkdir(parents=True, exist_ok=True)
    (runs / dataset / f"{slug}_seed{seed}.json").write_text(json.dumps({"key": {"hparams": {"max_epochs": epochs}}}))


def test_saved_fits_at_the_budget_are_done_and_the_rest_are_counted_left(tmp_path: Path) -> None:
    save(tmp_path, "emoji", "full", 0, 24)
    save(tmp_path, "emoji", "joint", 0, 12)  # another budget: a plain run would refit it
    save(tmp_path, "emoji", "contrastive", 0, 24)
    save(tmp_path, "shapes", "full", 1, 24)
    (tmp_path / "shapes" / "joint_seed1.json").write_text("{not json")  # a damaged file is not a fit
    lines = script.progress_lines(tmp_path, ["emoji", "shapes"], [0, 1], ARMS, HEADS, 24)
    assert "| 0 | ✓ | 12 ep | ✓ |" in lines and "| 1 | – | – | – |" in lines
    assert "| 1 | ✓ | – | – |" in lines
    assert lines[-1].startswith("Arm fits left: 6 of 8 (emoji 3, shapes 3; at 24 epochs)")


def test_the_budget_comes_from_the_saved_manifest_and_the_cli_prints_the_tables(tmp_path: Path, capsys) -> None:
    save(tmp_path, "emoji", "joint", 2, 48)
    (tmp_path / script.MANIFEST).write_text(json.dumps({"epochs": 48}))
    script.main(["--progress", "--runs", str(tmp_path), "--datasets", "emoji", "--seeds", "2"])
    out = capsys.readouterr().out
    assert "| 2 | – | – | ✓ | – | – | – | – |" in out  # joint codebook is the third arm
    assert "Arm fits left: 4 of 5 (emoji 4; at 48 epochs)" in out
