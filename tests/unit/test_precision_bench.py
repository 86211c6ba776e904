"""Precision in a benchmark config: the top-level ``precision`` key suffixes every encoder name, so
results and features of bfloat16 runs are told apart from float32 ones (whose identity is unchanged)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from align.bench.plan.config import load_config
from align.bench.execute.features import FeatureBank
from align.bench.runner import run_benchmark
from align.errors import BadInputError
from align.features.cache import FeatureCache
import tests.unit.test_bench  # noqa: F401  (registers the test-colours dataset)

CONFIG = """
name: toy
{precision}
image_encoders: [{image}]
text_encoders: [toy:text]
aligners: [ridge]
datasets:
  - {{name: test-colours, fit: train, eval: test, tasks: [zeroshot_classification]}}
"""


def write(tmp_path: Path, precision: str = "", image: str = "toy:cnn") -> Path:
    path = tmp_path / "bench.yaml"
    path.write_text(CONFIG.format(precision=precision, image=image))
    return path


def test_float32_config_names_are_unchanged(tmp_path: Path) -> None:
    for precision in ("", "precision: float32"):
        config = load_config(write(tmp_path, precision))
        assert config.image_encoders == ("toy:cnn",) and config.text_encoders == ("toy:text",)


def test_top_level_precision_suffixes_every_encoder(tmp_path: Path) -> None:
    config = load_config(write(tmp_path, "precision: bfloat16"))
    assert config.image_encoders == ("toy:cnn@bfloat16",) and config.text_encoders == ("toy:text@bfloat16",)
    one = load_config(write(tmp_path, image="toy:cnn@bfloat16"))  # or per encoder, by name
    assert one.image_encoders == ("toy:cnn@bfloat16",) and one.text_encoders == ("toy:text",)


@pytest.mark.parametrize("precision,image,where", [("precision: bf16", "toy:cnn", "precision"),
                                                   ("", "toy:cnn@fp16", "image_encoders[0]")])
def test_bad_precision_names_the_key(tmp_path: Path, precision: str, image: str, where: str) -> None:
    with pytest.raises(BadInputError) as err:
        load_config(write(tmp_path, precision, image))
    assert "\n" not in str(err.value) and where in str(err.value)


def test_bfloat16_results_record_the_precision(tmp_path: Path) -> None:
    config = load_config(write(tmp_path, "precision: bfloat16"))
    bank = FeatureBank(FeatureCache(tmp_path / "features"), progress=False)
    summary = run_benchmark(config, tmp_path / "results", bank=bank, echo=lambda _: None)
    assert summary.written == 1
    (path,) = (tmp_path / "results").rglob("*zeroshot_classification*.json")
    record = json.loads(path.read_text())
    assert record["pretrained"] == "toy:cnn@bfloat16+toy:text@bfloat16"
    assert record["image_encoder"] == "toy:cnn@bfloat16"
