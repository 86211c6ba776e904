"""Bad inputs to the data layer, the caches and the assets: each is one clear line naming the input
(an ``AlignError`` through the API, exit status 2 from the CLI), and nothing is written or lost."""

from __future__ import annotations

import gzip
import hashlib
import json
import os
import pickle
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from align.cli import main
from align.errors import AlignError, AssetVerificationError, BadInputError
from bad_input_checks import cli_fails, fails, untouched


def images(folder: Path, count: int = 3, size: int = 8) -> list[Path]:
    (folder / "cls").mkdir(parents=True, exist_ok=True)
    paths = [folder / "cls" / f"img{i}.png" for i in range(count)]
    for i, path in enumerate(paths):
        Image.new("RGB", (size, size), (40 * i, 100, 30)).save(path)
    return paths


@pytest.fixture
def small_pixel_limit(monkeypatch: pytest.MonkeyPatch) -> int:
    """A pixel limit of 600: a 32x32 image (1024 pixels) counts as a decompression bomb."""
    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", 600)
    return 600


def bomb(path: Path, size: int = 32) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.new("RGB", (size, size), (1, 2, 3)).save(path)
    return path


# ---- feature-cache and anchor folders --------------------------------------------------------------

def anchor_folder(tmp_path: Path) -> Path:
    from align.kernels.anchor_chunks import write_shards

    return write_shards(tmp_path / "anchors", torch.arange(24, dtype=torch.float32).view(12, 2).split(5))


def read_all(folder: Path) -> Callable[[], object]:
    from align.kernels.anchor_chunks import iter_chunks

    return lambda: list(iter_chunks(folder, 4))


def test_anchor_folder_with_flipped_bytes(tmp_path: Path) -> None:
    folder = anchor_folder(tmp_path)
    shard = folder / "shard-00001.safetensors"
    data = bytearray(shard.read_bytes())
    data[-1] ^= 1
    shard.write_bytes(bytes(data))
    with untouched(tmp_path):
        fails(read_all(folder), AlignError, "shard-00001.safetensors", "sha256")


def test_anchor_folder_with_a_truncated_shard(tmp_path: Path) -> None:
    folder = anchor_folder(tmp_path)
    shard = folder / "shard-00000.safetensors"
    shard.write_bytes(shard.read_bytes()[:30])
    with untouched(tmp_path):
        fails(read_all(folder), AlignError, "shard-00000.safetensors")


@pytest.mark.parametrize("garbage", [b"\x00\xff binary", b"{\"num_items\": 3", b"[1, 2]"])
def test_anchor_folder_with_a_garbage_index(tmp_path: Path, garbage: bytes) -> None:
    folder = anchor_folder(tmp_path)
    (folder / "index.json").write_bytes(garbage)
    with untouched(tmp_path):
        fails(read_all(folder), BadInputError, "index.json")


def test_anchor_folder_with_its_shards_reordered_in_the_index(tmp_path: Path) -> None:
    """Each shard keeps its bytes and hash, but the anchors would come in the wrong order (issue 27)."""
    folder = anchor_folder(tmp_path)
    index = json.loads((folder / "index.json").read_text())
    index["shards"] = index["shards"][::-1]
    (folder / "index.json").write_text(json.dumps(index))
    with untouched(tmp_path):
        fails(read_all(folder), AlignError, "shard-00002.safetensors", "its place in index.json")


def test_anchor_folder_written_without_checksums(tmp_path: Path) -> None:
    folder = anchor_folder(tmp_path)
    index = json.loads((folder / "index.json").read_text())
    del index["sha256"]
    (folder / "index.json").write_text(json.dumps(index))
    with untouched(tmp_path):
        fails(read_all(folder), BadInputError, "index.json", "sha256")


def cache_key():  # noqa: ANN201
    from align.features.cache import FeatureKey

    return FeatureKey("toy:enc", "abc", "{}", "toyset", "1", "test", "image")


@pytest.mark.parametrize("options,names", [
    ({"batch_size": 0}, ["toy:enc", "batch_size"]),
    ({"batch_size": -3}, ["toy:enc", "batch_size"]),
    ({"dtype": torch.int64}, ["dtype", "int64"]),
])
def test_feature_cache_refuses_bad_options_before_writing(tmp_path: Path, options: dict, names: list[str]) -> None:
    from align.features.cache import FeatureCache

    cache = FeatureCache(tmp_path / "cache")
    fails(lambda: cache.compute(cache_key(), 4, lambda a, b: torch.ones(b - a, 2), progress=False, **options),
          BadInputError, *names)
    assert not (tmp_path / "cache").exists()


def test_feature_cache_refuses_a_zero_shard_size(tmp_path: Path) -> None:
    from align.features.cache import FeatureCache

    fails(lambda: FeatureCache(tmp_path / "cache", shard_size=0), BadInputError, "shard_size")
    assert not (tmp_path / "cache").exists()


# ---- packaged assets -------------------------------------------------------------------------------

@pytest.fixture
def fake_asset(isolated_home: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A one-file asset ``fake-weights`` pulled into an empty ALIGN_HOME; returns the file."""
    from align.assets import CATALOG
    from align.assets.spec import AssetSpec

    blob = b"weights" * 50
    spec = AssetSpec(name="fake-weights", version="1", root="weights/fake", sources=(),
                     sha256={"w.bin": hashlib.sha256(blob).hexdigest()})
    monkeypatch.setitem(CATALOG, spec.name, spec)
    path = isolated_home / "weights" / "fake" / "w.bin"
    path.parent.mkdir(parents=True)
    path.write_bytes(blob)
    (isolated_home / "manifests").mkdir()
    (isolated_home / "manifests" / "fake-weights.json").write_text(
        json.dumps({"name": spec.name, "version": "1", "files": dict(spec.sha256)}))
    return path


@pytest.mark.parametrize("replacement", [b"weights" * 49 + b"weightz", b"", b"weights" * 51])
def test_damaged_asset_file_is_named_with_the_pull_command(fake_asset: Path, isolated_home: Path,
                                                           replacement: bytes) -> None:
    from align.assets import require

    fake_asset.write_bytes(replacement)
    os.utime(fake_asset, ns=(1, 1))
    with untouched(isolated_home):
        fails(lambda: require("fake-weights"), AssetVerificationError, str(fake_asset),
              "align assets pull --force fake-weights")


class Payload:
    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self):  # noqa: ANN204
        return (os.system, (f"touch {self.marker}",))


@pytest.mark.parametrize("content", ["code", "dict", "objects", "truncated"])
def test_bad_mnist_pickles_never_run_code(tmp_path: Path, content: str) -> None:
    from align.data.mnist import MNIST

    marker = tmp_path / "marker"
    path = tmp_path / "data" / "mnist.pkl.gz"
    path.parent.mkdir()
    value = {
        "code": ((Payload(marker), np.zeros(1)),) * 3,
        "dict": {"train": 1},
        "objects": ((np.array([object()] * 784, dtype=object)[None], np.zeros(1)),) * 3,
        "truncated": None,
    }[content]
    with gzip.open(path, "wb") as f:
        f.write(pickle.dumps(value)[: 20 if content == "truncated" else None])
    with untouched(tmp_path):
        fails(lambda: MNIST(path.parent).load("train"), BadInputError, str(path))
    assert not marker.exists()


# ---- images ----------------------------------------------------------------------------------------

def test_decompression_bomb_is_one_line(tmp_path: Path, small_pixel_limit: int) -> None:
    from align.data.images import open_image

    path = bomb(tmp_path / "big.png")
    with untouched(tmp_path):
        fails(lambda: open_image(path), BadInputError, str(path), "600-pixel limit")


def test_far_over_the_limit_is_one_line_too(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from align.data.images import open_image

    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", 100)  # 1024 > 2 x 100: Pillow raises, not warns
    path = bomb(tmp_path / "big.png")
    with untouched(tmp_path):
        fails(lambda: open_image(path), BadInputError, str(path), "limit")


def test_bomb_in_a_folder_dataset(tmp_path: Path, small_pixel_limit: int) -> None:
    from align.data.folder import ImageFolder

    images(tmp_path / "data")
    path = bomb(tmp_path / "data" / "cls" / "big.png")
    with untouched(tmp_path):
        fails(lambda: ImageFolder(tmp_path / "data").load("all"), BadInputError, str(path), "limit")


def test_bomb_in_a_folder_dataset_is_skipped_and_counted(tmp_path: Path, small_pixel_limit: int) -> None:
    from align.data.folder import ImageFolder

    images(tmp_path / "data")
    bomb(tmp_path / "data" / "cls" / "big.png")
    with untouched(tmp_path):
        split = ImageFolder(tmp_path / "data", skip_bad=True).load("all")
    assert split.skipped == 1 and len(split) == 3


def test_bomb_in_a_manifest_names_file_and_line(tmp_path: Path, small_pixel_limit: int) -> None:
    from align.data.manifest import Manifest

    images(tmp_path)
    bomb(tmp_path / "big.png")
    (tmp_path / "m.csv").write_text("image,caption\ncls/img0.png,a\nbig.png,b\n")
    with untouched(tmp_path):
        fails(lambda: Manifest(tmp_path / "m.csv").load("all"), BadInputError, "m.csv, line 3", "big.png")


def test_cli_embed_folder_with_a_bomb(tmp_path: Path, small_pixel_limit: int, capsys) -> None:
    images(tmp_path / "imgs")
    bomb(tmp_path / "imgs" / "cls" / "big.png")
    with untouched(tmp_path):
        cli_fails(capsys, ["embed", "--encoder", "toy:cnn", str(tmp_path / "imgs"), "-o",
                           str(tmp_path / "out.safetensors")], "big.png", "limit")


def test_cli_embed_folder_skip_bad_skips_the_bomb(tmp_path: Path, small_pixel_limit: int, capsys) -> None:
    from safetensors.torch import load_file

    images(tmp_path / "imgs")
    bomb(tmp_path / "imgs" / "cls" / "big.png")
    out = tmp_path / "out.safetensors"
    assert main(["embed", "--encoder", "toy:cnn", str(tmp_path / "imgs"), "-o", str(out), "--skip-bad"]) == 0
    assert "skipped 1 bad image" in capsys.readouterr().err
    assert load_file(str(out))["features"].shape[0] == 3


def test_cli_embed_dataset_skip_bad_skips_the_bomb(tmp_path: Path, small_pixel_limit: int, capsys,
                                                   monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("ALIGN_FEATURE_CACHE", str(tmp_path / "cache"))
    images(tmp_path / "imgs")
    bomb(tmp_path / "imgs" / "cls" / "big.png")
    argv = ["embed", "--dataset", f"folder:{tmp_path / 'imgs'}", "--split", "all", "--encoder", "toy:cnn",
            "--quiet", "--skip-bad"]
    assert main(argv) == 0
    out = capsys.readouterr()
    assert "skipped 1 bad row" in out.err and "(3, " in out.out


def test_cli_embed_folder_where_every_image_is_bad(tmp_path: Path, small_pixel_limit: int, capsys) -> None:
    bomb(tmp_path / "imgs" / "a.png")
    bomb(tmp_path / "imgs" / "b.png")
    with untouched(tmp_path):
        cli_fails(capsys, ["embed", "--encoder", "toy:cnn", str(tmp_path / "imgs"), "--skip-bad", "-o",
                           str(tmp_path / "out.safetensors")], str(tmp_path / "imgs"), "every image")


@pytest.mark.parametrize("kind", ["truncated", "missing", "folder", "text"])
def test_unreadable_image_paths(tmp_path: Path, kind: str) -> None:
    from align.data.images import open_image

    path = tmp_path / "x.png"
    if kind == "truncated":
        Image.new("RGB", (64, 64), (5, 6, 7)).save(path)
        path.write_bytes(path.read_bytes()[:60])
    elif kind == "folder":
        path.mkdir()
    elif kind == "text":
        path.write_text("not an image")
    with untouched(tmp_path):
        message = fails(lambda: open_image(path), BadInputError, str(path))
    assert ("no such image" in message) == (kind == "missing")


# ---- CSV and JSONL manifests -----------------------------------------------------------------------

@pytest.mark.parametrize("text,where", [
    ('image,caption\ncls/img0.png,"open\ncls/img1.png,b\ncls/img2.png,"c"\n', "line 2: unclosed quote"),
    ('image,caption\ncls/img0.png,a\ncls/img1.png,"never closed\n', "line 3: unclosed quote"),
    ('image,"caption\ncls/img0.png,a\n', "line 1: unclosed quote"),
    ('image,caption\ncls/img0.png,"a"b\n', "line 2: malformed CSV"),
    ('image,caption\ncls/img0.png,caf\xe9\n', "not UTF-8"),
])
def test_malformed_csv_manifests(tmp_path: Path, text: str, where: str) -> None:
    from align.data.manifest import Manifest

    images(tmp_path)
    path = tmp_path / "m.csv"
    path.write_bytes(text.encode("latin-1"))
    with untouched(tmp_path):
        fails(lambda: Manifest(path).load("all"), BadInputError, str(path), where)


# ---- text files ------------------------------------------------------------------------------------

@pytest.mark.parametrize("data,where", [
    ("one\u2028two\nthree\n\nfour\n".encode(), "line 3: empty sentence"),
    (b"caf\xe9\n", "not UTF-8"),
    (b"", "no sentences"),
])
def test_bad_sentence_files(tmp_path: Path, data: bytes, where: str) -> None:
    from align.data.sentences import read_sentences

    path = tmp_path / "s.txt"
    path.write_bytes(data)
    with untouched(tmp_path):
        fails(lambda: read_sentences(path), BadInputError, str(path), where)


def test_missing_sentence_file(tmp_path: Path) -> None:
    from align.data.sentences import read_sentences

    fails(lambda: read_sentences(tmp_path / "nope.txt"), BadInputError, "nope.txt")
    assert list(tmp_path.iterdir()) == []


def test_templates_file_line_numbers_match_the_file(tmp_path: Path) -> None:
    from align.data.prompts import read_templates

    path = tmp_path / "t.txt"
    path.write_bytes("a photo of a {c}\x0c with a form feed\n# comment\nno placeholder\n".encode())
    with untouched(tmp_path):
        fails(lambda: read_templates(str(path)), BadInputError, str(path), "line 3")


def test_classes_file_with_duplicates(tmp_path: Path) -> None:
    from align.data.options import resolve_classes

    path = tmp_path / "classes.txt"
    path.write_bytes("cat\x0c\ndog\ncat\x0c\n".encode())
    with untouched(tmp_path):
        fails(lambda: resolve_classes(path), BadInputError, str(path), "duplicate")


# ---- command line ----------------------------------------------------------------------------------

@pytest.mark.parametrize("value", ["0", "-2", "two"])
def test_cli_batch_size_must_be_positive(tmp_path: Path, value: str, capsys) -> None:
    images(tmp_path / "imgs")
    with untouched(tmp_path), pytest.raises(SystemExit) as caught:
        main(["embed", "--encoder", "toy:cnn", str(tmp_path / "imgs"), "--batch-size", value])
    assert caught.value.code == 2
    err = capsys.readouterr().err.strip().split("\n")[-1]
    assert "--batch-size" in err and "positive integer" in err and "Traceback" not in err


def test_cli_output_is_a_folder(tmp_path: Path, capsys) -> None:
    images(tmp_path / "imgs")
    (tmp_path / "out").mkdir()
    with untouched(tmp_path):
        cli_fails(capsys, ["embed", "--encoder", "toy:cnn", str(tmp_path / "imgs"), "-o", str(tmp_path / "out")],
                  str(tmp_path / "out"), "folder")
    assert list((tmp_path / "out").iterdir()) == []


def test_cli_output_under_a_file(tmp_path: Path, capsys) -> None:
    images(tmp_path / "imgs")
    (tmp_path / "plain").write_text("a file, not a folder")
    with untouched(tmp_path):
        cli_fails(capsys, ["embed", "--encoder", "toy:cnn", str(tmp_path / "imgs"), "-o",
                           str(tmp_path / "plain" / "out.safetensors")], "out.safetensors", "cannot write")


# ---- nothing usable left ---------------------------------------------------------------------------

@pytest.mark.parametrize("name,text,where", [
    ("m.csv", "image,caption\n", "no usable rows"),
    ("m.jsonl", '{"image": "cls/img0.png", "captions": []}\n{"image": "cls/img1.png", "captions": []}\n',
     "line 1: 'captions' is an empty list"),
])
def test_manifest_without_usable_rows(tmp_path: Path, name: str, text: str, where: str) -> None:
    from align.data.manifest import Manifest

    images(tmp_path)
    path = tmp_path / name
    path.write_text(text)
    with untouched(tmp_path):
        fails(lambda: Manifest(path).load("all"), BadInputError, str(path), where)
        fails(lambda: Manifest(path, skip_bad=True).load("all"), BadInputError, str(path), "no usable rows")


def test_folder_whose_every_image_is_skipped(tmp_path: Path, small_pixel_limit: int) -> None:
    from align.data.folder import ImageFolder

    bomb(tmp_path / "data" / "cls" / "a.png")
    with untouched(tmp_path):
        fails(lambda: ImageFolder(tmp_path / "data", skip_bad=True).load("all"), BadInputError,
              str(tmp_path / "data"), "no usable images")
