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


def copy_repository(dest: Path) -> None:
    """What the generated pages and leaderboard blocks are made from and written into (a copy: the real pages
    are never edited)."""
    for folder in ("benchmarks", "configs", "studies", "docs"):
        shutil.copytree(ROOT / folder, dest / folder, ignore=shutil.ignore_patterns("__pycache__"))
    shutil.copy2(ROOT / "README.md", dest / "README.md")


def test_an_edited_table_is_named(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    copy_repository(tmp_path)
    assert generated.main(["--root", str(tmp_path)]) == 0  # the copy's pages are now what its inputs give
    edited = generated.GENERATED[0].page
    page = tmp_path / edited
    text = page.read_text()
    number = re.search(r"\| (\d\.\d+) @", text)  # a table cell, "0.219 @ 14"
    assert number, f"{edited} has no table cell to edit"
    page.write_text(text[:number.start(1)] + "9" + text[number.start(1) + 1:])
    capsys.readouterr()

    assert generated.main(["--check", "--root", str(tmp_path)]) == 1
    lines = [line for line in capsys.readouterr().out.splitlines() if ": not checked, " not in line]
    assert len(lines) == 1 and lines[0].startswith(f"{edited}: line "), lines
    assert generated.GENERATED[0].shown() in lines[0]  # it says how to regenerate the page


def test_an_edited_leaderboard_cell_and_a_changed_result_are_named(tmp_path: Path) -> None:
    """The README's leaderboard is rebuilt by ``align report`` from its committed result files: an edited cell
    fails the check, and so does a result file edited after ``align bench`` sealed it (the report refuses it)."""
    copy_repository(tmp_path)
    board = next(b for b in generated.LEADERBOARDS if b.marker == "bench")
    assert generated.check(tmp_path, entries=(), marked=(board,)) == ([], [])
    readme = tmp_path / board.page
    text = readme.read_text()
    cell = re.search(r"\| (0\.\d{3}) \[", generated.block_between(text, board.marker))  # "| 0.817 [0.794, 0.842]"
    assert cell, "the leaderboard block has no cell to edit"
    start = text.index(generated.block_between(text, board.marker)) + cell.start(1)
    readme.write_text(text[:start] + "0.999" + text[start + 5:])
    problems, _ = generated.check(tmp_path, entries=(), marked=(board,))
    assert len(problems) == 1 and problems[0].startswith(f"{board.page} ({board.marker}): the block differs")

    readme.write_text(text)
    result = next((tmp_path / board.results).rglob("emoji__zeroshot_retrieval__seed0.json"))
    result.write_text(result.read_text().replace('"text_retrieval_recall@1": 0.', '"text_retrieval_recall@1": 0.9', 1))
    problems, _ = generated.check(tmp_path, entries=(), marked=(board,))
    assert len(problems) == 1 and "`align report" in problems[0] and "checksum mismatch" in problems[0], problems


def test_a_leaderboard_without_committed_results_is_named_unchecked(tmp_path: Path) -> None:
    board = generated.Leaderboard("README.md", "bench", "studies/leaderboards/nowhere")
    shutil.copy2(ROOT / "README.md", tmp_path / "README.md")
    problems, unchecked = generated.check(tmp_path, entries=(), marked=(board,))
    assert problems == [] and len(unchecked) == 1 and "studies/leaderboards/nowhere/ is not committed" in unchecked[0]


def test_an_edited_study_block_is_named(tmp_path: Path) -> None:
    """The README's lines of a study are what its ``--report --summary`` writes from the committed runs."""
    copy_repository(tmp_path)
    entry = next(b for b in generated.BLOCKS if b.marker == "codebook-vlp-study")
    assert generated.check(tmp_path, entries=(), marked=(entry,)) == ([], [])
    readme = tmp_path / entry.page
    text = readme.read_text()
    body = generated.block_between(text, entry.marker)
    assert body and "Codebook-VLP" in body
    readme.write_text(text.replace(body, body.replace("24 epochs", "48 epochs"), 1))
    problems, _ = generated.check(tmp_path, entries=(), marked=(entry,))
    assert len(problems) == 1 and problems[0].startswith(f"{entry.page} ({entry.marker}): the block differs")
