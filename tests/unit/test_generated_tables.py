"""``benchmarks/generated.py``: every page generated from committed results matches what its command gives from
them (a changed result or report committed without its page fails here), and an edited table is named."""

from __future__ import annotations

import re
import shutil
import subprocess
from pathlib import Path

import pytest

from bench_scripts import load_benchmark  # tests/unit/bench_scripts.py

ROOT = Path(__file__).resolve().parents[2]
generated = load_benchmark("generated")


def in_git() -> bool:
    return shutil.which("git") is not None and subprocess.run(
        ["git", "-C", str(ROOT), "rev-parse", "HEAD"], capture_output=True).returncode == 0


def test_committed_pages_match_their_committed_inputs(capsys: pytest.CaptureFixture[str]) -> None:
    # As committed at HEAD, so a pilot under way writing its history into the working tree moves nothing;
    # a copy without git (an unpacked release) is checked as it is.
    code = generated.main(["--check", "--rev", "HEAD"] if in_git() else ["--check"])
    assert code == 0, capsys.readouterr().out


def test_an_edited_table_is_named(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    for folder in ("benchmarks", "configs", "studies", "docs"):  # a copy: the real pages are never edited
        shutil.copytree(ROOT / folder, tmp_path / folder, ignore=shutil.ignore_patterns("__pycache__"))
    assert generated.main(["--root", str(tmp_path)]) == 0  # the copy's pages are now what its inputs give
    edited = generated.GENERATED[0].page
    page = tmp_path / edited
    text = page.read_text()
    number = re.search(r"\| (\d\.\d+) @", text)  # a table cell, "0.219 @ 14"
    assert number, f"{edited} has no table cell to edit"
    page.write_text(text[:number.start(1)] + "9" + text[number.start(1) + 1:])
    capsys.readouterr()

    assert generated.main(["--check", "--root", str(tmp_path)]) == 1
    lines = capsys.readouterr().out.splitlines()
    assert len(lines) == 1 and lines[0].startswith(f"{edited}: line "), lines
    assert generated.GENERATED[0].shown() in lines[0]  # it says how to regenerate the page
