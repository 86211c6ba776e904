"""benchmarks/vlap_pilot.py's bookkeeping (no model is fitted): a config read over its base, where a
curve's best epoch lies, and the report from histories written by hand as the script writes them."""

from __future__ import annotations

from pathlib import Path

import pytest

from bench_scripts import load_benchmark

script = load_benchmark("vlap_pilot")
CONFIGS = Path(__file__).resolve().parents[2] / "configs" / "studies"


def test_the_shapes_config_takes_its_variants_from_the_emoji_one() -> None:
    emoji = script.load_config(CONFIGS / "vlap_pilot.yaml")
    shapes = script.load_config(CONFIGS / "vlap_pilot_shapes.yaml")
    assert shapes["variants"] == emoji["variants"] and shapes["common"] == emoji["common"]
    assert (shapes["dataset"], emoji["dataset"]) == ("shapes.single", "emoji")
    assert shapes["histories"] != emoji["histories"] and shapes["checkpoints"] != emoji["checkpoints"]
    hp = script.hparams(emoji, "caption-only", 2, 9)
    assert (hp["w_map"], hp["seed"], hp["max_epochs"], hp["val_lm_items"]) == (0.0, 2, 9, 32)
    with pytest.raises(SystemExit, match="no variant 'nope'"):
        script.hparams(emoji, "nope", 0, 1)
    point = script.hparams(emoji, "full-lambda1@lr=0.03,prior=uniform", 1, 5)
    assert (point["lr"], point["prior"], point["w_map"]) == (0.03, "uniform", 1.0)
    assert point["checkpoint_dir"].endswith("full-lambda1@lr=0.03,prior=uniform-seed1")
    assert script.hparams(emoji, "full-lambda1@lr=3e-4", 1, 5)["lr"] == 3e-4  # a number, not YAML 1.1's string
    with pytest.raises(SystemExit, match="key=value"):
        script.hparams(emoji, "full-lambda1@lr", 0, 1)


@pytest.mark.parametrize("values, higher, expected", [
    ([0.1, 0.3, 0.2, 0.25], True, (2, 0.3, 2)),   # best at epoch 2, two epochs since
    ([5.0, 4.0, 3.0], False, (3, 3.0, 0)),        # still improving at the last epoch
    ([0.2, 0.2, 0.1], True, (1, 0.2, 2)),         # a tie keeps the earlier epoch
])
def test_plateau_finds_the_best_epoch_and_the_epochs_since(values: list[float], higher: bool,
                                                          expected: tuple[int, float, int]) -> None:
    assert script._pilot.plateau(values, higher) == expected


def test_the_report_reads_every_history_and_marks_fits_under_way(tmp_path: Path) -> None:
    config = script.load_config(CONFIGS / "vlap_pilot.yaml") | {"histories": tmp_path}
    hp = script.hparams(config, "caption-only", 0, 3)
    history = {"train_loss": [3.0, 2.0, 1.5], "val_cap_nll": [6.0, 5.0, 5.5], "val_lm_r1": [0.1, 0.2, 0.3],
               "val_r1": [0.05, 0.04, 0.03], "val_lm_mrr": [0.7, 0.6]}  # mrr logged from epoch 2 (a resumed fit)
    script.write_history(config, "caption-only", 0, hp, history, partial=False, seconds=12.0, pairs=955)
    script.write_history(config, "full-lambda1", 0, hp, {k: v[:2] for k, v in history.items()}, partial=True)
    out = tmp_path / "report.md"
    script.report(config, out, None)
    rows = [line for line in out.read_text().splitlines() if line.startswith("| caption-only") or
            line.startswith("| full-lambda1")]
    assert len(rows) == 2
    done, partial = rows
    assert "| done |" in done and "0.300 @ 3 | 0 |" in done and "5.000 @ 2 | 1 |" in done
    assert "0.700 @ 2 | 1 |" in done  # the best reciprocal rank was epoch 2's, its first logged
    assert "| under way |" in partial and "| 2 |" in partial


def test_the_choice_on_validation_takes_the_best_point_and_flags_a_grid_edge(tmp_path: Path) -> None:
    config = script.load_config(CONFIGS / "vlap_pilot.yaml") | {"histories": tmp_path}
    # full-lambda1 at three rates: 0.01 wins on the last three epochs' mean (the last epoch alone would pick 0.001)
    curves = {"0.001": [0.1, 0.1, 0.1, 0.5], "0.003": [0.2, 0.3, 0.3, 0.3], "0.01": [0.4, 0.4, 0.4, 0.2]}
    for lr, r1 in curves.items():
        variant = f"full-lambda1@lr={lr}"
        hp = script.hparams(config, variant, 0, 4)
        script.write_history(config, variant, 0, hp, {"train_loss": [1.0] * 4, "val_lm_r1": r1,
                                                      "val_cap_nll": [5.0] * 4}, partial=False, seconds=1.0)
    for lr, r1 in (("0.001", 0.1), ("0.003", 0.3), ("0.01", 0.2)):  # full-lambda10: the middle rate, no edge
        variant = f"full-lambda10@lr={lr}"
        script.write_history(config, variant, 0, script.hparams(config, variant, 0, 2),
                             {"train_loss": [1.0] * 2, "val_lm_r1": [r1] * 2, "val_cap_nll": [5.0] * 2},
                             partial=False, seconds=1.0)
    # caption-only at two rates, one scored once on more pairs: that score decides
    for lr, r1, final in (("0.003", [0.5, 0.5, 0.5], None), ("0.03", [0.1, 0.1, 0.1], 0.6)):
        variant = f"caption-only@lr={lr}"
        script.write_history(config, variant, 0, script.hparams(config, variant, 0, 3),
                             {"train_loss": [1.0] * 3, "val_lm_r1": r1, "val_cap_nll": [5.0] * 3}, partial=False,
                             seconds=1.0, final=None if final is None else
                             {"items": 96, "val_lm_r1": final, "val_lm_image_r1": 0.5, "val_cap_nll": 4.0})
    import json

    runs = [json.loads(p.read_text()) for p in sorted(tmp_path.glob("*.json"))]
    rows = {row[0]: row for row in script._pilot.selection_rows(runs, script.selection_score)}
    assert rows["full-lambda1"][2] == "full-lambda1@lr=0.01" and rows["full-lambda1"][5] == "lr"
    assert rows["caption-only"][2] == "caption-only@lr=0.03" and rows["caption-only"][3] == "0.600"
    assert rows["full-lambda10"][2] == "full-lambda10@lr=0.003" and rows["full-lambda10"][5] == "no"


def test_a_report_without_runs_says_so_and_a_relative_config_path_works(tmp_path: Path,
                                                                        monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(CONFIGS.parents[1])
    config = script.load_config(Path("configs/studies/vlap_pilot_shapes.yaml")) | {"histories": tmp_path}
    out = tmp_path / "report.md"
    script.report(config, out, None)
    assert "No pilot of this config has run yet." in out.read_text()
    assert "`configs/studies/vlap_pilot_shapes.yaml`" in out.read_text()


def test_extending_a_fit_keeps_the_checks_made_at_an_earlier_epoch(tmp_path: Path) -> None:
    """A fit extended by more epochs rewrites its history; the caption and likelihood checks taken at an
    earlier epoch stay in it (each says its epoch), instead of being dropped."""
    config = script.load_config(CONFIGS / "vlap_pilot.yaml") | {"histories": tmp_path}
    hp = script.hparams(config, "caption-only", 0, 2)
    captions = {"epochs": 2, "model": {"CIDEr": 0.4}, "most frequent training caption": {"CIDEr": 0.04}}
    script.write_history(config, "caption-only", 0, hp, {"train_loss": [2.0, 1.0]}, partial=False, seconds=1.0,
                         captions=captions)
    assert script._pilot.earlier_checks(config, "caption-only", 0) == {"captions": captions, "final": None}
    assert script._pilot.earlier_checks(config, "full-lambda1", 0) == {"captions": None, "final": None}
