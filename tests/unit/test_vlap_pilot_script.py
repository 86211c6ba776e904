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
    with pytest.raises(SystemExit, match="key=value"):
        script.hparams(emoji, "full-lambda1@lr", 0, 1)


@pytest.mark.parametrize("values, higher, expected", [
    ([0.1, 0.3, 0.2, 0.25], True, (2, 0.3, 2)),   # best at epoch 2, two epochs since
    ([5.0, 4.0, 3.0], False, (3, 3.0, 0)),        # still improving at the last epoch
    ([0.2, 0.2, 0.1], True, (1, 0.2, 2)),         # a tie keeps the earlier epoch
])
def test_plateau_finds_the_best_epoch_and_the_epochs_since(values: list[float], higher: bool,
                                                          expected: tuple[int, float, int]) -> None:
    assert script.plateau(values, higher) == expected


def test_the_report_reads_every_history_and_marks_fits_under_way(tmp_path: Path) -> None:
    config = script.load_config(CONFIGS / "vlap_pilot.yaml") | {"histories": tmp_path}
    hp = script.hparams(config, "caption-only", 0, 3)
    history = {"train_loss": [3.0, 2.0, 1.5], "val_cap_nll": [6.0, 5.0, 5.5], "val_lm_r1": [0.1, 0.2, 0.3],
               "val_r1": [0.05, 0.04, 0.03]}
    script.write_history(config, "caption-only", 0, hp, history, partial=False, seconds=12.0, pairs=955)
    script.write_history(config, "full-lambda1", 0, hp, {k: v[:2] for k, v in history.items()}, partial=True)
    out = tmp_path / "report.md"
    script.report(config, out, None)
    rows = [line for line in out.read_text().splitlines() if line.startswith("| caption-only") or
            line.startswith("| full-lambda1")]
    assert len(rows) == 2
    done, partial = rows
    assert "| done |" in done and "0.300 @ 3 | 0 |" in done and "5.000 @ 2 | 1 |" in done
    assert "| under way |" in partial and "| 2 |" in partial
