"""Sweeps: the selection rule, config validation, a selection computed by hand, and a test split never read
while selecting."""

from __future__ import annotations

import json
import math
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch
from PIL import Image

from align.bench.plan.config import load_config
from align.bench.execute.features import FeatureBank
from align.bench.runner import run_benchmark
from align.bench.report.leaderboard import write_report
from align.bench.plan.sweeps import REFIT_RULE, SweepSpec, best_index, consensus, select
from align.data.base import Dataset, DatasetSplit, LabelSet
from align.errors import BadInputError
from align.features.cache import FeatureCache
from align.methods.base import Aligner
from align.registry import ALIGNERS, DATASETS

COLOURS = {"red": (220, 20, 20), "green": (20, 200, 20), "blue": (20, 20, 220), "yellow": (230, 230, 20)}
CLASS_SIZES = {"train": [2, 4, 6, 8], "test": [5, 5, 5, 5]}
LOG: list[tuple[str, ...]] = []  # what the watched dataset, the logging bank and the runner's echo saw, in order


class Watched(Dataset):
    """Colour squares (classes of unequal size in ``train``) that log every split load and image read."""

    name, version, splits = "test-watched", "1", ("train", "test")

    def build_split(self, split: str) -> DatasetSplit:
        LOG.append(("load", split))
        names = list(COLOURS)
        labels = np.repeat(np.arange(4), CLASS_SIZES[split])[np.random.default_rng(3).permutation(20)]

        def image(i: int) -> Image.Image:
            LOG.append(("image", split, str(i)))
            return Image.new("RGB", (16, 16), COLOURS[names[labels[i]]])

        return DatasetSplit(
            dataset=self.name, split=split, version=self.version, num_items=20, load_image=image,
            captions=[[f"a {names[c]} square"] for c in labels], labels=LabelSet(labels, names, ("a {c} square.",)),
            item_ids=[f"{split}-{i}" for i in range(20)],
        )


class WrongOnOne(Aligner):
    """Maps one-hot class features to themselves, except class ``wrong``, sent to class ``wrong + 1``: its
    zero-shot accuracy is 1 minus the share of class ``wrong`` in the scored items. ``pad`` does nothing."""

    name = "test-wrong-on-one"
    fits: list[int] = []

    def __init__(self, wrong: int = 0, pad: int = 1) -> None:
        super().__init__(wrong=wrong, pad=pad)

    def fit(self, image_features: torch.Tensor, text_features: torch.Tensor) -> WrongOnOne:
        WrongOnOne.fits.append(int(image_features.shape[0]))
        self.image_dim, self.text_dim = image_features.shape[1], text_features.shape[1]
        return self

    def encode_image(self, image_features: torch.Tensor) -> torch.Tensor:
        wrong = self.hparams["wrong"]
        out = image_features.clone()
        out[:, (wrong + 1) % out.shape[1]] += out[:, wrong]
        out[:, wrong] = 0
        return out

    def encode_text(self, text_features: torch.Tensor) -> torch.Tensor:
        return text_features


if "test-watched" not in DATASETS:
    DATASETS.add("test-watched", Watched)
if WrongOnOne.name not in ALIGNERS:
    ALIGNERS.add(WrongOnOne.name, WrongOnOne)


class OneHotBank(FeatureBank):
    """Hand-made features: an image is the one-hot of its class, a text the one-hot of the colour it names."""

    def images(self, encoder: str, split: DatasetSplit) -> torch.Tensor:
        LOG.append(("images", split.split))
        return torch.nn.functional.one_hot(torch.as_tensor(split.labels.labels), 4).float()

    def texts(self, encoder: str, texts: Sequence[str], split: DatasetSplit, what: str) -> torch.Tensor:
        LOG.append(("texts", split.split, what))
        return torch.stack([torch.tensor([float(c in t.split() or f"{c}." in t.split()) for c in COLOURS])
                            for t in texts])


class LoggingBank(FeatureBank):
    """The real, cached feature bank, logging which split it is asked for."""

    def images(self, encoder: str, split: DatasetSplit) -> torch.Tensor:
        LOG.append(("images", split.split))
        return super().images(encoder, split)

    def texts(self, encoder: str, texts: Sequence[str], split: DatasetSplit, what: str) -> torch.Tensor:
        LOG.append(("texts", split.split, what))
        return super().texts(encoder, texts, split, what)


HAND_CONFIG = """
image_encoders: [toy:cnn]
text_encoders: [toy:text]
aligners:
  - name: test-wrong-on-one
    label: swept
    sweep:
      grid: {wrong: [3, 2, 1], pad: [2, 1]}
      select: {task: zeroshot_classification, metric: acc1}
      validation: 0.25
datasets:
  - {name: test-watched, fit: train, eval: test, tasks: [zeroshot_classification]}
"""


def write(tmp_path: Path, text: str, name: str = "bench.yaml") -> Path:
    path = tmp_path / name
    path.write_text(text)
    return path


def results(root: Path) -> list[dict[str, Any]]:
    return [json.loads(p.read_text()) for p in sorted(root.rglob("*.json"))]


# ------------------------------------------------------------------ the selection rule


def test_best_index_takes_the_first_of_ties_and_never_nan() -> None:
    assert best_index([0.2, 0.5, 0.5, 0.1]) == 1
    assert best_index([math.nan, 0.1, math.nan]) == 1
    with pytest.raises(BadInputError, match="every grid point scored NaN"):
        best_index([math.nan, math.nan])


def test_points_follow_grid_order_first_name_slowest() -> None:
    sweep = SweepSpec((("k", (10, 50)), ("p", (1, 8))))
    assert sweep.points() == [{"k": 10, "p": 1}, {"k": 10, "p": 8}, {"k": 50, "p": 1}, {"k": 50, "p": 8}]


def test_select_scores_every_point_with_the_callables() -> None:
    fitted: list[dict[str, Any]] = []
    selection = select([{"a": 1}, {"a": 3}, {"a": 2}], lambda p: fitted.append(p) or p["a"],
                       lambda model: {"acc1": -abs(model - 2.5), "acc5": 1.0}, "acc1")
    assert fitted == [{"a": 1}, {"a": 3}, {"a": 2}]
    assert selection.scores == [-1.5, -0.5, -0.5] and selection.selected == {"a": 3} and selection.score == -0.5
    with pytest.raises(BadInputError, match="metric 'recall' not reported"):
        select([{"a": 1}], lambda p: p, lambda m: {"acc1": 1.0}, "recall")


def test_consensus_by_hand() -> None:
    """Relative scores: run 1 [0.5, 1.0], run 2 [1.0, 0.8/0.9]; means [0.75, 0.944]: point 1, whose worst
    relative score 0.889 is not within 5% of run 2's best but is within 20%."""
    index, means, worst, supported = consensus([[0.5, 1.0], [0.9, 0.8]])
    assert index == 1 and means == pytest.approx([0.75, (1 + 0.8 / 0.9) / 2]) and worst == pytest.approx([0.5, 0.8 / 0.9])
    assert not supported and consensus([[0.5, 1.0], [0.9, 0.8]], tolerance=0.2)[3]
    assert consensus([[1.0, 1.0], [2.0, 2.0]])[0] == 0  # ties: first in grid order


# ------------------------------------------------------------------ a selection computed by hand


def test_selection_matches_a_hand_computation_and_refits_on_the_whole_fit_split(tmp_path: Path) -> None:
    """Train classes have 2, 4, 6 and 8 items; a 0.25 validation part holds 5, stratified [1, 1, 1, 2]
    (largest remainder, see test_validation_split). ``wrong=w`` misclassifies exactly class w, so the
    validation acc1 is 1 - n_w / 5: w=3 -> 0.6, w=2 -> 0.8, w=1 -> 0.8, whatever ``pad``. Grid order is
    (3,2), (3,1), (2,2), (2,1), (1,2), (1,1): the first best is wrong=2, pad=2. Refitted on all 20
    train items, it misclassifies class 2 of the balanced test split: acc1 = 15 / 20."""
    LOG.clear()
    WrongOnOne.fits.clear()
    config = load_config(write(tmp_path, HAND_CONFIG))
    summary = run_benchmark(config, tmp_path / "results", bank=OneHotBank(FeatureCache(tmp_path / "f"), progress=False),
                            echo=lambda _: None)
    (record,) = results(tmp_path / "results")
    sweep = record["sweep"]
    assert summary.written == 1
    assert [p["score"] for p in sweep["points"]] == pytest.approx([0.6, 0.6, 0.8, 0.8, 0.8, 0.8])
    assert [p["hparams"] for p in sweep["points"]][:2] == [{"wrong": 3, "pad": 2}, {"wrong": 3, "pad": 1}]
    assert sweep["selected"] == {"wrong": 2, "pad": 2} and sweep["validation_score"] == pytest.approx(0.8)
    assert sweep["grid"] == {"wrong": [3, 2, 1], "pad": [2, 1]} and sweep["refit"] == REFIT_RULE
    assert sweep["select"] == {"task": "zeroshot_classification", "metric": "acc1"}
    assert sweep["validation"]["num_fit"] == 15 and sweep["validation"]["num_validation"] == 5
    assert record["hparams"] == {"wrong": 2, "pad": 2}
    assert record["metrics"]["acc1"] == pytest.approx(0.75)
    assert WrongOnOne.fits == [15] * 6 + [20]  # six grid points on the fit part, then the refit on all of train


def test_report_lists_every_sweep_and_the_consensus(tmp_path: Path) -> None:
    config = load_config(write(tmp_path, HAND_CONFIG.replace("image_encoders", "seeds: [0, 1]\nimage_encoders")))
    run_benchmark(config, tmp_path / "results", bank=OneHotBank(FeatureCache(tmp_path / "f"), progress=False),
                  echo=lambda _: None)
    write_report(tmp_path / "results")
    text = (tmp_path / "results" / "sweeps.md").read_text()
    assert "#### swept (toy:cnn+toy:text)" in text and "wrong in [3, 2, 1]; pad in [2, 1]" in text
    assert text.count("| test-watched | train | zeroshot_classification acc1 |") == 2
    assert "| **wrong=2, pad=2** |" in text and "0.750 |" in text


def test_a_dataset_entry_default_selector(tmp_path: Path) -> None:
    """Without ``select`` in the sweep, the entry's ``select`` is used; without both, its first task's acc1."""
    text = HAND_CONFIG.replace("      select: {task: zeroshot_classification, metric: acc1}\n", "")
    entry = text.replace("tasks: [zeroshot_classification]}", "tasks: [zeroshot_retrieval, zeroshot_classification],\n"
                         "     select: {task: zeroshot_classification, metric: mean_per_class_recall}}")
    bank = OneHotBank(FeatureCache(tmp_path / "f"), progress=False)
    run_benchmark(load_config(write(tmp_path, entry)), tmp_path / "r", bank=bank, echo=lambda _: None)
    assert results(tmp_path / "r")[0]["sweep"]["select"]["metric"] == "mean_per_class_recall"
    run_benchmark(load_config(write(tmp_path, text)), tmp_path / "r2", bank=bank, echo=lambda _: None)
    assert results(tmp_path / "r2")[0]["sweep"]["select"] == {"task": "zeroshot_classification", "metric": "acc1"}


# ------------------------------------------------------------------ the test split is never read while selecting


WATCHED_CONFIG = """
image_encoders: [toy:cnn]
text_encoders: [toy:text]
aligners:
  - ridge
  - {name: ridge, label: ridge-swept, sweep: {grid: {alpha: [0.1, 10.0]}, validation: 0.25}}
  - {name: asif, label: asif-swept, sweep: {grid: {k: [2, 5], p: [1, 4]}, validation: 0.25}}
datasets:
  - {name: test-watched, fit: train, eval: test, tasks: [zeroshot_retrieval, linear_probe],
     select: {task: zeroshot_retrieval, metric: text_retrieval_recall@1}}
  - {name: test-watched, fit: train, eval: test, tasks: [zeroshot_classification]}
"""


def touches_test(event: tuple[str, ...]) -> bool:
    return event[0] in ("load", "images", "texts", "image") and event[1] == "test"


def test_a_sweep_never_touches_the_test_split(tmp_path: Path) -> None:
    """Every selection (its fits, its validation scoring, its echo) of each dataset entry happens before the
    entry's test split is loaded, encoded or has a text embedded; the selection itself sees only fit rows."""
    LOG.clear()
    config = load_config(write(tmp_path, WATCHED_CONFIG))
    bank = LoggingBank(FeatureCache(tmp_path / "features"), progress=False)
    run_benchmark(config, tmp_path / "results", bank=bank, echo=lambda line: LOG.append(("echo", line)))
    sweeps = [i for i, event in enumerate(LOG) if event[0] == "echo" and " sweep " in event[1]]
    test_events = [i for i, event in enumerate(LOG) if touches_test(event)]
    assert len(sweeps) == 2 + 2  # ridge-swept and asif-swept, on each of the two entries
    assert test_events, "the test split was never read: the check below would be empty"
    loads = [i for i, event in enumerate(LOG) if event == ("load", "test")]
    for entry_sweeps, load in zip((sweeps[:2], sweeps[2:]), loads):
        assert max(entry_sweeps) < load  # every selection of the entry ended before its test split was loaded
    first_test = min(test_events)
    assert all(i > max(sweeps[:2]) for i in test_events) and LOG[first_test] == ("load", "test")
    selection_texts = {e[1] for e in LOG[:first_test] if e[0] == "texts"}
    assert any("~val" in s for s in selection_texts) and not any(s.startswith("test") for s in selection_texts)
    records = results(tmp_path / "results")
    assert {r["model"] for r in records} == {"ridge", "ridge-swept", "asif-swept"}
    assert all((r["sweep"] is None) == (r["model"] == "ridge") for r in records)


def test_sweep_features_are_rows_of_the_cached_fit_features(tmp_path: Path) -> None:
    """A sweep adds no image-feature cache entry: its parts are rows of the fit split's cached features."""
    bank = FeatureBank(FeatureCache(tmp_path / "features"), progress=False)
    plain = WATCHED_CONFIG.split("  - {name: ridge, label: ridge-swept")[0] + "datasets:" + \
        WATCHED_CONFIG.split("datasets:")[1]
    run_benchmark(load_config(write(tmp_path, plain, "plain.yaml")), tmp_path / "r1", bank=bank, echo=lambda _: None)
    before = sorted(p.relative_to(tmp_path) for p in (tmp_path / "features").rglob("image-*"))
    run_benchmark(load_config(write(tmp_path, WATCHED_CONFIG)), tmp_path / "r2", bank=bank, echo=lambda _: None)
    assert sorted(p.relative_to(tmp_path) for p in (tmp_path / "features").rglob("image-*")) == before
    assert len(before) == 2  # train and test under toy:cnn


def test_swept_results_are_skipped_on_a_second_run(tmp_path: Path) -> None:
    config = load_config(write(tmp_path, HAND_CONFIG))
    bank = OneHotBank(FeatureCache(tmp_path / "f"), progress=False)
    run_benchmark(config, tmp_path / "results", bank=bank, echo=lambda _: None)
    LOG.clear()
    again = run_benchmark(config, tmp_path / "results", bank=bank, echo=lambda line: LOG.append(("echo", line)))
    assert again.written == 0 and again.skipped == 1
    assert not any(touches_test(e) for e in LOG) and not any(e[0] == "echo" for e in LOG)


# ------------------------------------------------------------------ config validation


@pytest.mark.parametrize("old,new,message", [
    ("grid: {wrong: [3, 2, 1], pad: [2, 1]}", "grid: {wrong: [3, 2, 1], colour: [1]}",
     r"sweep.grid.colour: test-wrong-on-one has no hyper-parameter 'colour'"),
    ("pad: [2, 1]", "pad: []", r"sweep.grid.pad: expected a non-empty list"),
    ("pad: [2, 1]", "pad: 2", r"sweep.grid.pad: expected a non-empty list"),
    ("pad: [2, 1]", "pad: [2, 2]", r"sweep.grid.pad: repeats a value"),
    ("grid: {wrong: [3, 2, 1], pad: [2, 1]}", "grid: {}", r"sweep.grid: expected a non-empty mapping"),
    ("validation: 0.25", "validation: 1.0", r"sweep.validation: expected a fraction strictly between 0 and 1"),
    ("validation: 0.25", "validation: 0", r"sweep.validation: expected a fraction strictly between 0 and 1"),
    ("validation: 0.25", "validation: -0.2", r"sweep.validation: expected a fraction"),
    ("metric: acc1", "metric: acc2", r"sweep.select.metric: zeroshot_classification reports no metric 'acc2'"),
    ("task: zeroshot_classification,", "task: zeroshot_clasification,", r"sweep.select.task: unknown task"),
    ("metric: acc1}", "metric: acc1, mode: max}", r"sweep.select: expected a mapping with exactly 'task' and 'metric'"),
    ("validation: 0.25", "validation: 0.25\n      seeds: 3", r"sweep: unknown key 'seeds'"),
    ("select: {task: zeroshot_classification, metric: acc1}",
     "select: {task: zeroshot_retrieval, metric: text_retrieval_recall@1}",
     r"aligners\[0\].sweep.select: zeroshot_retrieval text_retrieval_recall@1 is not scored by datasets\[0\]"),
])
def test_bad_sweeps_are_one_line_errors_at_config_time(tmp_path: Path, old: str, new: str, message: str) -> None:
    assert old in HAND_CONFIG
    path = write(tmp_path, HAND_CONFIG.replace(old, new))
    with pytest.raises(BadInputError, match=message) as info:
        load_config(path)
    assert str(path) in str(info.value) and "\n" not in str(info.value)


@pytest.mark.parametrize("entry,message", [
    ("{name: asif, sweep: {grid: {k: [0, 5]}}}", r"aligners\[0\].sweep.grid: asif\(k=0\): asif: k must be an integer in \[1, "),
    ("{name: nope, sweep: {grid: {k: [1]}}}", r"aligners\[0\].name: unknown aligners 'nope'"),
    ("{name: ridge, sweep: {grid: {alpha: [1.0]}, select: {task: zeroshot_retrieval, metric: text_retrieval_recall@3}}}",
     r"text_retrieval_recall@3 is not scored by datasets\[0\]"),
])
def test_bad_grid_values_and_selectors(tmp_path: Path, entry: str, message: str) -> None:
    text = f"""
image_encoders: [toy:cnn]
text_encoders: [toy:text]
aligners: [{entry}]
datasets:
  - {{name: test-watched, fit: train, eval: test, tasks: [zeroshot_retrieval]}}
"""
    with pytest.raises(BadInputError, match=message) as info:
        load_config(write(tmp_path, text))
    assert "\n" not in str(info.value)


class ImagesOnly(WrongOnOne):
    """An aligner with no text side (as LQAE): it cannot be selected on a zero-shot task."""

    name = "test-images-only"
    text_input = "none"


if ImagesOnly.name not in ALIGNERS:
    ALIGNERS.add(ImagesOnly.name, ImagesOnly)


def test_a_sweep_on_a_task_its_aligner_cannot_do_fails_before_any_work(tmp_path: Path) -> None:
    config = load_config(write(tmp_path, HAND_CONFIG.replace("test-wrong-on-one", ImagesOnly.name)))
    LOG.clear()
    with pytest.raises(BadInputError, match=r"aligners\[0\].sweep: cannot select on datasets\[0\]: .*no text side"):
        run_benchmark(config, tmp_path / "results", bank=OneHotBank(FeatureCache(tmp_path / "f"), progress=False),
                      echo=lambda _: None)
    assert LOG == []  # no split was loaded


def test_dataset_entry_selector_is_checked(tmp_path: Path) -> None:
    text = HAND_CONFIG.replace("tasks: [zeroshot_classification]}",
                               "tasks: [zeroshot_classification], select: {task: fewshot, metric: acc1}}")
    with pytest.raises(BadInputError, match=r"datasets\[0\].select.task: 'fewshot' is not among this entry's tasks"):
        load_config(write(tmp_path, text))


def test_shipped_sweep_config_is_valid() -> None:
    root = Path(__file__).resolve().parents[2]
    config = load_config(root / "configs" / "bench" / "sweeps.yaml")
    default = load_config(root / "configs" / "bench" / "default.yaml")
    assert [(d.name, d.fit, d.eval, d.tasks, d.label_set) for d in config.datasets] == \
        [(d.name, d.fit, d.eval, d.tasks, d.label_set) for d in default.datasets]
    assert {a.name for a in config.aligners if a.sweep} == {"asif", "contrastive"}
