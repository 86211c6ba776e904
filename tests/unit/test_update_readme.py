"""``benchmarks/update_readme.py``: results copied between the markers of README.md and the docs pages, each
block into the file that holds it; a figure whose results file is missing keeps its current text, so one
re-run study can be copied in alone."""

from __future__ import annotations

import importlib.util
import re
import sys
from pathlib import Path
from types import ModuleType

import pytest

ROOT = Path(__file__).resolve().parents[2]
BENCHMARKS = ROOT / "benchmarks"


def load_updater(monkeypatch: pytest.MonkeyPatch) -> ModuleType:
    monkeypatch.syspath_prepend(str(BENCHMARKS))  # it imports benchmarks/_common.py as `_common`
    spec = importlib.util.spec_from_file_location("update_readme_under_test", BENCHMARKS / "update_readme.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module
    spec.loader.exec_module(module)
    return module


def run(updater: ModuleType, monkeypatch: pytest.MonkeyPatch, root: Path, results: Path) -> None:
    monkeypatch.setattr(updater, "ROOT", root)
    monkeypatch.setattr(sys, "argv", ["update_readme.py", "--results", str(results)])
    updater.main()


def write(path: Path, text: str) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)
    return path


def block(marker: str, body: str) -> str:
    return f"<!-- {marker}:start -->\n{body}\n<!-- {marker}:end -->\n"


def test_missing_results_keep_their_figure_and_present_ones_replace_it(tmp_path, monkeypatch) -> None:
    updater = load_updater(monkeypatch)
    (first, first_heading, first_command), (second, _, second_command) = updater.FIGURES[:2]
    page = write(tmp_path / updater.FIGURES_PAGE,
                 "# x\n\n<!-- figures:start -->\n"
                 f"### old heading one\n\n`{first_command}`:\n\nold table one\n\n"
                 f"### old heading two\n\n`{second_command}`:\n\nold table two\n"
                 "<!-- figures:end -->\ntail\n")
    write(tmp_path / "results" / first, "new table one\n")
    run(updater, monkeypatch, tmp_path, tmp_path / "results")
    text = page.read_text()
    assert f"### {first_heading}\n\n`{first_command}`:\n\nnew table one" in text and "old table one" not in text
    assert f"### old heading two\n\n`{second_command}`:\n\nold table two" in text  # kept as it was
    assert text.index("new table one") < text.index("old table two") and text.endswith("<!-- figures:end -->\ntail\n")


def test_each_leaderboard_goes_into_the_file_that_holds_its_marker(tmp_path, monkeypatch) -> None:
    updater = load_updater(monkeypatch)
    files = {name for _, name, _ in updater.LEADERBOARDS}
    assert len(files) > 1  # the table really spreads them over several files
    for name in files:
        write(tmp_path / name, f"# {name}\n\n" + "".join(block(marker, f"old {marker}")
                                                       for marker, where, _ in updater.LEADERBOARDS if where == name))
    (new_marker, new_file, new_folder), (old_marker, old_file, _) = updater.LEADERBOARDS[-1], updater.LEADERBOARDS[0]
    write(tmp_path / "results" / new_folder / "leaderboard.md", f"new {new_marker}\n")
    run(updater, monkeypatch, tmp_path, tmp_path / "results")
    assert block(new_marker, f"new {new_marker}") in (tmp_path / new_file).read_text()
    assert block(old_marker, f"old {old_marker}") in (tmp_path / old_file).read_text()  # no results: kept


def test_a_file_without_its_marker_is_named(tmp_path, monkeypatch) -> None:
    updater = load_updater(monkeypatch)
    marker, name, folder = updater.LEADERBOARDS[-1]
    write(tmp_path / name, "# no markers here\n")
    write(tmp_path / "results" / folder / "leaderboard.md", "new\n")
    with pytest.raises(SystemExit, match=re.escape(f"{name} has no <!-- {marker}:start/end --> markers")):
        run(updater, monkeypatch, tmp_path, tmp_path / "results")


def test_no_results_at_all_leave_every_file_untouched(tmp_path, monkeypatch) -> None:
    updater = load_updater(monkeypatch)
    originals = {name: f"# {name}\n" + block(marker, "body") for marker, name, _ in updater.LEADERBOARDS}
    originals[updater.FIGURES_PAGE] = "<!-- figures:start -->\n### a\n\n`cmd`:\n\nbody\n<!-- figures:end -->\n"
    for name, text in originals.items():
        write(tmp_path / name, text)
    run(updater, monkeypatch, tmp_path, tmp_path / "none")
    assert {name: (tmp_path / name).read_text() for name in originals} == originals


def test_the_repository_holds_each_marker_once_where_the_table_says(monkeypatch) -> None:
    """README.md and the pages keep the blocks the updater writes, and the figure page has a block for every
    figure command (so a missing results file keeps a table rather than dropping it)."""
    module = load_updater(monkeypatch)
    places = [(marker, name) for marker, name, _ in module.LEADERBOARDS] + [("figures", module.FIGURES_PAGE)]
    for marker, name in places:
        for other in {n for _, n in places} | {"README.md"}:
            count = (ROOT / other).read_text().count(f"<!-- {marker}:start -->")
            assert count == (other == name), f"{other} holds <!-- {marker}:start --> {count} times"
    page = module.current_figures((ROOT / module.FIGURES_PAGE).read_text())
    assert [command for _, _, command in module.FIGURES if command not in page] == []


def test_a_copied_leaderboard_takes_its_result_files_along_and_replaces_the_old_snapshot(
        tmp_path, monkeypatch) -> None:
    updater = load_updater(monkeypatch)
    marker, name, folder = updater.LEADERBOARDS[-1]
    write(tmp_path / name, f"# {name}\n" + block(marker, "old"))
    results = tmp_path / "results" / folder
    write(results / "leaderboard.md", "new\n")
    write(results / "enc" / "ridge" / "emoji__zeroshot_retrieval__seed0.json", "{}")
    write(results / "enc" / "ridge" / "emoji__zeroshot_retrieval__seed0.items.safetensors", "items")
    write(results / "enc" / "ridge" / "curves" / "fit" / "metrics.csv", "epoch\n")  # not read by align report
    stale = write(tmp_path / updater.SNAPSHOTS / folder / "enc" / "gone" / "old__seed0.json", "{}")
    run(updater, monkeypatch, tmp_path, tmp_path / "results")
    snapshot = tmp_path / updater.SNAPSHOTS / folder
    run_name = "enc/ridge/emoji__zeroshot_retrieval__seed0"
    assert sorted(str(p.relative_to(snapshot)) for p in snapshot.rglob("*") if p.is_file()) == [
        f"{run_name}.items.safetensors", f"{run_name}.json"]
    assert not stale.exists() and not any(p.name.startswith(".") for p in snapshot.parent.iterdir())
