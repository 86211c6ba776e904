"""``--skip-bad`` reaches every dataset whose factory takes ``skip_bad`` (the user's copies of COCO,
Flickr, ImageNet, CLIP_benchmark shards, not only folder: and manifest:), through ``align bench`` and
``align embed``, decided by the factory's signature alone."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from bad_input_checks import cli_fails
from layout_fixtures import karpathy_coco

from align.cli import main
from align.data.skip_bad import skip_bad_options, takes_skip_bad

pytestmark = pytest.mark.usefixtures("isolated_home")

CONFIG = """
name: skip-bad
image_encoders: [toy:cnn]
text_encoders: [toy:text]
aligners: [ridge]
datasets:
  - {{name: coco, fit: train, eval: test, tasks: [zeroshot_retrieval], options: {{root: "{coco}"}}}}
"""
BROKEN = "train2014/COCO_train2014_000000000025.jpg"


@pytest.mark.parametrize("name", ["coco", "coco2014", "coco2017", "flickr30k", "flickr8k", "imagenet1k",
                                  "imagenet:/data/in", "wds:/data/shards", "folder:/data/f", "manifest:/data/m.csv"])
def test_user_copies_take_skip_bad(name: str) -> None:
    assert takes_skip_bad(name) and skip_bad_options(name, True) == {"skip_bad": True}
    assert skip_bad_options(name, False) == {}


@pytest.mark.parametrize("name", ["cifar10", "emoji", "digits", "shapes"])
def test_packaged_and_array_datasets_do_not(name: str) -> None:
    assert not takes_skip_bad(name) and skip_bad_options(name, True) == {}


def broken_coco(tmp_path: Path) -> Path:
    coco = karpathy_coco(tmp_path / "coco", extra_train=6)
    (coco / BROKEN).write_bytes(b"not a jpeg")
    return coco


def test_bench_skip_bad_reaches_a_coco_copy(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    config = tmp_path / "bench.yaml"
    config.write_text(CONFIG.format(coco=broken_coco(tmp_path)))
    argv = ["bench", "--config", str(config), "--results", str(tmp_path / "results"), "--quiet"]
    cli_fails(capsys, argv, "datasets[0]", "COCO_train2014_000000000025.jpg")
    assert main([*argv, "--skip-bad"]) == 0
    record = json.loads(next((tmp_path / "results").rglob("*.json")).read_text())
    assert record["skipped_rows"] == {"fit": 1, "eval": 0}


def test_embed_skip_bad_reaches_a_coco_copy(tmp_path: Path, capsys: pytest.CaptureFixture[str],
                                            monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("ALIGN_COCO_ROOT", str(broken_coco(tmp_path)))
    argv = ["embed", "--dataset", "coco", "--split", "train", "--encoder", "toy:cnn", "--quiet"]
    cli_fails(capsys, argv, "COCO_train2014_000000000025.jpg")
    assert main([*argv, "--skip-bad"]) == 0
    captured = capsys.readouterr()
    assert "coco/train: skipped 1 bad row(s)" in captured.err
    assert "(7, " in captured.out  # 2 + 6 train images, one left out
