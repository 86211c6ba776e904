"""Shifted evaluation: an entry fitted on one dataset and scored on another's eval split (``eval_dataset``)."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from PIL import Image, ImageDraw

from align.bench.execute.features import FeatureBank
from align.bench.plan.config import load_config
from align.bench.report.leaderboard import write_report
from align.bench.runner import run_benchmark
from align.data.base import Dataset, DatasetSplit, LabelSet
from align.errors import BadInputError
from align.features.cache import FeatureCache
from align.registry import DATASETS

COLOURS = {"red": (220, 20, 20), "green": (20, 200, 20), "blue": (20, 20, 220)}


class Shapes(Dataset):
    """The same colour classes in two styles: filled squares, or circles on white (the shifted style)."""

    version, splits = "1", ("train", "test")

    def __init__(self, style: str) -> None:
        self.style, self.name = style, f"test-shift-{style}"

    def load(self, split: str) -> DatasetSplit:
        names = list(COLOURS)
        labels = np.array([i % 3 for i in range(12 if split == "train" else 9)], dtype=np.int64)

        def image(i: int) -> Image.Image:
            colour = COLOURS[names[labels[i]]]
            if self.style == "squares":
                return Image.new("RGB", (32, 32), colour)
            picture = Image.new("RGB", (32, 32), "white")
            ImageDraw.Draw(picture).ellipse((4 + i % 3, 4, 27, 27), fill=colour)
            return picture

        return DatasetSplit(dataset=self.name, split=split, version=f"{self.style}-1", num_items=len(labels),
                            load_image=image, captions=[[f"a {names[c]} shape"] for c in labels],
                            labels=LabelSet(labels, names, ("a {c} shape.",)))


class OtherClasses(Shapes):
    """Circles whose label set names other classes: a probe fitted on squares cannot be scored here."""

    def load(self, split: str) -> DatasetSplit:
        data = Shapes("circles").load(split)
        labels = LabelSet(data.labels.labels, ["crimson", "lime", "navy"], data.labels.templates)
        return DatasetSplit(dataset=self.name, split=split, version="other-1", num_items=data.num_items,
                            load_image=data.load_image, captions=data.captions, labels=labels)


if "test-shift-other" not in DATASETS:
    DATASETS.add("test-shift-other", lambda: OtherClasses("other"))

for _style in ("squares", "circles"):
    if f"test-shift-{_style}" not in DATASETS:
        DATASETS.add(f"test-shift-{_style}", lambda s=_style: Shapes(s))

CONFIG = """
name: shift
image_encoders: [toy:cnn]
text_encoders: [toy:text]
aligners: [ridge]
datasets:
  - {name: test-shift-squares, fit: train, eval: test, tasks: [zeroshot_classification, zeroshot_retrieval]}
  - {name: test-shift-squares, fit: train, eval: test, eval_dataset: test-shift-circles,
     tasks: [zeroshot_classification, zeroshot_retrieval]}
"""


def write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "bench.yaml"
    path.write_text(text)
    return path


def test_shifted_entry_scores_the_other_dataset_and_is_marked_everywhere(tmp_path: Path) -> None:
    config = load_config(write(tmp_path, CONFIG))
    assert config.datasets[0].shift is None
    assert config.datasets[1].shift == {"fit": "test-shift-squares", "eval": "test-shift-circles"}
    bank = FeatureBank(FeatureCache(tmp_path / "features"), progress=False)
    results = tmp_path / "results"
    summary = run_benchmark(config, results, bank=bank, echo=lambda _: None)
    assert summary.written == 4
    folder = results / "toy__cnn+toy__text" / "ridge"
    plain = json.loads((folder / "test-shift-squares__zeroshot_retrieval__seed0.json").read_text())
    shifted = json.loads((folder / "test-shift-squares-to-test-shift-circles__zeroshot_retrieval__seed0.json").read_text())
    assert "shift" not in plain and "eval_dataset" not in plain["identity"]["parts"]["dataset"]
    assert shifted["shift"] == {"fit": "test-shift-squares", "eval": "test-shift-circles"}
    assert shifted["dataset"] == "test-shift-squares" and shifted["dataset_version"] == "circles-1"
    assert shifted["num_eval"] == 9 and shifted["num_fit_pairs"] == 12
    assert shifted["identity"]["parts"]["dataset"]["eval_dataset"]["name"] == "test-shift-circles"
    assert plain["metrics"] != shifted["metrics"]  # scored on other images (circles, not squares)

    table = write_report(results)
    assert "| test-shift-squares→test-shift-circles | zeroshot_retrieval |" in table
    assert "| test-shift-squares | zeroshot_retrieval |" in table
    assert "Shifted evaluation (fitted on the first dataset, scored on the second's eval split): " \
           "test-shift-squares→test-shift-circles." in table
    header, *rows = (results / "leaderboard.csv").read_text().splitlines()
    assert "eval_dataset" in header.split(",")
    assert sum(",test-shift-circles," in row for row in rows) == 2

    again = run_benchmark(config, results, bank=bank, echo=lambda _: None)  # identities are stable
    assert again.written == 0 and again.skipped == 4


@pytest.mark.parametrize(("change", "message"), [
    ("eval_dataset: test-shift-circles", "eval_dataset: 'test-shift-squares' is the same data"),
    ("eval_dataset: no-such-set", "datasets[1].eval_dataset: unknown datasets 'no-such-set'"),
])
def test_bad_eval_dataset_is_a_one_line_error(tmp_path: Path, change: str, message: str) -> None:
    text = CONFIG.replace("eval_dataset: test-shift-circles", change.replace("test-shift-circles",
                                                                             "test-shift-squares"))
    with pytest.raises(BadInputError) as info:
        load_config(write(tmp_path, text))
    assert message in str(info.value) and "\n" not in str(info.value)


def test_emoji_styles_are_one_asset_each_so_google_to_twitter_is_a_shift(tmp_path: Path) -> None:
    text = """
image_encoders: [toy:cnn]
text_encoders: [toy:text]
aligners: [ridge]
datasets:
  - {name: emoji, fit: anchors, eval: test, eval_dataset: emoji.twitter, tasks: [zeroshot_retrieval]}
"""
    assert load_config(write(tmp_path, text)).datasets[0].shift == {"fit": "emoji", "eval": "emoji.twitter"}
    with pytest.raises(BadInputError, match="'emoji.google' is the same data as 'emoji'"):
        load_config(write(tmp_path, text.replace("emoji.twitter", "emoji.google")))


def test_emoji_styles_config_fits_on_google_and_scores_every_style(monkeypatch) -> None:
    from align.bench.plan.collisions import check_collisions
    from align.bench.plan.units import aligner_plans

    root = Path(__file__).resolve().parents[2]
    monkeypatch.chdir(root)  # aligner entries name configs/aligners/*.yaml from the repository root
    config = load_config(root / "configs" / "bench" / "emoji_styles.yaml")
    assert [d.eval_dataset for d in config.datasets] == [None, "emoji.twitter", "emoji.apple", "emoji.facebook"]
    assert {(d.name, d.fit, d.eval) for d in config.datasets} == {("emoji", "anchors", "test")}
    plans, text_encoders = aligner_plans(config)
    check_collisions(config, plans, text_encoders, save_aligners=True)  # one shared fit, four result files


def _swept(test: float, shift: dict[str, str] | None) -> dict:
    sweep = {"grid": {"alpha": [1, 10]}, "select": {"task": "zeroshot_retrieval", "metric": "m"},
             "validation": {"fraction": 0.2}, "selected": {"alpha": 1}, "validation_score": 0.4,
             "points": [{"hparams": {"alpha": 1}, "score": 0.4}, {"hparams": {"alpha": 10}, "score": 0.2}]}
    return {"model": "ridge", "pretrained": "i+t", "dataset": "emoji", "label_set": None, "fit_split": "anchors",
            "seed": 0, "task": "zeroshot_retrieval", "metrics": {"m": test}, "sweep": sweep,
            **({"shift": shift} if shift else {})}


def test_sweep_report_counts_a_shifted_twin_once_and_marks_a_shifted_only_entry() -> None:
    from align.bench.report.sweeps import sweep_markdown

    shift = {"fit": "emoji", "eval": "emoji.twitter"}
    both = sweep_markdown([_swept(0.1, shift), _swept(0.5, None)])
    assert "| emoji | anchors | zeroshot_retrieval m | 0 | alpha=1 | 0.400 | 0.500 |" in both
    assert "emoji.twitter" not in both and "Across the 1 dataset entries" in both
    alone = sweep_markdown([_swept(0.1, shift)])
    assert "| emoji→emoji.twitter | anchors | zeroshot_retrieval m | 0 | alpha=1 | 0.400 | 0.100 |" in alone


def test_a_probe_cannot_be_scored_on_a_dataset_with_other_classes(tmp_path: Path) -> None:
    text = CONFIG.replace("test-shift-circles,\n     tasks: [zeroshot_classification, zeroshot_retrieval]",
                          "test-shift-other, tasks: [linear_probe]")
    config = load_config(write(tmp_path, text))
    bank = FeatureBank(FeatureCache(tmp_path / "features"), progress=False)
    with pytest.raises(BadInputError, match="different class lists"):
        run_benchmark(config, tmp_path / "results", bank=bank, echo=lambda _: None)
