"""The bootstrap over test items: planted noise is not called a difference, a planted gap is; cells of a
leaderboard row are bold or tied by the same rule; per-item outputs survive their file."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch

from align.bench.record.item_files import ItemsProblem, items_path, read_items, write_items
from align.bench.report.uncertainty import standing
from align.errors import BadInputError
from align.eval.bootstrap import Bootstrap, metric_interval, paired_difference
from align.eval.items import CaptionItems, ClassificationItems, CodeItems, MeanItems
from align.eval.metrics import classification_items, retrieval_items

N, CLASSES = 600, 10


def _labels() -> np.ndarray:
    return np.random.default_rng(0).integers(0, CLASSES, N)


def _aligner(accuracy: float, seed: int) -> ClassificationItems:
    """Zero-shot items of an aligner that gets each test item right with probability ``accuracy``
    (independently per item and seed: two such aligners differ by noise only)."""
    rng = np.random.default_rng(seed)
    labels = _labels()
    scores = rng.normal(size=(N, CLASSES))
    right = rng.random(N) < accuracy
    scores[np.arange(N), labels] = np.where(right, 10.0, -10.0)
    return classification_items(torch.as_tensor(scores), labels)


def _reshuffled(items: ClassificationItems, flips: int, seed: int) -> ClassificationItems:
    """Another aligner of exactly the same accuracy that disagrees on ``2 * flips`` items: ``flips`` of the
    right ones become wrong and as many wrong ones become right (a difference of noise only)."""
    rng = np.random.default_rng(seed)
    right = items.predictions[:, 0] == items.labels
    predictions = items.predictions.copy()
    lose = rng.choice(np.flatnonzero(right), flips, replace=False)
    gain = rng.choice(np.flatnonzero(~right), flips, replace=False)
    predictions[lose, 0] = (items.labels[lose] + 1) % items.num_classes
    predictions[gain, 0] = items.labels[gain]
    return ClassificationItems(predictions, items.labels, items.num_classes)


def test_noise_is_not_separated_and_a_real_gap_is() -> None:
    seeds = (0, 1, 2)
    a = {s: _aligner(0.70, 100 + s) for s in seeds}
    same = {s: _reshuffled(a[s], 60, s) for s in seeds}  # same accuracy, 120 items disagree per seed
    better = {s: _aligner(0.82, 300 + s) for s in seeds}  # 12 points better
    noise = paired_difference(same, a, "acc1")
    assert not noise.interval.excludes_zero() and noise.verdict() == "cannot be told apart"
    gap = paired_difference(better, a, "acc1")
    assert gap.interval.low > 0.05 and gap.verdict() == "higher" and gap.seeds_better == "3/3"
    assert paired_difference(a, better, "acc1").verdict() == "lower"
    assert abs(gap.interval.estimate - np.mean([better[s].value("acc1") - a[s].value("acc1") for s in seeds])) < 1e-12


def test_pairing_uses_the_same_draws_so_a_shared_error_cancels() -> None:
    """Two aligners that differ on a few items only: the paired interval is far narrower than either
    cell's own interval, and a cell's interval covers its point estimate."""
    base = _aligner(0.6, 1)
    predictions = base.predictions.copy()
    wrong = np.flatnonzero(predictions[:, 0] != base.labels)[:30]
    predictions[wrong, 0] = base.labels[wrong]  # 30 more items right, nothing else changed
    improved = ClassificationItems(predictions, base.labels, base.num_classes)
    own = metric_interval([base], "acc1")
    assert own.low < own.estimate < own.high and own.high - own.low > 0.06
    diff = paired_difference({0: improved}, {0: base}, "acc1")
    assert diff.interval.estimate == pytest.approx(30 / N)
    assert diff.interval.low > 0 and diff.interval.high - diff.interval.low < (own.high - own.low) / 2


def test_draws_are_seeded_and_recorded() -> None:
    items = [_aligner(0.7, 5)]
    assert metric_interval(items, "acc1", Bootstrap(200, seed=3)) == metric_interval(items, "acc1", Bootstrap(200, seed=3))
    assert metric_interval(items, "acc1", Bootstrap(200, seed=3)) != metric_interval(items, "acc1", Bootstrap(200, seed=4))
    assert Bootstrap().as_dict()["resamples"] == 1000 and "seed 0" in Bootstrap().describe()
    with pytest.raises(BadInputError, match="resamples"):
        Bootstrap(0)


def test_items_of_other_test_sets_are_not_compared() -> None:
    other = ClassificationItems(_aligner(0.7, 1).predictions, (_labels() + 1) % CLASSES, CLASSES)
    with pytest.raises(BadInputError, match="same test items"):
        paired_difference({0: _aligner(0.7, 1)}, {0: other}, "acc1")


def test_resampled_metrics_equal_the_metric_of_the_drawn_items() -> None:
    """Each kind's ``resampled`` gives, for one draw, the metric recomputed on that draw's items."""
    rng = np.random.default_rng(0)
    draw = rng.integers(0, N, N)
    counts = np.bincount(draw, minlength=N)[None, :].astype(float)
    items = _aligner(0.5, 9)
    redrawn = ClassificationItems(items.predictions[draw], items.labels[draw], CLASSES)
    for metric in ("acc1", "acc5", "mean_per_class_recall"):
        assert items.resampled(metric, counts)[0] == pytest.approx(redrawn.value(metric))

    sim = torch.randn(40, 90)
    owner = torch.randint(0, 40, (90,))
    ret = retrieval_items(sim, owner, ks=(1, 5))
    pick = rng.integers(0, 40, 40)
    counts = np.bincount(pick, minlength=40)[None, :].astype(float)
    texts = [t for i in pick for t in np.flatnonzero(owner.numpy() == i)]
    expected_t2i = np.mean(ret.text_ranks[texts] < 5)
    queried = [i for i in pick if ret.image_ranks[i] >= 0]
    expected_i2t = np.mean(ret.image_ranks[queried] < 5)
    assert ret.resampled("image_retrieval_recall@5", counts)[0] == pytest.approx(expected_t2i)
    assert ret.resampled("text_retrieval_recall@5", counts)[0] == pytest.approx(expected_i2t)

    codes = CodeItems(rng.integers(0, 7, (50, 4)), rng.integers(0, 3, 50), seed=0)
    with pytest.raises(BadInputError, match="pooled codes"):  # statistics of the pooled codes: no interval
        codes.resampled("code_perplexity", counts)


def test_standing_bolds_only_a_separated_best_and_marks_ties() -> None:
    seeds = (0, 1)

    def cell(items: dict) -> dict:
        return {"mean": float(np.mean([i.value("acc1") for i in items.values()])), "items": items}

    strong = cell({s: _aligner(0.85, 10 + s) for s in seeds})
    weak = cell({s: _aligner(0.55, 20 + s) for s in seeds})
    twin = cell({s: _aligner(0.55, 30 + s) for s in seeds})
    assert standing({"strong": strong, "weak": weak, "twin": twin, "none": None}, "acc1").best == "strong"
    tie = standing({"weak": weak, "twin": twin}, "acc1")
    assert tie.best is None and tie.tied == {"weak", "twin"}
    old = standing({"weak": {"mean": 0.5, "items": None}, "twin": twin}, "acc1")  # no per-item outputs
    assert old.best is None and not old.tied


@pytest.mark.parametrize("items", [
    _aligner(0.7, 1),
    retrieval_items(torch.randn(12, 30), torch.randint(0, 12, (30,)), ks=(1, 5)),
    CodeItems(np.arange(24).reshape(6, 4) % 5, np.array([0, 1, 0, 1, 2, 2]), seed=3),
    CaptionItems(np.array([0.5, 1.25]), ("a red square", "blue"), (("a red square", "red"), ("a blue square",))),
    MeanItems(np.array([1.0, 0.0, 1.0]), "probe_correct"),
])
def test_items_round_trip_their_file_and_a_changed_file_is_refused(tmp_path: Path, items) -> None:
    result_path = tmp_path / "emoji__zeroshot__seed0.json"
    record = write_items(result_path, items)
    result = {"items": record}
    back = read_items(result, result_path)
    assert type(back) is type(items) and back.num_units == items.num_units
    for name, array in items.arrays().items():
        np.testing.assert_array_equal(back.arrays()[name], array)
    assert json.dumps(back.meta()) == json.dumps(items.meta())
    if not isinstance(items, CaptionItems):  # caption metrics need pycocoevalcap's scorers: checked in test_bench
        assert back.metrics() == items.metrics()

    path = items_path(result_path)
    data = bytearray(path.read_bytes())
    data[-1] ^= 1
    path.write_bytes(bytes(data))
    with pytest.raises(ItemsProblem, match="changed or damaged"):
        read_items(result, result_path)
    path.unlink()
    with pytest.raises(ItemsProblem, match="missing"):
        read_items(result, result_path)
    with pytest.raises(ItemsProblem, match="older align"):
        read_items({}, result_path)
