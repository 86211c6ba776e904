"""CITATION.cff is valid Citation File Format 1.2.0 and cites the four method papers.

GitHub, Zenodo and reference managers read this file; an invalid one is ignored silently. The schema is
the official 1.2.0 one, vendored in tests/fixtures/cff (its README says why not cffconvert).
"""

from __future__ import annotations

import copy
import datetime
import json
from pathlib import Path
from typing import Any

import jsonschema
import pytest
import yaml

ROOT = Path(__file__).resolve().parents[2]
SCHEMA = json.loads((ROOT / "tests" / "fixtures" / "cff" / "schema-1.2.0.json").read_text(encoding="utf-8"))
METHOD_PAPERS = {"2210.01738", "2404.09632", "2302.00902", "2208.00475"}  # ASIF, VLAP, LQAE, Codebook-VLP


def as_cff_strings(value: Any) -> Any:
    """YAML reads 2026-12-06 as a date; the schema wants the string (its own note to tool implementers)."""
    if isinstance(value, dict):
        return {key: as_cff_strings(item) for key, item in value.items()}
    if isinstance(value, list):
        return [as_cff_strings(item) for item in value]
    if isinstance(value, datetime.date):
        return value.isoformat()
    return value


def citation() -> dict[str, Any]:
    return as_cff_strings(yaml.safe_load((ROOT / "CITATION.cff").read_text(encoding="utf-8")))


def schema_errors(document: dict[str, Any]) -> list[str]:
    validator = jsonschema.Draft7Validator(SCHEMA, format_checker=jsonschema.FormatChecker())
    return [f"{'/'.join(map(str, error.path))}: {error.message}" for error in validator.iter_errors(document)]


def test_citation_file_is_valid_cff_1_2_0() -> None:
    document = citation()
    assert document["cff-version"] == "1.2.0"
    assert schema_errors(document) == []


def drop(key: str):
    def edit(document: dict[str, Any]) -> None:
        del document[key]
    return edit


def set_value(key: str, value: Any):
    def edit(document: dict[str, Any]) -> None:
        document[key] = value
    return edit


def untitled_reference(document: dict[str, Any]) -> None:
    del document["references"][0]["title"]


@pytest.mark.parametrize("edit", [
    drop("authors"), drop("cff-version"), drop("message"), drop("title"),
    set_value("date-released", "2026-13-01"), set_value("cff-version", "1.1.0"),
    set_value("no-such-key", "x"), untitled_reference,
], ids=["no-authors", "no-cff-version", "no-message", "no-title", "bad-date", "old-version",
        "unknown-key", "untitled-reference"])
def test_schema_check_rejects_a_broken_copy(edit) -> None:
    document = copy.deepcopy(citation())
    edit(document)
    assert schema_errors(document), "the schema check let a broken CITATION.cff through"


def test_references_are_the_four_method_papers() -> None:
    urls = [reference["url"] for reference in citation()["references"]]
    assert {url.rsplit("/", 1)[-1] for url in urls} == METHOD_PAPERS
    assert all(reference["authors"] and reference["year"] for reference in citation()["references"])
