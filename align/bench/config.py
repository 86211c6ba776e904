"""Benchmark configuration: a YAML file parsed into typed, validated dataclasses.

Every mistake in a config (unknown key, wrong type, unknown task) is a one-line error that names
the file and the key, before any model is loaded.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from align.bench.sweep import Selector, SweepSpec, is_metric, selector_for, task_metrics
from align.errors import AlignError, BadInputError

TASKS = ("zeroshot_classification", "zeroshot_retrieval", "linear_probe", "fewshot", "captioning")


@dataclass(frozen=True)
class AlignerSpec:
    name: str
    hparams: dict[str, Any] = field(default_factory=dict)
    label: str = ""
    sweep: SweepSpec | None = None  # a grid chosen on a validation part of each fit split (align/bench/sweep.py)

    @property
    def display(self) -> str:
        return self.label or self.name


@dataclass(frozen=True)
class DatasetSpec:
    name: str
    fit: str  # split whose image-caption pairs fit the aligner (and train probes)
    eval: str  # disjoint split every task is scored on
    tasks: tuple[str, ...]
    label_set: str | None = None  # extra label set for classification tasks (e.g. "subcategory")
    reducer: str = "mean"  # zero-shot template reducer: "mean" (CLIP) or "max" (ASIF)
    fewshot_k: int = 5
    recall_k: tuple[int, ...] = (1, 5, 10)
    options: dict[str, Any] = field(default_factory=dict)  # dataset factory arguments (e.g. skip_bad)
    select: Selector | None = None  # what sweeps select on here, unless the sweep names it itself


@dataclass(frozen=True)
class BenchConfig:
    name: str
    image_encoders: tuple[str, ...]
    text_encoders: tuple[str, ...]
    aligners: tuple[AlignerSpec, ...]
    datasets: tuple[DatasetSpec, ...]
    seeds: tuple[int, ...] = (0,)
    source: str = ""
    raw: dict[str, Any] = field(default_factory=dict, compare=False)


def _fail(source: str, where: str, problem: str) -> BadInputError:
    return BadInputError(f"{source}: {where}: {problem}")


def _take(mapping: dict[str, Any], allowed: set[str], source: str, where: str) -> None:
    unknown = sorted(set(mapping) - allowed)
    if unknown:
        raise _fail(source, where, f"unknown key {unknown[0]!r} (allowed: {', '.join(sorted(allowed))})")


def _str_list(value: Any, source: str, where: str) -> tuple[str, ...]:
    if isinstance(value, str):
        value = [value]
    if not isinstance(value, list) or not value or not all(isinstance(v, str) and v for v in value):
        raise _fail(source, where, "expected a non-empty list of names")
    return tuple(value)


def _aligner(entry: Any, source: str, where: str) -> AlignerSpec:
    if isinstance(entry, str) and entry.endswith((".yaml", ".yml")):
        return _aligner_file(entry, source, where)
    if isinstance(entry, str):
        return AlignerSpec(entry)
    if not isinstance(entry, dict) or "name" not in entry:
        raise _fail(source, where, "expected a name or a mapping with 'name'")
    _take(entry, {"name", "hparams", "label", "sweep"}, source, where)
    hparams = entry.get("hparams") or {}
    if not isinstance(hparams, dict):
        raise _fail(source, f"{where}.hparams", "expected a mapping")
    sweep = None
    if entry.get("sweep") is not None:
        sweep = _sweep(entry["sweep"], str(entry["name"]), dict(hparams), source, f"{where}.sweep")
    return AlignerSpec(str(entry["name"]), dict(hparams), str(entry.get("label") or ""), sweep)


def _sweep(entry: Any, name: str, hparams: dict[str, Any], source: str, where: str) -> SweepSpec:
    """``{grid: {hparam: [values]}, select: {task, metric}, validation: fraction}``; every grid point is
    passed through the aligner's constructor now, so a bad value fails here and not mid-run."""
    if not isinstance(entry, dict):
        raise _fail(source, where, "expected a mapping with 'grid' (and optionally 'select', 'validation')")
    _take(entry, {"grid", "select", "validation"}, source, where)
    grid = entry.get("grid")
    if not isinstance(grid, dict) or not grid:
        raise _fail(source, f"{where}.grid", "expected a non-empty mapping of hyper-parameter: [values]")
    known = _aligner_hparams(name, hparams, source, where)
    for key, values in grid.items():
        if key not in known:
            raise _fail(source, f"{where}.grid.{key}",
                        f"{name} has no hyper-parameter {key!r} (has: {', '.join(sorted(known))})")
        if not isinstance(values, list) or not values:
            raise _fail(source, f"{where}.grid.{key}", "expected a non-empty list of values")
        if not all(v is None or isinstance(v, (str, int, float, bool)) for v in values):
            raise _fail(source, f"{where}.grid.{key}", "values must be numbers, strings, booleans or null")
        if len({repr(v) for v in values}) != len(values):
            raise _fail(source, f"{where}.grid.{key}", "repeats a value")
    validation = entry.get("validation", 0.2)
    if isinstance(validation, bool) or not isinstance(validation, (int, float)) or not 0 < validation < 1:
        raise _fail(source, f"{where}.validation", f"expected a fraction strictly between 0 and 1, got {validation!r}")
    select = None if entry.get("select") is None else _selector(entry["select"], None, source, f"{where}.select")
    sweep = SweepSpec(tuple((str(k), tuple(v)) for k, v in grid.items()), float(validation), select)
    for point in sweep.points():
        _aligner_hparams(name, {**hparams, **point}, source, f"{where}.grid")
    return sweep


def _aligner_hparams(name: str, hparams: dict[str, Any], source: str, where: str) -> set[str]:
    """The hyper-parameter names aligner ``name`` records, building it with ``hparams`` (cheap: only checked)."""
    from align.registry import ALIGNERS

    try:
        return set(ALIGNERS.create(name, **hparams).hparams)
    except (AlignError, TypeError, ValueError) as err:
        shown = ", ".join(f"{k}={v!r}" for k, v in hparams.items())
        raise _fail(source, where, f"{name}({shown}): {err}") from None


def _selector(entry: Any, recall_k: tuple[int, ...] | None, source: str, where: str) -> Selector:
    """``{task, metric}``; ``recall_k`` None accepts any ``@k`` (a sweep's selector, checked per dataset later)."""
    if not isinstance(entry, dict) or set(entry) != {"task", "metric"}:
        raise _fail(source, where, "expected a mapping with exactly 'task' and 'metric'")
    task, metric = entry["task"], entry["metric"]
    if task not in TASKS:
        raise _fail(source, f"{where}.task", f"unknown task {task!r} (known: {', '.join(TASKS)})")
    known = task_metrics(task, recall_k or (1, 5, 10))
    if not isinstance(metric, str) or not (metric in known if recall_k else is_metric(task, metric)):
        raise _fail(source, f"{where}.metric", f"{task} reports no metric {metric!r} (reports: {', '.join(known)})")
    return Selector(task, metric)


def _aligner_file(entry: str, source: str, where: str) -> AlignerSpec:
    """An aligner entry kept in its own YAML file (``configs/aligners/*.yaml``), found relative to the
    working directory or to the benchmark config."""
    candidates = [Path(entry), Path(source).parent / entry]
    path = next((c for c in candidates if c.is_file()), None)
    if path is None:
        raise _fail(source, where, f"aligner config {entry!r} not found")
    try:
        loaded = yaml.safe_load(path.read_text())
    except yaml.YAMLError:
        raise _fail(source, where, f"{path} is not valid YAML") from None
    return _aligner(loaded, str(path), "top level")


def _dataset(entry: Any, source: str, where: str) -> DatasetSpec:
    if not isinstance(entry, dict):
        raise _fail(source, where, "expected a mapping with name, fit, eval and tasks")
    _take(entry, {"name", "fit", "eval", "tasks", "label_set", "reducer", "fewshot_k", "recall_k", "options",
                  "select"}, source, where)
    for required in ("name", "fit", "eval", "tasks"):
        if required not in entry:
            raise _fail(source, where, f"missing {required!r}")
    tasks = _str_list(entry["tasks"], source, f"{where}.tasks")
    for task in tasks:
        if task not in TASKS:
            raise _fail(source, f"{where}.tasks", f"unknown task {task!r} (known: {', '.join(TASKS)})")
    if entry["fit"] == entry["eval"]:
        raise _fail(source, where, f"fit and eval are the same split {entry['fit']!r}; scores must be held out")
    reducer = entry.get("reducer", "mean")
    if reducer not in ("mean", "max"):
        raise _fail(source, f"{where}.reducer", f"{reducer!r} is not 'mean' or 'max'")
    recall_k = tuple(int(k) for k in entry.get("recall_k", (1, 5, 10)))
    select = None
    if entry.get("select") is not None:
        select = _selector(entry["select"], recall_k, source, f"{where}.select")
        if select.task not in tasks:
            raise _fail(source, f"{where}.select.task", f"{select.task!r} is not among this entry's tasks")
    return DatasetSpec(
        name=str(entry["name"]), fit=str(entry["fit"]), eval=str(entry["eval"]), tasks=tasks,
        label_set=entry.get("label_set"), reducer=reducer, fewshot_k=int(entry.get("fewshot_k", 5)),
        recall_k=recall_k, options=_options(entry.get("options"), source, f"{where}.options"), select=select,
    )


def _check_selectors(aligners: tuple[AlignerSpec, ...], datasets: tuple[DatasetSpec, ...], source: str) -> None:
    """A sweep's own selector must make sense on every dataset entry (else give the entries one each)."""
    for i, aligner in enumerate(aligners):
        if aligner.sweep is None or aligner.sweep.select is None:
            continue
        for j, spec in enumerate(datasets):
            selector = selector_for(aligner.sweep, spec)
            if selector.task not in spec.tasks or selector.metric not in task_metrics(selector.task, spec.recall_k):
                raise _fail(source, f"aligners[{i}].sweep.select",
                            f"{selector.task} {selector.metric} is not scored by datasets[{j}] "
                            f"(tasks: {', '.join(spec.tasks)}); give each dataset entry its own 'select' instead")


def _options(value: Any, source: str, where: str) -> dict[str, Any]:
    if value is None:
        return {}
    if not isinstance(value, dict):
        raise _fail(source, where, "expected a mapping of dataset arguments")
    return dict(value)


def load_config(path: str | Path) -> BenchConfig:
    """Parse and validate a benchmark YAML file."""
    path = Path(path)
    source = str(path)
    if not path.is_file():
        raise BadInputError(f"{source}: no such config file")
    try:
        raw = yaml.safe_load(path.read_text())
    except yaml.YAMLError as err:
        mark = getattr(err, "problem_mark", None)
        where = f"line {mark.line + 1}" if mark else "YAML"
        raise BadInputError(f"{source}: {where}: not valid YAML") from None
    if not isinstance(raw, dict):
        raise BadInputError(f"{source}: expected a mapping at the top level")
    _take(raw, {"name", "seeds", "image_encoders", "text_encoders", "aligners", "datasets"}, source, "top level")
    for required in ("image_encoders", "text_encoders", "aligners", "datasets"):
        if required not in raw:
            raise _fail(source, "top level", f"missing {required!r}")
    if not isinstance(raw["aligners"], list) or not isinstance(raw["datasets"], list):
        raise _fail(source, "top level", "'aligners' and 'datasets' must be lists")
    seeds = raw.get("seeds", [0])
    if not isinstance(seeds, list) or not all(isinstance(s, int) for s in seeds) or not seeds:
        raise _fail(source, "seeds", "expected a non-empty list of integers")
    aligners = tuple(_aligner(a, source, f"aligners[{i}]") for i, a in enumerate(raw["aligners"]))
    datasets = tuple(_dataset(d, source, f"datasets[{i}]") for i, d in enumerate(raw["datasets"]))
    _check_selectors(aligners, datasets, source)
    return BenchConfig(
        name=str(raw.get("name") or path.stem),
        image_encoders=_str_list(raw["image_encoders"], source, "image_encoders"),
        text_encoders=_str_list(raw["text_encoders"], source, "text_encoders"),
        aligners=aligners,
        datasets=datasets,
        seeds=tuple(seeds),
        source=source,
        raw=raw,
    )
