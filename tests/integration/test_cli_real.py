"""`align embed` on real weights, as a user runs it."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from align.cli import main
from conftest import need_asset

pytestmark = pytest.mark.integration


def test_embed_classifies_chelsea_as_a_cat_through_the_imagenet_head(tmp_path: Path, capsys) -> None:
    need_asset("mobilenet_v2.imagenet1k_v1")
    skimage_data = pytest.importorskip("skimage.data")
    folder = tmp_path / "photos"
    folder.mkdir()
    Image.fromarray(skimage_data.chelsea()).save(folder / "chelsea.png")
    Image.fromarray(skimage_data.coffee()).save(folder / "coffee.png")
    out = tmp_path / "photos.safetensors"

    assert main(["embed", "--encoder", "torchvision:mobilenet_v2.imagenet1k_v1", str(folder), "-o", str(out)]) == 0

    printed = capsys.readouterr().out
    chelsea_line = next(line for line in printed.splitlines() if "chelsea.png" in line)
    top1 = chelsea_line.split(": ", 1)[1].split(",")[0]
    assert "cat" in top1.lower(), chelsea_line
    sidecar = json.loads(out.with_name(out.name + ".json").read_text())
    predictions = {Path(p["path"]).name: p["top"] for p in sidecar["predictions"]}
    assert "cat" in predictions["chelsea.png"][0][0].lower()
    assert not any("cat" in name.lower() for name, _ in predictions["coffee.png"][:1])
    assert sidecar["shape"] == [2, 1280]


def test_minilm_sentence_file_embedding_ranks_kitten_above_truck(tmp_path: Path) -> None:
    need_asset("all-minilm-l6-v2")
    from safetensors.torch import load_file

    text = tmp_path / "sentences.txt"
    text.write_text("a photo of a cat\na kitten\na truck\n")
    out = tmp_path / "sentences.safetensors"
    assert main(["embed", "--text-encoder", "hf:sentence-transformers/all-MiniLM-L6-v2", str(text), "-o", str(out)]) == 0
    features = load_file(out)["features"].numpy()
    features /= np.linalg.norm(features, axis=1, keepdims=True)
    cat_kitten, cat_truck = features[0] @ features[1], features[0] @ features[2]
    assert cat_kitten > cat_truck + 0.1
