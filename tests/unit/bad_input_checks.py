"""Checks shared by the bad-input suites: a failure is one line naming what it must name, and leaves the
files it was given exactly as they were."""

from __future__ import annotations

import contextlib
import hashlib
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from align.cli import main


def tree(root: Path) -> dict[str, str]:
    """Every file (the sha256 of its bytes) and folder (``"dir"``) under ``root``, by relative path."""
    return {p.relative_to(root).as_posix(): hashlib.sha256(p.read_bytes()).hexdigest() if p.is_file() else "dir"
            for p in sorted(root.rglob("*"))}


@contextlib.contextmanager
def untouched(root: Path) -> Iterator[None]:
    """Every file under ``root`` is byte-identical afterwards, and no file or folder appeared or vanished."""
    before = tree(root)
    yield
    assert tree(root) == before


def one_line(message: str, *names: str) -> str:
    """``message`` is one line, no traceback, and contains every one of ``names``."""
    assert message and "\n" not in message and "Traceback" not in message, message
    for name in names:
        assert name in message, (name, message)
    return message


def fails(call: Callable[[], object], kind: type[BaseException], *names: str) -> str:
    """Run ``call``; it must raise ``kind`` with a one-line message containing every one of ``names``."""
    with pytest.raises(kind) as caught:
        call()
    return one_line(str(caught.value), *names)


def cli_fails(capsys: pytest.CaptureFixture[str], argv: list[str], *names: str) -> str:
    """``align argv`` exits 2 with one ``align: error:`` line on stderr naming every one of ``names``."""
    assert main(argv) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("align: error: "), err
    return one_line(err, *names)
