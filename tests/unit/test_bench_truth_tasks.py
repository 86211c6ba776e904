"""The benchmark's ground-truth tasks (visual arithmetic, attribute questions): a config asking them of a
dataset without such ground truth is a one-line error, an aligner without a text side gets "–", the
ground truth follows a subsample's items (and a sweep's validation part of one), sweeps may select on
their metrics, and a small run on ``shapes`` scores both with intervals."""

from __future__ import annotations

import json
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest
from item_checks import assert_items_give_every_metric
from PIL import Image

from align.bench.execute.features import FeatureBank
from align.bench.execute.truth import arithmetic_swaps, split_questions
from align.bench.plan.config import DatasetSpec, load_config
from align.bench.plan.tasks import not_applicable
from align.bench.report.leaderboard import write_report
from align.bench.runner import run_benchmark
from align.data.base import Dataset, DatasetSplit
from align.data.shapes_truth import questions, swaps
from align.data.validation import carve_validation
from align.errors import BadInputError
from align.features.cache import FeatureCache
from align.registry import DATASETS

SMALL = {"train_size": 300}


class Captioned(Dataset):
    """Captioned grey squares with no ground truth beyond their captions."""

    name, version, splits = "test-truthless", "1", ("train", "test")

    def build_split(self, split: str) -> DatasetSplit:
        return DatasetSplit(dataset=self.name, split=split, version=self.version, num_items=4,
                            load_image=lambda i: Image.new("RGB", (8, 8), (60 * i,) * 3),
                            captions=[[f"square {i}"] for i in range(4)])


if "test-truthless" not in DATASETS:
    DATASETS.add("test-truthless", Captioned)


def config(tmp_path: Path, datasets: str) -> Path:
    path = tmp_path / "bench.yaml"
    path.write_text(f"name: truth\nseeds: [0]\nimage_encoders: [toy:cnn]\ntext_encoders: [toy:text]\n"
                    f"aligners: [procrustes]\ndatasets:\n{datasets}")
    return path


@pytest.mark.parametrize("task,what", [("visual_arithmetic", "visual arithmetic ground truth"),
                                       ("attribute_questions", "attribute questions")])
def test_a_dataset_without_the_ground_truth_is_refused_in_one_line(tmp_path: Path, task: str, what: str) -> None:
    path = config(tmp_path, f"  - {{name: test-truthless, fit: train, eval: test, tasks: [zeroshot_retrieval, {task}]}}\n")
    with pytest.raises(BadInputError) as info:
        load_config(path)
    message = str(info.value)
    assert "\n" not in message and "datasets[0].tasks" in message
    assert f"dataset 'test-truthless' has no {what}" in message and f"task {task!r}" in message


def test_a_shifted_entry_is_checked_on_its_eval_dataset(tmp_path: Path) -> None:
    path = config(tmp_path, "  - {name: test-truthless, fit: train, eval: test, eval_dataset: shapes,\n"
                            "     tasks: [visual_arithmetic]}\n")
    assert load_config(path).datasets[0].tasks == ("visual_arithmetic",)
    path = config(tmp_path, "  - {name: shapes, fit: train, eval: test, eval_dataset: test-truthless,\n"
                            "     tasks: [visual_arithmetic]}\n")
    with pytest.raises(BadInputError, match="dataset 'test-truthless' has no visual arithmetic"):
        load_config(path)


@pytest.mark.parametrize("task", ["visual_arithmetic", "attribute_questions"])
def test_an_aligner_without_a_text_side_cannot_do_them(task: str) -> None:
    assert "no text side" in not_applicable(task, SimpleNamespace(name="lqae", text_input="none"))
    assert not_applicable(task, SimpleNamespace(name="ridge", text_input="features")) is None


def test_ground_truth_follows_a_subsample_to_its_items() -> None:
    dataset = DATASETS.create("shapes", **SMALL)
    split = dataset.load("test@60")
    full = dataset.load("test")
    rows = [list(full.item_ids).index(i) for i in split.item_ids]
    scenes = [dataset.scenes("test")[r] for r in rows]
    spec = DatasetSpec("shapes", "train@100", "test@60", ("visual_arithmetic",), options=dict(SMALL))
    got = sorted(arithmetic_swaps(spec, split))
    assert got and got == sorted((s.source, s.target, s.attribute, s.old, s.new) for s in swaps(scenes, scenes))
    asked = split_questions(spec, split)
    expected = questions(scenes)
    assert asked.images == [q.item for q in expected] and asked.questions == [q.question for q in expected]
    assert asked.answers == [q.answer for q in expected]
    assert set(asked.candidates["colour"]) >= {q.answer for q in expected if q.attribute == "colour"}


def test_ground_truth_follows_a_validation_part_of_a_subsample() -> None:
    dataset = DATASETS.create("shapes", **SMALL)
    part = carve_validation(dataset.load("train@200"), 0.5, seed=0).validation_split  # what a sweep scores on
    assert "~" in part.split and "+" in part.version
    full_ids = list(dataset.load("train").item_ids)
    scenes = [dataset.scenes("train")[full_ids.index(i)] for i in part.item_ids]
    spec = DatasetSpec("shapes", "train@200", "test@60", ("visual_arithmetic",), options=dict(SMALL))
    got = sorted(arithmetic_swaps(spec, part))
    assert got and got == sorted((s.source, s.target, s.attribute, s.old, s.new) for s in swaps(scenes, scenes))


def test_sweeps_can_select_on_the_new_tasks_metrics(tmp_path: Path) -> None:
    entry = ("  - {name: shapes, fit: train@100, eval: test@80, tasks: [visual_arithmetic, attribute_questions],\n"
             "     select: {task: visual_arithmetic, metric: METRIC}}\n")
    assert load_config(config(tmp_path, entry.replace("METRIC", "recall@5"))).datasets[0].select.metric == "recall@5"
    with pytest.raises(BadInputError, match="visual_arithmetic reports no metric 'acc1'"):
        load_config(config(tmp_path, entry.replace("METRIC", "acc1")))


def test_ground_truth_of_a_dataset_built_otherwise_is_refused() -> None:
    split = DATASETS.create("shapes", seed=1, **SMALL).load("test@60")
    spec = DatasetSpec("shapes", "train@100", "test@60", ("visual_arithmetic",), options=dict(SMALL))  # seed 0
    with pytest.raises(BadInputError, match="not the eval split's"):
        arithmetic_swaps(spec, split)


def test_a_small_run_on_shapes_scores_both_tasks_with_items(tmp_path: Path) -> None:
    path = config(tmp_path, "  - {name: shapes, fit: train@100, eval: test@80, options: {train_size: 300},\n"
                            "     tasks: [visual_arithmetic, attribute_questions]}\n")
    results = tmp_path / "results"
    bank = FeatureBank(FeatureCache(tmp_path / "features"), progress=False)
    summary = run_benchmark(load_config(path), results, bank=bank, echo=lambda _: None)
    assert summary.written == 2
    records = {r["task"]: r for r in (json.loads(p.read_text()) for p in results.rglob("*__seed0.json"))}
    arithmetic, asked = records["visual_arithmetic"], records["attribute_questions"]
    assert set(arithmetic["metrics"]) == {"recall@1", "recall@5"} and set(asked["metrics"]) == {"acc1"}
    details = arithmetic["task_details"]
    assert 0 < details["num_queries"] <= details["num_swaps"] and details["num_images"] == 80
    assert sum(a["queries"] for a in details["by_attribute"].values()) == details["num_queries"]
    by_attribute = asked["task_details"]["by_attribute"]
    assert set(by_attribute) == {"count", "colour", "size", "shape"}
    total = sum(a["questions"] for a in by_attribute.values())
    assert total == asked["task_details"]["num_questions"]
    assert np.isclose(sum(a["acc1"] * a["questions"] for a in by_attribute.values()) / total, asked["metrics"]["acc1"])
    assert assert_items_give_every_metric(results) == 2
    table = write_report(results)
    assert "| shapes | visual_arithmetic | R@1 |" in table and "| shapes | attribute_questions | acc1 |" in table
    assert table.count(" [") >= 3  # every cell with its interval
