"""align/bench is grouped by job, and its rooms point one way: plan <- record <- execute <- runner, and
record <- report (a report never executes anything). No function there is longer than 80 lines, and
every field of a spec that is left out of its identity says so on the field."""

from __future__ import annotations

import ast
import dataclasses
from pathlib import Path

import pytest

from align.bench.plan.specs import AlignerChoice, EncoderSpec, FitData, FitSpec, ResultSpec

BENCH = Path(__file__).resolve().parents[2] / "align" / "bench"
# what each room may import from align.bench (besides itself)
ALLOWED = {"plan": set(), "record": {"plan"}, "execute": {"plan", "record"}, "report": {"plan", "record"}}
MAX_LINES = 80


def _bench_imports(path: Path) -> set[str]:
    """The align.bench rooms a file imports from, anywhere in the file (function-level imports too)."""
    rooms = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.ImportFrom) and node.module and node.module.startswith("align.bench."):
            rooms.add(node.module.split(".")[2])
        elif isinstance(node, ast.Import):
            rooms |= {a.name.split(".")[2] for a in node.names if a.name.startswith("align.bench.")}
    return rooms


@pytest.mark.parametrize("room", sorted(ALLOWED))
def test_each_room_imports_only_the_rooms_below_it(room: str) -> None:
    for path in sorted((BENCH / room).glob("*.py")):
        wrong = _bench_imports(path) - ALLOWED[room] - {room}
        assert not wrong, f"{path.relative_to(BENCH.parent.parent)} imports align.bench.{sorted(wrong)[0]}"


def test_no_function_in_bench_is_longer_than_80_lines() -> None:
    long = []
    for path in sorted(BENCH.rglob("*.py")):
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
                lines = node.end_lineno - node.lineno + 1
                if lines > MAX_LINES:
                    long.append(f"{path.relative_to(BENCH)}:{node.name} ({lines} lines)")
    assert not long, long


def _spec() -> ResultSpec:
    fit = FitSpec(AlignerChoice("ridge", "1", {"alpha": 1.0}, label="my-ridge"), 0, EncoderSpec("toy:cnn", None),
                  EncoderSpec("toy:text", "ab"), "toy:text", FitData("digits", "train", {}, "1", "1", {}))
    return ResultSpec(fit, "fewshot", {"fewshot_k": 5}, "1", "test", None)


def test_a_field_left_out_of_the_identity_says_so_on_the_field() -> None:
    """Every spec field either reaches the identity parts or is marked ``naming_only``; the label names
    folders only: two fits that differ in it alone have one identity and different paths."""
    spec = _spec()
    for value, part in ((spec.fit.aligner, spec.fit.aligner.part()), (spec.fit.image, spec.fit.image.part()),
                        (spec.fit.data, spec.fit.data.part())):
        for field in dataclasses.fields(value):
            reaches = field.name in part or (field.name == "sweep" and getattr(value, "sweep") is None)
            assert reaches != (field.metadata.get("identity") is False), f"{type(value).__name__}.{field.name}"
    relabelled = dataclasses.replace(spec.fit, aligner=dataclasses.replace(spec.fit.aligner, label="other"))
    assert relabelled.identity == spec.fit.identity
    assert relabelled.path(Path("r")) != spec.fit.path(Path("r"))
    assert dataclasses.replace(spec, fit=relabelled).sha256 == spec.sha256


def test_every_number_deciding_field_changes_the_identity() -> None:
    spec = _spec()
    changed = [
        dataclasses.replace(spec, task_options={"fewshot_k": 1}),
        dataclasses.replace(spec, eval_split="val"),
        dataclasses.replace(spec, fit=dataclasses.replace(spec.fit, seed=1)),
        dataclasses.replace(spec, fit=dataclasses.replace(spec.fit, image=EncoderSpec("toy:cnn", "other"))),
        dataclasses.replace(spec, fit=dataclasses.replace(spec.fit, aligner=AlignerChoice("ridge", "2", {"alpha": 1.0}))),
        dataclasses.replace(spec, fit=dataclasses.replace(spec.fit, data=FitData("digits", "train", {}, "2", "1", {}))),
    ]
    assert len({s.sha256 for s in changed} | {spec.sha256}) == len(changed) + 1
    # hyper-parameters that change no number (where a fit runs, its logging and checkpoints) are not identity
    quiet = AlignerChoice("ridge", "1", {"alpha": 1.0, "progress": True, "checkpoint_dir": "/tmp/x", "devices": 2})
    assert quiet.part() == AlignerChoice("ridge", "1", {"alpha": 1.0}).part()
