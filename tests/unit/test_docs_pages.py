"""The documentation site's reference pages follow the code they describe.

docs/cli.md must show every subcommand and option of the real parser, and docs/config.md every key the
config reader accepts (and no key it refuses): a page that lags behind the code tells users to write
what fails, or hides what exists. Every page under docs/ must be in mkdocs.yml's nav, and no link may
leave docs/ (mkdocs cannot follow it; `mkdocs build --strict` fails on it).
"""

from __future__ import annotations

import argparse
import re
from pathlib import Path

import pytest
import yaml

from align.bench.plan import config
from align.cli import build_parser

ROOT = Path(__file__).resolve().parents[2]
DOCS = ROOT / "docs"


def sections(page: str) -> dict[str, str]:
    """Heading text (without #s) to the text under it, up to the next heading of any level."""
    parts = re.split(r"^(#{1,6} .+)$", page, flags=re.M)
    return {parts[i].lstrip("#").strip(): parts[i + 1] for i in range(1, len(parts) - 1, 2)}


def subcommands(parser: argparse.ArgumentParser, prefix: str = "align") -> dict[str, argparse.ArgumentParser]:
    """``"align assets pull"`` to its parser, for every level of subcommands."""
    found = {}
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for name, sub in action.choices.items():
                found[f"{prefix} {name}"] = sub
                found.update(subcommands(sub, f"{prefix} {name}"))
    return found


def options(parser: argparse.ArgumentParser) -> list[str]:
    return [flag for action in parser._actions for flag in action.option_strings if flag.startswith("--")]


def test_cli_page_has_every_subcommand_and_option() -> None:
    page = sections((DOCS / "cli.md").read_text(encoding="utf-8"))
    commands = subcommands(build_parser())
    assert {"align bench", "align assets pull", "align report"} <= set(commands)  # the walk itself works
    for command, parser in commands.items():
        heading = f"`{command}`"
        assert heading in page, f"docs/cli.md has no section {heading}"
        missing = [flag for flag in options(parser) if flag not in page[heading]]
        assert not missing, f"docs/cli.md, {heading}: options {missing} are not on the page"


def test_cli_page_names_the_top_level_options() -> None:
    text = (DOCS / "cli.md").read_text(encoding="utf-8")
    assert all(flag in text for flag in options(build_parser())), options(build_parser())


def table_keys(text: str) -> set[str]:
    """First-column keys of the Markdown tables in ``text`` (rows like ``| `key` | ...``)."""
    return set(re.findall(r"^\| `([^`]+)` \|", text, flags=re.M))


@pytest.mark.parametrize(("heading", "keys"), [
    ("Top level", config.TOP_LEVEL_KEYS), ("Aligner entries", config.ALIGNER_KEYS), ("Sweeps", config.SWEEP_KEYS),
    ("Dataset entries", config.DATASET_KEYS), ("Selectors", config.SELECTOR_KEYS), ("Tasks", frozenset(config.TASKS)),
])
def test_config_page_lists_exactly_the_keys_the_reader_accepts(heading: str, keys: frozenset[str]) -> None:
    page = sections((DOCS / "config.md").read_text(encoding="utf-8"))
    assert heading in page, f"docs/config.md has no section {heading!r}"
    documented = table_keys(page[heading])
    assert not keys - documented, f"docs/config.md, {heading}: keys {sorted(keys - documented)} are not documented"
    assert not documented - keys, f"docs/config.md, {heading}: {sorted(documented - keys)} are not keys the reader accepts"


def nav_pages(node: object) -> set[str]:
    if isinstance(node, str):
        return {node} if node.endswith(".md") else set()
    if isinstance(node, dict):
        return set().union(*(nav_pages(value) for value in node.values()))
    if isinstance(node, list):
        return set().union(*(nav_pages(item) for item in node)) if node else set()
    return set()


def test_every_page_is_in_the_nav() -> None:
    site = yaml.safe_load((ROOT / "mkdocs.yml").read_text(encoding="utf-8"))  # no !!python tags in this file
    pages = {path.relative_to(DOCS).as_posix() for path in DOCS.rglob("*.md")}
    listed = nav_pages(site["nav"])
    assert not pages - listed, f"mkdocs.yml's nav leaves out {sorted(pages - listed)}"
    assert not listed - pages, f"mkdocs.yml's nav names missing pages {sorted(listed - pages)}"


LINK = re.compile(r"\]\(([^)\s]+)\)")


def test_no_link_leaves_the_docs_folder() -> None:
    """Repository files outside docs/ are named as code text, never linked relatively."""
    leaving = []
    for path in DOCS.rglob("*.md"):
        for target in LINK.findall(path.read_text(encoding="utf-8")):
            if re.match(r"^[a-z][a-z0-9+.-]*:", target) or target.startswith("#"):
                continue  # absolute URLs and in-page anchors
            resolved = (path.parent / target.split("#")[0]).resolve()
            if DOCS.resolve() not in resolved.parents:
                leaving.append(f"{path.relative_to(ROOT)}: {target}")
    assert not leaving, leaving
