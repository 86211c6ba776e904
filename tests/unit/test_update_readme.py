"""``benchmarks/update_readme.py``: results copied between the README's markers; a figure whose results file
is missing keeps its current text, so one re-run study can be copied in alone."""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path
from types import ModuleType

import pytest

BENCHMARKS = Path(__file__).resolve().parents[2] / "benchmarks"


def load_updater(monkeypatch: pytest.MonkeyPatch) -> ModuleType:
    monkeypatch.syspath_prepend(str(BENCHMARKS))  # it imports benchmarks/_common.py as `_common`
    spec = importlib.util.spec_from_file_location("update_readme_under_test", BENCHMARKS / "update_readme.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module
    spec.loader.exec_module(module)
    return module


def test_missing_results_keep_their_figure_and_present_ones_replace_it(tmp_path, monkeypatch) -> None:
    updater = load_updater(monkeypatch)
    (first, first_heading, first_command), (second, _, second_command) = updater.FIGURES[:2]
    readme = tmp_path / "README.md"
    readme.write_text("# x\n\n<!-- figures:start -->\n"
                      f"### old heading one\n\n`{first_command}`:\n\nold table one\n\n"
                      f"### old heading two\n\n`{second_command}`:\n\nold table two\n"
                      "<!-- figures:end -->\ntail\n")
    results = tmp_path / "results"
    results.mkdir()
    (results / first).write_text("new table one\n")
    monkeypatch.setattr(updater, "README", readme)
    monkeypatch.setattr(sys, "argv", ["update_readme.py", "--results", str(results)])
    updater.main()
    text = readme.read_text()
    assert f"### {first_heading}\n\n`{first_command}`:\n\nnew table one" in text and "old table one" not in text
    assert f"### old heading two\n\n`{second_command}`:\n\nold table two" in text  # kept as it was
    assert text.index("new table one") < text.index("old table two") and text.endswith("<!-- figures:end -->\ntail\n")


def test_no_results_at_all_leave_the_readme_untouched(tmp_path, monkeypatch) -> None:
    updater = load_updater(monkeypatch)
    readme = tmp_path / "README.md"
    original = "<!-- figures:start -->\n### a\n\n`cmd`:\n\nbody\n<!-- figures:end -->\n"
    readme.write_text(original)
    monkeypatch.setattr(updater, "README", readme)
    monkeypatch.setattr(sys, "argv", ["update_readme.py", "--results", str(tmp_path / "none")])
    updater.main()
    assert readme.read_text() == original
