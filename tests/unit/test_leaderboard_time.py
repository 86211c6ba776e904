"""The leaderboard's wall-time line: each aligner's fits counted once however many tasks share them, its
scoring summed, and aligners whose results carry no ``wall_time_s`` named instead of counted as zero."""

from __future__ import annotations

from typing import Any

from align.bench.report.leaderboard import aggregate, markdown


def result(model: str, task: str, label_set: str | None, fit: float | None, scoring: float,
           seed: int = 0, encoding: tuple[float, float] | None = None) -> dict[str, Any]:
    found = {"model": model, "dataset": "emoji", "task": task, "label_set": label_set, "seed": seed,
             "fit_split": "anchors", "hparams": {"alpha": 1.0}, "image_encoder": "img", "text_encoder": "txt",
             "metrics": {"acc1": 0.5}}
    if fit is not None:
        found["wall_time_s"] = {"fit": fit, "task": scoring}
    if encoding is not None:
        found["wall_time_s"]["encoding"] = {"fit": encoding[0], "task": encoding[1]}
    return found


def time_line(results: list[dict[str, Any]]) -> str:
    return next(line for line in markdown(aggregate(results)).splitlines() if line.startswith("Wall time"))


def test_a_fit_shared_by_tasks_and_label_sets_counts_once_and_each_seed_counts() -> None:
    results = [result("ridge", "zeroshot_retrieval", None, 10.0, 2.0),  # one fit, scored three ways
               result("ridge", "zeroshot_classification", "subcategory", 10.0, 1.0),
               result("ridge", "linear_probe", "subcategory", 10.0, 4.0),
               result("ridge", "linear_probe", "subcategory", 30.0, 5.0, seed=1),  # another seed: another fit
               result("asif", "linear_probe", "subcategory", 0.0, 7.0)]
    line = time_line(results)
    assert line.endswith(": asif 0 + 7, ridge 40 + 12.")


def test_an_untimed_aligner_is_named_not_counted_as_zero() -> None:
    line = time_line([result("ridge", "linear_probe", None, 3.0, 1.0), result("old", "linear_probe", None, None, 0.0)])
    assert "ridge 3 + 1." in line and "old 0" not in line
    assert line.endswith("Not timed (results without `wall_time_s`): old.")


def test_no_line_when_nothing_is_timed() -> None:
    assert "Wall time" not in markdown(aggregate([result("old", "linear_probe", None, None, 0.0)]))


def test_encoding_is_counted_apart_once_per_fit_when_every_result_records_it() -> None:
    results = [result("ridge", "zeroshot_retrieval", None, 10.0, 2.0, encoding=(40.0, 3.0)),  # one fit, two tasks
               result("ridge", "linear_probe", "subcategory", 10.0, 1.0, encoding=(40.0, 0.0)),
               result("asif", "linear_probe", "subcategory", 0.0, 7.0, encoding=(0.0, 0.0))]
    line = time_line(results)
    assert line.endswith(": asif 0 + 7, ridge 10 + 3 (+ 43 encoding).")
    assert "in brackets" in line and "also pays" not in line


def test_older_results_without_encoding_keep_the_caveat_and_no_brackets() -> None:
    line = time_line([result("ridge", "linear_probe", None, 3.0, 1.0, encoding=(5.0, 0.0)),
                      result("asif", "linear_probe", None, 0.0, 2.0)])
    assert "also pays for encoding" in line and "(+" not in line
