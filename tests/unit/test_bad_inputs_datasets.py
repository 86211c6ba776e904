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

import json
import os
import time
from collections.abc import Callable
from pathlib import Path

import pytest
from PIL import Image

from align.registry import DATASETS


def fails(call: Callable[[], object], kind: type[BaseException], *names: str) -> str:
    """Run ``call``; it must raise ``kind`` with a one-line message containing every one of ``names``."""
    with pytest.raises(kind) as caught:
        call()
    message = str(caught.value)
    assert message and "\n" not in message, message
    for name in names:
        assert name in message, (name, message)
    return message


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
    real = filehash.read_sha256

    def counting(path: Path) -> str:
        seen.append(Path(path))
        return real(path)

    monkeypatch.setattr(filehash, "read_sha256", counting)
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
