"""Bad inputs to the feature cache and to ``align embed`` (issue 27: nothing wrong printed, nothing lost).

* A cache entry whose index no longer matches its shards' own row ranges (reordered, duplicated,
  dropped, swapped or foreign shards) is damaged: logged in one line and recomputed, never served.
* A folder where a shard or ``index.json`` belongs, an index nested too deep for the JSON parser, and a
  full disk while writing the cache or an ``align embed`` output are one line naming the file, never a
  traceback, and no partial file takes the place of a good one.
* ``align embed -o`` never overwrites one of its own inputs (by path, through ``..`` or a symlinked
  folder, or as the same file under another name: a symlink, a hard link), nor does its ``.json`` sidecar.
"""

from __future__ import annotations

import dataclasses
import errno
import hashlib
import json
import os
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import pytest
import torch
from PIL import Image

from align.cli import main
from align.errors import AlignError
from align.features.cache import FeatureCache, FeatureKey
from bad_input_checks import cli_fails, one_line, tree


def key(**changes: object) -> FeatureKey:
    return dataclasses.replace(FeatureKey("toy:enc", "abc", "{}", "toyset", "1", "test", "image"), **changes)


class Counter:
    """An embed_batch whose row ``i`` is ``i + offset`` in every column; records the rows it computed."""

    def __init__(self, dim: int = 4, offset: float = 0.0) -> None:
        self.rows: list[int] = []
        self.dim, self.offset = dim, offset

    def __call__(self, start: int, stop: int) -> torch.Tensor:
        self.rows.extend(range(start, stop))
        return (torch.arange(start, stop, dtype=torch.float32) + self.offset)[:, None].repeat(1, self.dim)


def warnings_of(caplog: pytest.LogCaptureFixture) -> list[str]:
    return [r.getMessage() for r in caplog.records if r.levelname == "WARNING"]


def complete_entry(tmp_path: Path, num_items: int = 10) -> tuple[FeatureCache, torch.Tensor, Path]:
    """A complete cache entry of ``num_items`` rows in shards of 4; returns the cache, its features and
    the entry's folder."""
    cache = FeatureCache(tmp_path, shard_size=4)
    genuine = cache.compute(key(), num_items, Counter(), progress=False)
    return cache, genuine, key().folder(tmp_path)


def edit_index(folder: Path, change: Callable[[dict], None]) -> None:
    index = json.loads((folder / "index.json").read_text())
    change(index)
    (folder / "index.json").write_text(json.dumps(index))


# ---- 1. the index must match the shards' own row ranges ------------------------------------------

def _reorder(folder: Path) -> None:
    edit_index(folder, lambda index: index["shards"].reverse())


def _duplicate(folder: Path) -> None:  # rows 0-3 twice, rows 4-7 never: still 10 rows in all
    edit_index(folder, lambda index: index["shards"].__setitem__(1, index["shards"][0]))


def _drop(folder: Path) -> None:  # rows 4-7 gone and num_items lowered to match: a gap
    def change(index: dict) -> None:
        del index["shards"][1]
        index["num_items"] = 6
    edit_index(folder, change)


def _swap_files(folder: Path) -> None:  # the files renamed, the index's hashes following them
    a, b = folder / "shard-00000.safetensors", folder / "shard-00001.safetensors"
    a.rename(folder / "tmp"), b.rename(a), (folder / "tmp").rename(b)
    edit_index(folder, lambda index: index["sha256"].update({a.name: index["sha256"][b.name],
                                                             b.name: index["sha256"][a.name]}))


def _foreign(folder: Path) -> None:  # a shard of another entry (same rows, other values), its hash recorded
    other = FeatureCache(folder.parent / "elsewhere", shard_size=4)
    other.compute(key(split="train"), 4, Counter(offset=100.0), progress=False)
    source = next((folder.parent / "elsewhere").rglob("shard-00000.safetensors"))
    (folder / "shard-00000.safetensors").write_bytes(source.read_bytes())
    edit_index(folder, lambda index: index["sha256"].update(
        {"shard-00000.safetensors": hashlib.sha256(source.read_bytes()).hexdigest()}))


@pytest.mark.parametrize("damage,recomputed", [
    (_reorder, []), (_duplicate, []), (_drop, []), (_swap_files, list(range(8))), (_foreign, [0, 1, 2, 3]),
])
def test_an_index_that_does_not_tile_the_rows_is_damaged(tmp_path: Path, caplog: pytest.LogCaptureFixture,
                                                         damage: Callable[[Path], None], recomputed: list[int]) -> None:
    """Every shard file still has the sha256 its index records, but the rows they hold in index order are
    not 0..N in order: that is a damaged entry (one warning line), recomputed, never served."""
    cache, genuine, folder = complete_entry(tmp_path)
    damage(folder)
    with caplog.at_level("WARNING"):
        assert cache.load(key()) is None
    warned = warnings_of(caplog)
    assert len(warned) == 1 and one_line(warned[0], str(folder)), warned
    again = Counter()
    assert torch.equal(cache.compute(key(), 10, again, progress=False), genuine)
    assert again.rows == recomputed  # shards whose own header still fits their place are kept
    assert torch.equal(cache.load(key()), genuine)  # and the entry is whole again


def test_reordered_shards_never_reach_zero_shot_features(tmp_path: Path) -> None:
    """The tester's case through the public API: image features whose rows are another image's."""
    from align.data.base import DatasetSplit
    from align.features.cache import image_features

    colours = [(255, 0, 0), (0, 255, 0), (0, 0, 255), (250, 250, 0), (0, 0, 0), (90, 30, 200)]
    split = DatasetSplit(dataset="toyset", split="test", version="1", num_items=len(colours),
                         load_image=lambda i: Image.new("RGB", (32, 32), colours[i]))
    cache = FeatureCache(tmp_path, shard_size=2)
    genuine = image_features("toy:cnn", split, cache=cache, progress=False)
    index_path = next(tmp_path.rglob("index.json"))
    edit_index(index_path.parent, lambda index: index["shards"].reverse())
    assert torch.equal(image_features("toy:cnn", split, cache=cache, progress=False), genuine)


# ---- 2. tracebacks: folders in a file's place, deep JSON, a full disk -------------------------------

def test_a_folder_where_a_shard_belongs_is_one_line_and_kept(tmp_path: Path) -> None:
    cache, _, folder = complete_entry(tmp_path)
    shard = folder / "shard-00001.safetensors"
    shard.unlink()
    shard.mkdir()
    (shard / "notes.txt").write_text("someone's notes\n")
    before = tree(tmp_path)
    with pytest.raises(AlignError) as caught:
        cache.compute(key(), 10, Counter(), progress=False)
    one_line(str(caught.value), str(shard), "folder")
    assert tree(tmp_path) == before  # nothing lost, nothing half written


def test_a_folder_where_the_index_belongs_is_one_line_and_kept(tmp_path: Path) -> None:
    cache, _, folder = complete_entry(tmp_path)
    (folder / "index.json").unlink()
    (folder / "index.json").mkdir()
    before = tree(tmp_path)
    with pytest.raises(AlignError) as caught:
        cache.compute(key(), 10, Counter(), progress=False)
    one_line(str(caught.value), str(folder / "index.json"), "folder")
    assert tree(tmp_path) == before


def test_a_file_where_the_entry_folder_belongs_is_one_line(tmp_path: Path) -> None:
    cache = FeatureCache(tmp_path, shard_size=4)
    folder = key().folder(tmp_path)
    folder.parent.mkdir(parents=True)
    folder.write_text("not a folder\n")
    with pytest.raises(AlignError) as caught:
        cache.compute(key(), 10, Counter(), progress=False)
    one_line(str(caught.value), str(folder))
    assert folder.read_text() == "not a folder\n"


DEEP = "[" * 100_000 + "]" * 100_000


@pytest.mark.parametrize("text", [DEEP, '{"shards": ' + DEEP + "}", None],
                         ids=["deep-list", "deep-field", "dtype-a-list"])  # None: valid JSON, a field of the wrong type
def test_an_index_the_parser_cannot_take_is_recomputed(tmp_path: Path, caplog: pytest.LogCaptureFixture,
                                                       text: str | None) -> None:
    cache, genuine, folder = complete_entry(tmp_path)
    if text is None:
        edit_index(folder, lambda index: index.update(dtype=["float32"]))
    else:
        (folder / "index.json").write_text(text)
    with caplog.at_level("WARNING"):
        assert cache.load(key()) is None
    warned = warnings_of(caplog)
    assert len(warned) == 1 and one_line(warned[0], "index.json"), warned
    again = Counter()
    assert torch.equal(cache.compute(key(), 10, again, progress=False), genuine)
    assert again.rows == []  # the shards verified against their own headers


def test_an_index_with_an_impossible_size_is_recomputed(tmp_path: Path) -> None:
    cache, genuine, folder = complete_entry(tmp_path)
    edit_index(folder, lambda index: index.update(dim=-3, shards=[], num_items=0))
    assert cache.load(key()) is None
    assert torch.equal(cache.compute(key(), 10, Counter(), progress=False), genuine)


def test_a_deeply_nested_anchor_index_is_one_line(tmp_path: Path) -> None:
    """The anchor-folder reader shares the index check: a one-line error there too."""
    from align.errors import BadInputError
    from align.kernels.anchor_chunks import iter_chunks, write_shards

    folder = write_shards(tmp_path / "anchors", torch.arange(24, dtype=torch.float32).view(12, 2).split(5))
    (folder / "index.json").write_text(DEEP)
    with pytest.raises(BadInputError) as caught:
        list(iter_chunks(folder, 4))
    one_line(str(caught.value), "index.json")


def no_space(monkeypatch: pytest.MonkeyPatch, method: str, after: int = 0) -> None:
    """``Path.<method>`` raises ENOSPC from its ``after+1``-th call on, as a full disk would."""
    real = getattr(Path, method)
    calls = {"n": 0}

    def write(self: Path, *args: object, **kwargs: object) -> object:
        calls["n"] += 1
        if calls["n"] > after:
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
        return real(self, *args, **kwargs)

    monkeypatch.setattr(Path, method, write)


@pytest.mark.parametrize("method,failing,resumed", [
    ("write_bytes", "shard-00001.safetensors", [4, 5, 6, 7, 8, 9]),  # the second shard's write fails
    ("write_text", "index.json", []),  # every shard written, the index is not
])
def test_a_full_disk_while_writing_the_cache(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, method: str,
                                             failing: str, resumed: list[int]) -> None:
    cache = FeatureCache(tmp_path, shard_size=4)
    with monkeypatch.context() as patch:
        no_space(patch, method, after=1 if method == "write_bytes" else 0)
        with pytest.raises(AlignError) as caught:
            cache.compute(key(), 10, Counter(), progress=False)
    folder = key().folder(tmp_path)
    one_line(str(caught.value), str(folder / failing), "No space left on device")
    assert not [p for p in tmp_path.rglob("*") if p.name.endswith(".part")]  # no partial file left
    assert not (folder / "index.json").exists()  # not marked complete
    again = Counter()  # space freed: the run resumes with the shards it wrote
    assert torch.equal(cache.compute(key(), 10, again, progress=False)[:, 0], torch.arange(10, dtype=torch.float32))
    assert again.rows == resumed


def images(folder: Path, count: int = 3) -> list[Path]:
    (folder / "cls").mkdir(parents=True, exist_ok=True)
    paths = [folder / "cls" / f"img{i}.png" for i in range(count)]
    for i, path in enumerate(paths):
        Image.new("RGB", (8, 8), (40 * i, 100, 30)).save(path)
    return paths


def embed_dataset_argv(imgs: Path) -> list[str]:
    return ["embed", "--dataset", f"folder:{imgs}", "--split", "all", "--encoder", "toy:cnn", "--quiet"]


def test_cli_embed_dataset_on_a_full_disk(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys) -> None:
    monkeypatch.setenv("ALIGN_FEATURE_CACHE", str(tmp_path / "cache"))
    images(tmp_path / "imgs")
    no_space(monkeypatch, "write_bytes")
    cli_fails(capsys, embed_dataset_argv(tmp_path / "imgs"), "shard-00000.safetensors", "No space left on device")
    assert [p for p in (tmp_path / "cache").rglob("*") if p.is_file()] == []


@pytest.mark.parametrize("name", ["index.json", "shard-00000.safetensors"])
def test_cli_embed_dataset_with_a_folder_in_the_cache(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys,
                                                      name: str) -> None:
    monkeypatch.setenv("ALIGN_FEATURE_CACHE", str(tmp_path / "cache"))
    images(tmp_path / "imgs")
    assert main(embed_dataset_argv(tmp_path / "imgs")) == 0
    capsys.readouterr()
    target = next((tmp_path / "cache").rglob(name))
    target.unlink()
    target.mkdir()
    before = tree(tmp_path)
    cli_fails(capsys, embed_dataset_argv(tmp_path / "imgs"), str(target), "folder")
    assert tree(tmp_path) == before


def good_output(tmp_path: Path) -> tuple[Path, dict[str, str]]:
    """An earlier run's output and sidecar, which a failed write must leave as they are."""
    out = tmp_path / "out.safetensors"
    out.write_bytes(b"an earlier run's features")
    (tmp_path / "out.safetensors.json").write_text('{"earlier": true}\n')
    return out, tree(tmp_path)


def test_cli_embed_output_on_a_full_disk(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys) -> None:
    """ENOSPC while the sidecar is written: one line naming the file that failed; the earlier output and
    sidecar are byte-identical, no partial file is left."""
    text = tmp_path / "s.txt"
    text.write_text("a cat\na dog\n")
    out, before = good_output(tmp_path)
    no_space(monkeypatch, "write_text")  # the sidecar's write
    cli_fails(capsys, ["embed", "--text-encoder", "toy:text", str(text), "-o", str(out)],
              str(tmp_path / "out.safetensors.json"), "No space left on device")
    assert tree(tmp_path) == before


@pytest.mark.skipif(sys.platform == "win32", reason="needs RLIMIT_FSIZE")
def test_cli_embed_output_on_a_real_write_failure(tmp_path: Path) -> None:
    """A write refused by the operating system (a file-size limit; a full disk fails the same call) while
    the safetensors library writes the features: one line, no traceback, the earlier output kept."""
    images(tmp_path / "imgs")
    out, before = good_output(tmp_path)
    script = (
        "import resource, signal, sys\n"
        "from align.cli import main\n"
        "signal.signal(signal.SIGXFSZ, signal.SIG_IGN)\n"
        "resource.setrlimit(resource.RLIMIT_FSIZE, (64, resource.getrlimit(resource.RLIMIT_FSIZE)[1]))\n"
        "sys.exit(main(sys.argv[1:]))\n"
    )
    env = {**os.environ, "PYTHONDONTWRITEBYTECODE": "1"}
    done = subprocess.run([sys.executable, "-c", script, "embed", "--encoder", "toy:cnn", str(tmp_path / "imgs"),
                           "-o", str(out)], check=False, capture_output=True, text=True, env=env, cwd=tmp_path, timeout=300)
    err = done.stderr.strip()
    assert done.returncode == 2, err
    assert err.startswith("align: error: "), err
    one_line(err, str(out))
    assert tree(tmp_path) == before


# ---- 3. align embed never overwrites its own inputs ------------------------------------------------

@pytest.fixture
def sentences(tmp_path: Path) -> Path:
    (tmp_path / "data" / "sub").mkdir(parents=True)
    path = tmp_path / "data" / "s.txt"
    path.write_text("a cat\na dog\n")
    return path


def text_embed(source: Path, output: Path | str) -> list[str]:
    return ["embed", "--text-encoder", "toy:text", str(source), "-o", str(output)]


@pytest.mark.parametrize("output", [
    "data/s.txt",  # the input itself
    "data/sub/../s.txt",  # the same path spelled otherwise
    "linked/s.txt",  # through a symlinked folder
    "symlink.safetensors",  # a symlink to the input
    "hardlink.safetensors",  # a hard link to the input
])
def test_cli_embed_output_is_the_text_input(tmp_path: Path, sentences: Path, capsys, output: str) -> None:
    (tmp_path / "linked").symlink_to(tmp_path / "data", target_is_directory=True)
    (tmp_path / "symlink.safetensors").symlink_to(sentences)
    os.link(sentences, tmp_path / "hardlink.safetensors")
    before = tree(tmp_path)
    cli_fails(capsys, text_embed(sentences, tmp_path / output), str(tmp_path / output), str(sentences), "input")
    assert tree(tmp_path) == before and sentences.read_text() == "a cat\na dog\n"


def test_cli_embed_sidecar_is_the_text_input(tmp_path: Path, capsys) -> None:
    source = tmp_path / "notes.json"  # -o notes writes notes.json beside it
    source.write_text("a cat\na dog\n")
    before = tree(tmp_path)
    cli_fails(capsys, text_embed(source, tmp_path / "notes"), str(source), "input")
    assert tree(tmp_path) == before


def test_cli_embed_output_is_one_of_the_images(tmp_path: Path, capsys) -> None:
    paths = images(tmp_path / "imgs")
    before = tree(tmp_path)
    cli_fails(capsys, ["embed", "--encoder", "toy:cnn", str(tmp_path / "imgs"), "-o", str(paths[1])],
              str(paths[1]), "input")
    assert tree(tmp_path) == before


def test_cli_embed_output_beside_its_inputs_is_fine(tmp_path: Path, sentences: Path) -> None:
    """Not over-refused: an output beside the input, while a hard link of the input lies elsewhere."""
    os.link(sentences, tmp_path / "copy.txt")
    assert main(text_embed(sentences, tmp_path / "data" / "s.safetensors")) == 0
    assert sentences.read_text() == "a cat\na dog\n" and (tmp_path / "data" / "s.safetensors.json").is_file()
