"""The command line: one-line errors for bad input, atomic feature files, listings."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from PIL import Image
from safetensors.torch import load_file

from align.cli import main


def make_images(folder: Path, count: int = 3) -> list[Path]:
    folder.mkdir(parents=True, exist_ok=True)
    paths = []
    for i in range(count):
        path = folder / f"img{i}.png"
        Image.new("RGBA", (40, 30), (10 * i, 200, 30, 128)).save(path)
        paths.append(path)
    return paths


def one_line_error(capsys: pytest.CaptureFixture[str]) -> str:
    err = capsys.readouterr().err.strip()
    assert err.startswith("align: error: ") and "\n" not in err and "Traceback" not in err, err
    return err


def test_embed_folder_writes_features_and_sidecar(tmp_path: Path, capsys) -> None:
    make_images(tmp_path / "imgs")
    out = tmp_path / "feats.safetensors"
    assert main(["embed", "--encoder", "toy:cnn", str(tmp_path / "imgs"), "-o", str(out)]) == 0
    features = load_file(out)["features"]
    sidecar = json.loads(out.with_name(out.name + ".json").read_text())
    assert features.shape[0] == 3 and sidecar["shape"] == list(features.shape)
    assert [Path(r).name for r in sidecar["rows"]] == ["img0.png", "img1.png", "img2.png"]
    assert len(sidecar["predictions"][0]["top"]) == 5  # toy:cnn has a (random) 10-way head


def test_embed_text_file(tmp_path: Path) -> None:
    text = tmp_path / "captions.txt"
    text.write_text("a cat\na dog\n\n")
    out = tmp_path / "text.safetensors"
    assert main(["embed", "--text-encoder", "toy:text", str(text), "-o", str(out)]) == 0
    assert load_file(out)["features"].shape[0] == 2


def test_not_an_image_is_a_one_line_error_and_writes_nothing(tmp_path: Path, capsys) -> None:
    make_images(tmp_path / "imgs", count=2)
    (tmp_path / "imgs" / "broken.jpg").write_bytes(b"this is not a jpeg")
    out = tmp_path / "feats.safetensors"
    assert main(["embed", "--encoder", "toy:cnn", str(tmp_path / "imgs"), "-o", str(out)]) == 2
    err = one_line_error(capsys)
    assert "broken.jpg" in err and "not a readable image" in err
    assert list(tmp_path.glob("feats*")) == []


def test_empty_line_in_sentences_names_the_line(tmp_path: Path, capsys) -> None:
    text = tmp_path / "captions.txt"
    text.write_text("a cat\n\na dog\n")
    assert main(["embed", "--text-encoder", "toy:text", str(text)]) == 2
    assert "captions.txt, line 2: empty sentence" in one_line_error(capsys)


def test_unknown_encoder_suggests_names(tmp_path: Path, capsys) -> None:
    make_images(tmp_path / "imgs", count=1)
    assert main(["embed", "--encoder", "toy:cnnn", str(tmp_path / "imgs")]) == 2
    err = one_line_error(capsys)
    assert "unknown encoders 'toy:cnnn'" in err and "toy:cnn" in err


def test_missing_asset_names_the_pull_command(isolated_home: Path, capsys) -> None:
    assert main(["assets", "verify", "mobilenet_v2.imagenet1k_v1"]) == 2
    assert "mobilenet_v2.imagenet1k_v1: not pulled" in one_line_error(capsys)


def test_pull_needs_names_and_rejects_unknown_ones(isolated_home: Path, capsys) -> None:
    assert main(["assets", "pull"]) == 2
    assert "--all" in one_line_error(capsys)
    assert main(["assets", "pull", "all-minilm-l6-v3"]) == 2
    assert "did you mean all-minilm-l6-v2" in one_line_error(capsys)


def test_list_shows_toy_parts_and_assets(isolated_home: Path, capsys) -> None:
    assert main(["list", "encoders"]) == 0
    listed = capsys.readouterr().out
    assert "toy:cnn" in listed and "torchvision:mobilenet_v2.imagenet1k_v1" in listed and "timm:*" in listed
    assert main(["list", "assets"]) == 0
    assert "gemma-3-270m.q4_k_m" in capsys.readouterr().out


def test_embed_precision_is_recorded_and_a_bad_one_is_one_line(tmp_path: Path, capsys) -> None:
    make_images(tmp_path / "imgs")
    out = tmp_path / "feats.safetensors"
    args = ["embed", "--encoder", "toy:cnn", str(tmp_path / "imgs"), "-o", str(out)]
    assert main([*args, "--precision", "bfloat16"]) == 0
    assert json.loads(out.with_name(out.name + ".json").read_text())["encoder"] == "toy:cnn@bfloat16"
    capsys.readouterr()
    assert main([*args, "--precision", "bf16"]) == 2
    assert "bf16" in one_line_error(capsys)
