"""Issue 27 (data layer): nothing wrong printed, nothing lost.

* A user dataset (``folder:``, ``manifest:``) is versioned by its files' *content*: bytes that change
  while size and mtime stay (``cp -p``, ``rsync -t``) give a new version, so no stale cached result
  is served; unchanged files are not re-read (a verified hash cache in ``$ALIGN_HOME``).
* MNIST pickles: crafted files (deep nesting, shared references, cycles, garbage) are one-line
  errors naming the file, and checking one takes time linear in its size.
* An unknown label set and a bad split spec (``train@0``) are one-line errors naming the dataset,
  what was asked for and what is valid.
"""

from __future__ import annotations

import gzip
import json
import os
import pickle
import pickletools
import random
import time
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from align.errors import AlignError, BadInputError
from align.registry import DATASETS
from bad_input_checks import fails


# ---- 1. user datasets are versioned by content --------------------------------------------------------


def _bmp(path: Path, color: tuple[int, int, int]) -> Path:
    """An uncompressed 8x8 BMP: every colour gives a file of the same length."""
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.new("RGB", (8, 8), color).save(path, format="BMP")
    return path


def _same_size_same_mtime_rewrite(path: Path, color: tuple[int, int, int]) -> None:
    """What ``cp -p`` / ``rsync -t`` of an edited copy does: new bytes, same length, same mtime."""
    before = path.stat()
    scratch = path.with_suffix(".tmp.bmp")
    _bmp(scratch, color)
    data = scratch.read_bytes()
    scratch.unlink()
    assert len(data) == before.st_size and data != path.read_bytes()
    path.write_bytes(data)
    os.utime(path, ns=(before.st_atime_ns, before.st_mtime_ns))
    after = path.stat()
    assert (after.st_size, after.st_mtime_ns) == (before.st_size, before.st_mtime_ns)


def _folder(root: Path) -> Path:
    for i in range(3):
        _bmp(root / "red" / f"r{i}.bmp", (200, 10 * i, 0))
        _bmp(root / "blue" / f"b{i}.bmp", (0, 10 * i, 200))
    return root


def _manifest(root: Path) -> Path:
    for name in ("a", "b", "c"):
        _bmp(root / "img" / f"{name}.bmp", (ord(name), 0, 0))
    path = root / "m.csv"
    path.write_text("image,caption\nimg/a.bmp,first\nimg/b.bmp,second\nimg/c.bmp,third\n")
    return path


@pytest.fixture
def later(monkeypatch: pytest.MonkeyPatch) -> None:
    """Hash the files as if ten seconds had passed since they were written: a file changed within the
    last moments is never cached (its next change could keep its timestamps), so tests of the cache
    move the clock on."""
    from align.data import filehash

    monkeypatch.setattr(filehash, "_now_ns", lambda: time.time_ns() + 10 * 10**9)


@pytest.mark.parametrize("kind", ["folder", "manifest"])
def test_bytes_changed_with_size_and_mtime_kept_change_the_version(tmp_path: Path, isolated_home: Path,
                                                                    kind: str) -> None:
    if kind == "folder":
        name, image = f"folder:{_folder(tmp_path / 'pets')}", tmp_path / "pets" / "red" / "r1.bmp"
    else:
        name, image = f"manifest:{_manifest(tmp_path)}", tmp_path / "img" / "b.bmp"
    before = DATASETS.create(name).version
    assert DATASETS.create(name).version == before  # deterministic
    _same_size_same_mtime_rewrite(image, (1, 2, 3))
    assert DATASETS.create(name).version != before


@pytest.mark.parametrize("kind", ["folder", "manifest"])
def test_the_hash_cache_does_not_trust_size_and_mtime(tmp_path: Path, isolated_home: Path, later: None,
                                                      kind: str) -> None:
    """The same edit, with every file's hash already in the cache."""
    if kind == "folder":
        name, image = f"folder:{_folder(tmp_path / 'pets')}", tmp_path / "pets" / "blue" / "b0.bmp"
    else:
        name, image = f"manifest:{_manifest(tmp_path)}", tmp_path / "img" / "a.bmp"
    before = DATASETS.create(name).version
    assert DATASETS.create(name).version == before  # served from the cache
    _same_size_same_mtime_rewrite(image, (7, 7, 7))
    changed = DATASETS.create(name).version
    assert changed != before
    image.write_bytes(image.read_bytes())  # same bytes rewritten: new ctime, same content
    assert DATASETS.create(name).version == changed


@pytest.fixture
def reads(monkeypatch: pytest.MonkeyPatch) -> list[Path]:
    """Every file whose bytes are hashed, in order."""
    from align.data import filehash

    seen: list[Path] = []
    real = filehash.file_sha256

    def counting(path: Path) -> str:
        seen.append(Path(path))
        return real(path)

    monkeypatch.setattr(filehash, "file_sha256", counting)
    return seen


def test_unchanged_files_are_not_reread(tmp_path: Path, isolated_home: Path, later: None,
                                        reads: list[Path]) -> None:
    root = _folder(tmp_path / "pets")
    first = DATASETS.create(f"folder:{root}").version
    assert len(reads) == 6
    reads.clear()
    assert DATASETS.create(f"folder:{root}").version == first and reads == []
    edited = root / "red" / "r2.bmp"
    _same_size_same_mtime_rewrite(edited, (9, 9, 9))
    assert DATASETS.create(f"folder:{root}").version != first
    assert reads == [edited]  # only the changed file is read again
    caches = list(isolated_home.rglob("*.json"))
    assert len(caches) == 1, caches  # in ALIGN_HOME, one small JSON file
    assert not list(isolated_home.rglob("*.part"))  # written atomically, nothing left behind


def test_a_file_written_just_now_is_read_again(tmp_path: Path, isolated_home: Path, reads: list[Path]) -> None:
    """Its timestamps may not move on the next same-size write (coarse clocks), so it is not cached."""
    root = _folder(tmp_path / "pets")
    first = DATASETS.create(f"folder:{root}").version
    reads.clear()
    assert DATASETS.create(f"folder:{root}").version == first
    assert len(reads) == 6


def _cache_file(home: Path) -> Path:
    [path] = list(home.rglob("*.json"))
    return path


@pytest.mark.parametrize("damage", ["garbage", "truncated", "wrong hash", "wrong shape", "empty"])
def test_a_damaged_hash_cache_is_ignored_and_rebuilt(tmp_path: Path, isolated_home: Path, later: None,
                                                     reads: list[Path], damage: str) -> None:
    root = _folder(tmp_path / "pets")
    good = DATASETS.create(f"folder:{root}").version
    cache = _cache_file(isolated_home)
    text = cache.read_text()
    if damage == "garbage":
        cache.write_bytes(os.urandom(200))
    elif damage == "truncated":
        cache.write_text(text[: len(text) // 2])
    elif damage == "empty":
        cache.write_text("")
    else:
        payload = json.loads(text)
        entries = payload["entries"]
        key = min(entries)
        if damage == "wrong hash":  # a plausible entry that lies about the content: the checksum catches it
            entries[key][-1] = "0" * 64
        else:
            entries[key] = {"size": "big"}
        cache.write_text(json.dumps(payload))
    reads.clear()
    assert DATASETS.create(f"folder:{root}").version == good
    assert len(reads) == 6  # nothing trusted from the damaged file
    reads.clear()
    assert DATASETS.create(f"folder:{root}").version == good
    assert reads == []  # and it was rebuilt


def test_an_unwritable_cache_home_still_gives_the_right_version(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                                                 later: None) -> None:
    blocker = tmp_path / "home-is-a-file"
    blocker.write_text("")
    monkeypatch.setenv("ALIGN_HOME", str(blocker))
    root = _folder(tmp_path / "pets")
    first = DATASETS.create(f"folder:{root}").version
    _same_size_same_mtime_rewrite(root / "red" / "r0.bmp", (4, 4, 4))
    assert DATASETS.create(f"folder:{root}").version != first


# ---- 2. MNIST pickles ------------------------------------------------------------------------------------


def _mnist_file(folder: Path, data: bytes) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / "mnist.pkl.gz"
    with gzip.open(path, "wb") as f:
        f.write(data)
    return path


def _load_mnist(path: Path) -> object:
    from align.data.mnist import MNIST

    return MNIST(path.parent).load("train")


def _genuine(rows: int = 4) -> bytes:
    """A small pickle in the classic file's own format (Python 2 cPickle, protocol 2: the arrays'
    bytes as BINSTRING, read back with encoding="latin1"), built opcode by opcode as that pickler wrote it."""
    import struct

    def string(s: bytes) -> bytes:
        return (b"U" + bytes([len(s)]) + s) if len(s) < 256 else (b"T" + struct.pack("<i", len(s)) + s)

    def array(values: np.ndarray, code: bytes) -> bytes:
        shape = b"".join(b"J" + struct.pack("<i", n) for n in values.shape)
        return (b"cnumpy.core.multiarray\n_reconstruct\n" b"cnumpy\nndarray\n" b"K\x00\x85" + string(b"b")
                + b"\x87R(K\x01(" + shape + b"tcnumpy\ndtype\n" + string(code) + b"K\x00K\x01\x87R"
                + b"(K\x03U\x01<NNNJ\xff\xff\xff\xffJ\xff\xff\xff\xffK\x00tb\x89" + string(values.tobytes())
                + b"tb")

    rng = np.random.default_rng(0)
    parts = []
    for n in (rows, 2, 3):
        x = (rng.integers(0, 256, (n, 784)) / 256).astype("<f4")
        y = (np.arange(n) % 10).astype("<i8")
        parts.append(array(x, b"f4") + array(y, b"i8") + b"\x86")
    return b"\x80\x02" + b"".join(parts) + b"\x87."


def test_a_genuine_format_pickle_still_loads(tmp_path: Path) -> None:
    data = _genuine()
    assert [op.name for op, _, _ in pickletools.genops(data)][-2:] == ["TUPLE3", "STOP"]
    split = _load_mnist(_mnist_file(tmp_path / "m", data))
    assert len(split) == 4 and split.labels.labels.tolist() == [0, 1, 2, 3]


def test_a_pickle_written_by_this_python_still_loads(tmp_path: Path) -> None:
    parts = tuple(((np.arange(n * 784) % 256 / 256).astype(np.float32).reshape(n, 784), np.arange(n) % 10)
                  for n in (5, 2, 3))
    split = _load_mnist(_mnist_file(tmp_path / "m", pickle.dumps(parts, protocol=4)))
    assert len(split) == 5


@pytest.mark.parametrize("depth", [2_000, 200_000])
def test_deeply_nested_pickle_is_one_line(tmp_path: Path, depth: int) -> None:
    """((((...),),),) nested deeper than the interpreter's recursion limit."""
    data = b"\x80\x02)" + b"\x85" * depth + b"."
    path = _mnist_file(tmp_path / "m", data)
    fails(lambda: _load_mnist(path), BadInputError, str(path), "nested")


def _shared(levels: int, width: int = 3) -> bytes:
    """Each level a tuple holding the previous level ``width`` times (by memo reference): a few bytes
    per level, ``width ** levels`` paths through the result."""
    out = bytearray(b"\x80\x02)q\x00")
    for i in range(1, levels + 1):
        out += b"(" + (b"h" + bytes([i - 1])) * width + b"tq" + bytes([i]) + b"0"
    return bytes(out + b"h" + bytes([levels]) + b".")


def test_shared_references_are_checked_in_linear_time(tmp_path: Path) -> None:
    from align.data import safe_pickle

    data = _shared(16)  # 3**16 = 43 million paths through 17 tuples
    assert len(data) < 400
    ops = sum(1 for _ in pickletools.genops(data))
    try:
        value = safe_pickle.load_arrays(data, "crafted.pkl")
    except BadInputError as err:
        assert "crafted.pkl" in str(err) and "\n" not in str(err)
    else:  # accepted (empty tuples hold no non-numeric value): then the check visited each tuple once
        assert safe_pickle.check_arrays(value, "crafted.pkl", len(data)) <= ops  # each object visited once
    path = _mnist_file(tmp_path / "m", _shared(40))  # 3**40 paths, 500 bytes: a check walking paths never ends
    fails(lambda: _load_mnist(path), BadInputError, str(path))


def test_a_cycle_is_one_line(tmp_path: Path) -> None:
    """A list that holds itself (EMPTY_LIST, memo, GET, APPEND)."""
    data = b"\x80\x02]q\x00h\x00a."
    path = _mnist_file(tmp_path / "m", data)
    fails(lambda: _load_mnist(path), BadInputError, str(path))


_RECONSTRUCT = b"cnumpy.core.multiarray\n_reconstruct\ncnumpy\nndarray\nK\x00\x85U\x01b\x87R"
_INT64 = b"cnumpy\ndtype\nU\x02i8K\x00K\x01\x87R(K\x03U\x01<NNNJ\xff\xff\xff\xffJ\xff\xff\xff\xffK\x00tb"
_NO_LABELS = _RECONSTRUCT + b"(K\x01K\x00\x85" + _INT64 + b"\x89U\x00tb"  # an empty int64 array


def test_a_self_referencing_dtype_is_refused(tmp_path: Path) -> None:
    """Images of a float32 dtype whose BUILD state names the dtype itself as its sub-array base: numpy
    builds the cycle (its repr then recurses without end); refused before numpy sees it."""
    looped = b"cnumpy\ndtype\nU\x02f4K\x00K\x01\x87Rq\x00(K\x03U\x01|h\x00K\x02\x85\x86NNK\x08K\x01K\x00tb"
    images = _RECONSTRUCT + b"(K\x01K\x00M\x10\x03\x86" + looped + b"\x89U\x00tb"
    data = b"\x80\x02" + (images + _NO_LABELS + b"\x86") * 3 + b"\x87."
    path = _mnist_file(tmp_path / "m", data)
    fails(lambda: _load_mnist(path), BadInputError, str(path))


def test_a_dtype_whose_flags_claim_python_objects_is_refused(tmp_path: Path) -> None:
    """numpy's own dtype ``__setstate__`` takes the flags from the file: an int64 dtype flagged as
    holding object references (found by fuzzing: numpy then fails when the array is freed)."""
    flagged = _INT64.replace(b"K\x00tb", b"K\x01tb")
    labels = _RECONSTRUCT + b"(K\x01K\x00\x85" + flagged + b"\x89U\x00tb"
    images = _RECONSTRUCT + b"(K\x01K\x00M\x10\x03\x86cnumpy\ndtype\nU\x02f4K\x00K\x01\x87R" + b"\x89U\x00tb"
    data = b"\x80\x02" + (images + labels + b"\x86") * 3 + b"\x87."
    path = _mnist_file(tmp_path / "m", data)
    fails(lambda: _load_mnist(path), BadInputError, str(path), "dtype")


def test_a_huge_memo_index_is_refused_before_allocating(tmp_path: Path) -> None:
    """LONG_BINPUT 2**26: the unpickler sizes its memo to twice the index, 1 GB from an 8-byte pickle."""
    data = b"\x80\x02)r\x00\x00\x00\x04."
    path = _mnist_file(tmp_path / "m", data)
    fails(lambda: _load_mnist(path), BadInputError, str(path), "memo index")


def test_arrays_cannot_claim_more_memory_than_the_file_holds(tmp_path: Path) -> None:
    """``numpy.ndarray((65536, 784), "f4")`` called directly: 200 MB of uninitialised memory from a
    file of about a hundred bytes, which would load as 65536 garbage images."""
    pair = (b"cnumpy\nndarray\nJ\x00\x00\x01\x00M\x10\x03\x86U\x02f4\x86R"
            b"cnumpy\nndarray\nJ\x00\x00\x01\x00\x85U\x02i8\x86R\x86")
    data = b"\x80\x02" + pair + b"q\x00h\x00h\x00\x87."
    assert len(data) < 120
    path = _mnist_file(tmp_path / "m", data)
    fails(lambda: _load_mnist(path), BadInputError, str(path))


def test_every_mangled_genuine_pickle_is_one_line_or_loads(tmp_path: Path) -> None:
    """Seeded byte flips, insertions and cuts of a genuine-format file: each loads or is one line."""
    from align.data import safe_pickle

    data = _genuine(rows=1)
    rng = random.Random(0)
    for trial in range(400):
        mangled = bytearray(data)
        for _ in range(rng.randint(1, 4)):
            at = rng.randrange(len(mangled))
            action = rng.choice(["flip", "insert", "cut"])
            if action == "flip":
                mangled[at] = rng.randrange(256)
            elif action == "insert":
                mangled[at:at] = bytes([rng.choice(list(b"()tq0h]ae\x85\x86\x87RbNJKM"))])
            else:
                del mangled[at:]
        try:
            safe_pickle.load_arrays(bytes(mangled), f"mangled-{trial}.pkl")
        except AlignError as err:
            assert f"mangled-{trial}.pkl" in str(err) and "\n" not in str(err), (trial, err)


@pytest.mark.parametrize("data", [b"", b"not gzip at all", gzip.compress(b"\x80\x02)."), b"\x1f\x8b\x08\x00junk"])
def test_broken_gzip_or_wrong_shape_is_one_line(tmp_path: Path, data: bytes) -> None:
    path = tmp_path / "m" / "mnist.pkl.gz"
    path.parent.mkdir()
    path.write_bytes(data)
    fails(lambda: _load_mnist(path), BadInputError, str(path))


def test_a_corrupt_deflate_stream_is_one_line(tmp_path: Path) -> None:
    whole = bytearray(gzip.compress(_genuine()))
    for at in range(20, len(whole) - 20, 97):
        whole[at] ^= 0xFF
    path = tmp_path / "m" / "mnist.pkl.gz"
    path.parent.mkdir()
    path.write_bytes(bytes(whole))
    fails(lambda: _load_mnist(path), BadInputError, str(path))


# ---- 3. split specs and label sets ---------------------------------------------------------------------


@pytest.mark.parametrize("spec", ["train@0", "train@", "@5", "train@-1", "train@1.5", "train@@3"])
def test_a_bad_split_spec_names_dataset_split_and_what_is_valid(spec: str) -> None:
    dataset = DATASETS.create("digits")
    message = fails(lambda: dataset.load(spec), BadInputError, "'digits'", repr(spec), "train, test", "NAME@N")
    assert "positive" in message


def _emoji_root(root: Path, n: int = 12) -> Path:
    """A tiny ``emoji-google`` asset folder: ``emoji.json`` and ``64/<image>``."""
    records = []
    for i in range(n):
        code = f"1F{600 + i:03X}"
        category, subcategory = [("Smileys & Emotion", "face-smiling"), ("Food & Drink", "food-fruit")][i % 2]
        records.append({"name": f"THING {i}", "unified": code, "image": f"{code.lower()}.png",
                        "short_names": [f"thing_{i}"], "category": category, "subcategory": subcategory,
                        "sort_order": i, "has_img_google": True})
        (root / "64").mkdir(parents=True, exist_ok=True)
        Image.new("RGBA", (8, 8), (i, 200, 0, 100)).save(root / "64" / f"{code.lower()}.png")
    (root / "emoji.json").write_text(json.dumps(records))
    return root


def test_an_unknown_label_set_names_dataset_split_and_what_is_valid(tmp_path: Path) -> None:
    dataset = DATASETS.create("emoji.google", root=_emoji_root(tmp_path / "emoji"))
    split = dataset.load("test")
    assert split.label_set(None) is split.labels and split.label_set("subcategory") is split.extra_labels["subcategory"]
    message = fails(lambda: split.label_set("subcat"), BadInputError, "'emoji.google'", "'test'", "'subcat'",
                    "subcategory")
    assert "did you mean 'subcategory'" in message
    fails(lambda: dataset.check_label_set("subcat"), BadInputError, "'emoji.google'", "'subcat'", "subcategory")
    dataset.check_label_set("subcategory")
    dataset.check_label_set(None)


def test_a_label_set_on_a_dataset_without_any() -> None:
    dataset = DATASETS.create("digits")
    fails(lambda: dataset.load("test").label_set("subcategory"), BadInputError, "'digits'", "'subcategory'",
          "no extra label sets")
    fails(lambda: dataset.check_label_set("subcategory"), BadInputError, "'digits'", "'subcategory'")


def test_a_split_spec_is_checked_without_building_the_split(monkeypatch: pytest.MonkeyPatch) -> None:
    """The config layer checks a spec before anything is loaded."""
    dataset = DATASETS.create("digits")
    monkeypatch.setattr(type(dataset), "build_split", lambda self, split: pytest.fail("built"))
    assert dataset.check_split("test@10") == ("test", 10) and dataset.check_split("train") == ("train", None)
    fails(lambda: dataset.check_split("train@0"), BadInputError, "'digits'", "'train@0'", "train, test")
    fails(lambda: dataset.check_split("tarin@3"), AlignError, "'digits'", "'tarin'", "did you mean 'train'")


def _pickled_parts(x: object, y: object) -> bytes:
    return pickle.dumps(((x, y),) * 3, protocol=4)


@pytest.mark.parametrize("parts", ["lists", "labels out of range", "float labels", "nan images"])
def test_arrays_of_the_wrong_kind_are_one_line(tmp_path: Path, parts: str) -> None:
    x, y = np.zeros((2, 784), np.float32), np.array([0, 1])
    data = {"lists": _pickled_parts([], []),
            "labels out of range": _pickled_parts(x, np.array([3, 57])),
            "float labels": _pickled_parts(x, np.array([0.5, 1.0])),
            "nan images": _pickled_parts(np.full((2, 784), np.nan, np.float32), y)}[parts]
    path = _mnist_file(tmp_path / "m", data)
    fails(lambda: _load_mnist(path), BadInputError, str(path))


def test_a_decompression_bomb_is_refused_at_the_limit(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from align.data import mnist

    monkeypatch.setattr(mnist, "MAX_PICKLE_BYTES", 10_000)
    path = _mnist_file(tmp_path / "m", _genuine(rows=8))  # some 40 kB once decompressed
    fails(lambda: _load_mnist(path), BadInputError, str(path), "decompresses to more than 10000 bytes")


def test_a_pickle_rewritten_with_same_size_and_mtime_is_read_again(tmp_path: Path) -> None:
    """The in-memory copy of the file is keyed by ctime and inode too, not by size and mtime alone."""
    path = tmp_path / "m" / "mnist.pkl.gz"
    path.parent.mkdir()
    data = bytearray(_genuine())
    path.write_bytes(gzip.compress(bytes(data), compresslevel=0, mtime=0))  # stored: same length for same input length
    first = np.asarray(_load_mnist(path).load_image(0)).copy()
    before = path.stat()
    at = data.index(b"T") + 5  # the first image's pixels (BINSTRING, 4-byte length)
    pixel = b"\x00\x00\x00\x3f" if data[at:at + 4] != b"\x00\x00\x00\x3f" else b"\x00\x00\x80\x3e"
    data[at:at + 4] = pixel  # its first pixel becomes 0.5 (or 0.25): 128 (or 64) once read
    path.write_bytes(gzip.compress(bytes(data), compresslevel=0, mtime=0))
    os.utime(path, ns=(before.st_atime_ns, before.st_mtime_ns))
    assert (path.stat().st_size, path.stat().st_mtime_ns) == (before.st_size, before.st_mtime_ns)
    assert not np.array_equal(np.asarray(_load_mnist(path).load_image(0)), first)
