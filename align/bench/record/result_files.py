"""Reading result files back, each verified before any number in it is used.

A result file is trusted when it parses, its checksum matches (:mod:`align.checksum`) and it sits at
the path its own content names (a result copied under another seed's name is not that seed's). The
runner also compares its identity (:mod:`align.bench.plan.specs`) with the one the config gives now;
``align report`` lists every file it cannot trust instead of leaving it out.
"""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

from align.bench.plan.layout import dataset_part, result_path
from align.bench.record.item_files import ItemsProblem, read_items
from align.checksum import problem as checksum_problem
from align.errors import AlignError

FIELDS = ("dataset", "model", "task", "metrics", "aligner", "image_encoder", "text_encoder", "seed")
_NAME = re.compile(r"__seed-?\d+\.json$")


class ResultProblem(AlignError):
    """A result file that cannot be used: ``unreadable`` (damaged, altered, not a result) or ``stale``
    (written by an older align, without a checksum)."""

    def __init__(self, message: str, kind: str = "unreadable") -> None:
        super().__init__(message)
        self.kind = kind


class UnreadableResults(AlignError):
    """Result files that cannot be read or trusted; ``lines`` has one line per file."""

    def __init__(self, problems: list[str]) -> None:
        self.lines = [f"{p}; not reported (rerun `align bench` into this folder to recompute it)" for p in problems]
        more = f" (and {len(problems) - 1} more result files)" if len(problems) > 1 else ""
        super().__init__(self.lines[0] + more)


def is_result_file(path: Path) -> bool:
    """Named like a result (``…__seed<k>.json``) and not a fitted aligner's sidecar."""
    return bool(_NAME.search(path.name)) and path.parent.name != "fitted"


def read_result(path: Path) -> dict[str, Any]:
    """The verified content of a result file, or a :class:`ResultProblem` naming it."""
    try:
        data = json.loads(Path(path).read_bytes().decode("utf-8"))
    except OSError as err:
        raise ResultProblem(f"{path}: cannot read ({err.strerror or err})") from None
    except (UnicodeDecodeError, ValueError):
        raise ResultProblem(f"{path}: not valid JSON (truncated or damaged)") from None
    except RecursionError:
        raise ResultProblem(f"{path}: JSON nested too deeply to be a result") from None
    if not isinstance(data, dict):
        raise ResultProblem(f"{path}: not a result (a JSON {type(data).__name__}, not an object)")
    missing = [field for field in FIELDS if field not in data]
    if missing:
        raise ResultProblem(f"{path}: not a result (no {missing[0]!r})")
    why = checksum_problem(data)
    if why == "no checksum":
        raise ResultProblem(f"{path}: no checksum (written by an older align), so it cannot be verified", "stale")
    if why is not None:
        raise ResultProblem(f"{path}: {why}")
    return data


def status(path: Path, identity: str) -> tuple[str, str]:
    """``("missing" | "ok" | "stale" | "unreadable", why)`` of the result at ``path`` for a run whose
    result there would have identity sha256 ``identity``."""
    if not Path(path).exists():
        return "missing", ""
    try:
        data = read_result(path)
    except ResultProblem as err:
        return err.kind, str(err)
    found = data.get("identity", {}).get("sha256") if isinstance(data.get("identity"), dict) else None
    if found != identity:
        return "stale", f"{path}: produced by other settings" if found else f"{path}: has no identity"
    return _items_status(path, data)


def _items_status(path: Path, data: dict[str, Any]) -> tuple[str, str]:
    """A scored result is current only with its per-item outputs, verified: one without them (an older
    align's) is stale, one whose items file is missing or damaged unreadable; both are recomputed."""
    if not data.get("metrics"):  # a task the aligner cannot do: no items to keep
        return "ok", ""
    if "items" not in data:
        return "stale", f"{path}: has no per-item outputs (written by an older align)"
    try:
        read_items(data, path)
    except ItemsProblem as err:
        return "unreadable", str(err)
    return "ok", ""


def result_location(root: Path, data: dict[str, Any]) -> Path:
    """Where under ``root`` the result ``data`` belongs (its fields name the path)."""
    shift = data.get("shift") or {}
    dataset = dataset_part(data["dataset"], data.get("label_set"), shift.get("eval"))
    return result_path(root, image_encoder=data["image_encoder"], text_encoder=data["text_encoder"],
                       aligner=data["aligner"], dataset=dataset, task=data["task"], seed=int(data["seed"]))


def _misplaced(root: Path, path: Path, data: dict[str, Any]) -> str | None:
    try:
        expected = result_location(root, data)
    except (TypeError, ValueError, AttributeError):
        return f"{path}: not a result (malformed fields)"
    if expected != path:
        return f"{path}: holds the result of {expected.relative_to(root)}, not of its own path (moved or copied?)"
    return None


def scan_results(root: Path) -> tuple[list[dict[str, Any]], list[str]]:
    """Every verified result under ``root``, and one line for each result file that could not be used."""
    results, problems = [], []
    for path in sorted(Path(root).rglob("*.json")):
        if not is_result_file(path):
            continue
        try:
            data = read_result(path)
        except ResultProblem as err:
            problems.append(str(err))
            continue
        misplaced = _misplaced(Path(root), path, data)
        if misplaced:
            problems.append(misplaced)
        else:
            results.append(data)
    return results, problems


def read_results(root: Path) -> list[dict[str, Any]]:
    """Every result under ``root``, each verified (:func:`scan_results`); a
    result file that cannot be read or trusted is an error naming it, never left out."""
    results, problems = scan_results(root)
    if problems:
        raise UnreadableResults(problems)
    return results
