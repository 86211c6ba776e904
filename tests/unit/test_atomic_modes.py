"""Atomic writes end with the mode a plain ``open()`` would give under the umask, not tempfile's 0600.

A results folder shared with a group, or an HTML report served by a web server, must be readable by
whoever the umask lets read it: under umask 022 every written file is 0644 (folders 0755), under 077
it stays private (0600, 0700).
"""

from __future__ import annotations

import os
import stat
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest
import torch

import align.atomic as atomic
from align.atomic import atomic_dir, atomic_path, write_json_atomic


@contextmanager
def umask(value: int) -> Iterator[None]:
    old = os.umask(value)
    try:
        yield
    finally:
        os.umask(old)


def mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


def _json(folder: Path) -> list[Path]:
    write_json_atomic(folder / "a" / "payload.json", {"x": 1})
    return [folder / "a" / "payload.json"]


def _text(folder: Path) -> list[Path]:
    with atomic_path(folder / "notes.md") as tmp:
        tmp.write_text("hello\n")
    return [folder / "notes.md"]


def _result(folder: Path) -> list[Path]:
    from align.bench.record.result_json import write_result

    write_result(folder / "results" / "r.json", {"dataset": "d", "metrics": {"acc": 0.5}})
    return [folder / "results" / "r.json"]


def _reports(folder: Path) -> list[Path]:
    from align.bench.report.html import write_html_report
    from align.bench.report.leaderboard import write_report

    (folder / "results").mkdir()
    write_report(folder / "results")
    page = write_html_report(folder / "results", folder / "html")
    return [folder / "results" / "leaderboard.md", folder / "results" / "leaderboard.csv", page]


def _shard(folder: Path) -> list[Path]:
    from align.features.shards import write_shard

    write_shard(folder / "cache" / "00000.safetensors", torch.ones(3, 2), {"key": "k"})
    return [folder / "cache" / "00000.safetensors"]


def _embedding(folder: Path) -> list[Path]:
    from align.embed import save_features

    path = save_features(folder / "out" / "features.safetensors", torch.zeros(2, 3), {"rows": ["a", "b"]})
    return [path, path.with_name(path.name + ".json")]


def _saved_aligner(folder: Path) -> list[Path]:
    from align.registry import ALIGNERS

    generator = torch.Generator().manual_seed(0)
    x, y = torch.randn(20, 4, generator=generator), torch.randn(20, 3, generator=generator)
    ALIGNERS.create("ridge", alpha=0.3).fit(x, y).save(folder / "fitted")
    return [folder / "fitted.safetensors", folder / "fitted.json"]


WRITERS: dict[str, Callable[[Path], list[Path]]] = {
    "json": _json, "text": _text, "result": _result, "reports": _reports, "feature shard": _shard,
    "embedding": _embedding, "saved aligner": _saved_aligner,
}


def cases(*pairs: tuple[int, int]) -> list:
    return [pytest.param(mask, expected, id=f"umask{mask:03o}-{expected:o}") for mask, expected in pairs]


@pytest.mark.parametrize("mask, expected", cases((0o022, 0o644), (0o077, 0o600), (0o002, 0o664)))
@pytest.mark.parametrize("writer", WRITERS, ids=str)
def test_written_files_have_the_plain_mode_of_the_umask(tmp_path: Path, writer: str, mask: int,
                                                        expected: int) -> None:
    with umask(mask):
        written = WRITERS[writer](tmp_path)
    for path in written:
        assert oct(mode(path)) == oct(expected), path
    assert not list(tmp_path.rglob(".*.part"))  # no temporary file left behind


@pytest.mark.parametrize("mask, expected", cases((0o022, 0o644), (0o077, 0o600)))
def test_a_rewrite_gets_the_plain_mode_too(tmp_path: Path, mask: int, expected: int) -> None:
    target = tmp_path / "r.json"
    with umask(mask):
        write_json_atomic(target, {"x": 1})
        write_json_atomic(target, {"x": 2})
    assert mode(target) == expected


@pytest.mark.parametrize("mask, expected", cases((0o022, 0o755), (0o077, 0o700)))
def test_an_atomic_folder_has_the_plain_folder_mode(tmp_path: Path, mask: int, expected: int) -> None:
    target = tmp_path / "curves"
    with umask(mask):
        for _ in range(2):  # a new folder, then one replacing it
            with atomic_dir(target) as tmp:
                (tmp / "log.csv").write_text("step\n")
    assert mode(target) == expected
    assert mode(target / "log.csv") == expected & 0o666


def test_a_failed_block_leaves_nothing(tmp_path: Path) -> None:
    with pytest.raises(RuntimeError), atomic_path(tmp_path / "x.json") as tmp:
        tmp.write_text("half")
        raise RuntimeError
    assert list(tmp_path.iterdir()) == []


def test_reading_the_umask_leaves_it_unchanged() -> None:
    with umask(0o027):
        assert atomic.current_umask() == 0o027
        assert atomic.plain_file_mode() == 0o640 and atomic.plain_dir_mode() == 0o750
        assert os.umask(0o027) == 0o027  # still what the test set


def test_without_proc_the_umask_is_read_once_under_a_lock_and_restored(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(atomic, "_umask_from_proc", lambda: None)
    monkeypatch.setattr(atomic, "_swapped_umask", None)
    with umask(0o022):
        assert atomic.current_umask() == 0o022
        assert os.umask(0o022) == 0o022  # swapped back at once
        os.umask(0o077)
        assert atomic.current_umask() == 0o022  # kept: os.umask is not called on every write
        assert atomic.current_umask(refresh=True) == 0o077
        assert os.umask(0o077) == 0o077
