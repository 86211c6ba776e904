"""The release has one name: pyproject.toml, ``align --version``, CITATION.cff and CHANGELOG.md agree.

A citation or a bug report names a version; if these four drift apart, the name points nowhere.
"""

from __future__ import annotations

import re
import subprocess
import sys
import tomllib
from pathlib import Path

import pytest
import yaml

import align
from align.cli import main

ROOT = Path(__file__).resolve().parents[2]


def project_version() -> str:
    return tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))["project"]["version"]


def test_package_reports_the_project_version() -> None:
    assert align.__version__ == project_version()
    assert re.fullmatch(r"\d+\.\d+\.\d+", align.__version__), align.__version__


def test_version_flag_prints_name_and_version(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as stop:
        main(["--version"])
    assert stop.value.code == 0
    assert capsys.readouterr().out == f"align {project_version()}\n"


def test_version_flag_from_a_fresh_interpreter() -> None:
    """The installed entry point's route (python -m align), not only main() in this process."""
    done = subprocess.run([sys.executable, "-m", "align", "--version"], capture_output=True, text=True,
                          cwd=ROOT, check=False)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == f"align {project_version()}"


def changelog_sections() -> list[str]:
    return re.findall(r"^## \[([^\]]+)\]", (ROOT / "CHANGELOG.md").read_text(encoding="utf-8"), re.M)


def test_changelog_has_unreleased_then_this_version() -> None:
    sections = changelog_sections()
    assert sections[:2] == ["Unreleased", project_version()], sections


def test_changelog_and_citation_name_the_same_release() -> None:
    text = (ROOT / "CHANGELOG.md").read_text(encoding="utf-8")
    dated = re.search(rf"^## \[{re.escape(project_version())}\] - (\d{{4}}-\d{{2}}-\d{{2}})$", text, re.M)
    assert dated, "CHANGELOG.md: the release heading needs ' - YYYY-MM-DD'"
    citation = yaml.safe_load((ROOT / "CITATION.cff").read_text(encoding="utf-8"))
    assert str(citation["version"]) == project_version()
    assert str(citation["date-released"]) == dated.group(1)

