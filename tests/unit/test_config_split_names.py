"""A dataset entry naming a split its dataset does not have is refused when the config is checked, in one
line naming the entry, the split and the splits that exist, also for a shifted entry's eval dataset."""

from __future__ import annotations

from pathlib import Path

import pytest

from align.bench.plan.config import load_config
from align.errors import BadInputError

CONFIG = """
name: splits
image_encoders: [toy:cnn]
text_encoders: [toy:text]
aligners: [ridge]
datasets:
  - {entry}
"""


def check(tmp_path: Path, entry: str) -> str:
    path = tmp_path / "bench.yaml"
    path.write_text(CONFIG.format(entry=entry))
    with pytest.raises(BadInputError) as err:
        load_config(path)
    return str(err.value)


@pytest.mark.parametrize("entry,key,split,known", [
    ("{name: coco, fit: train, eval: testt@500, tasks: [zeroshot_retrieval]}", "datasets[0].eval", "testt",
     "train, restval, val, test"),
    ("{name: coco, fit: trian, eval: test, tasks: [zeroshot_retrieval]}", "datasets[0].fit", "trian",
     "train, restval, val, test"),
    ("{name: imagenet1k, fit: train, eval: val, tasks: [zeroshot_classification]}", "datasets[0].fit", "train",
     "val"),
    (("{name: shapes, fit: train, eval: test_compositionl, eval_dataset: shapes.compositional, "
      "tasks: [zeroshot_retrieval]}"), "datasets[0].eval", "test_compositionl", "test_compositional"),
])
def test_unknown_split_is_refused_in_one_line(tmp_path: Path, entry: str, key: str, split: str, known: str) -> None:
    message = check(tmp_path, entry)
    assert "\n" not in message
    assert f"{key}:" in message and repr(split) in message and known in message


def test_a_shifted_entry_checks_its_eval_split_against_the_eval_dataset(tmp_path: Path) -> None:
    """``eval`` names a split of ``eval_dataset``, not of the fit dataset: a split only the fit dataset has is refused."""
    message = check(tmp_path, "{name: coco, fit: train, eval: restval, eval_dataset: imagenet1k, "
                              "tasks: [zeroshot_retrieval]}")
    assert "datasets[0].eval:" in message and "imagenet1k has no split 'restval'" in message
