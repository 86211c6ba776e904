"""Benchmark configuration: a YAML file parsed into typed, validated dataclasses.

Every mistake in a config (unknown key, wrong type, unknown task) is a one-line error that names
the file and the key, before any model is loaded, including options only used later: each aligner is
built once with its hyper-parameters, dataset options are checked against the dataset's factory, task
options must be positive integers, and every name must be registered. The file itself is read as
plain, bounded YAML (:mod:`align.bench.plan.yaml_file`).

``precision: bfloat16`` at the top level runs every encoder of the file in bfloat16 by naming it
``<encoder>@bfloat16`` (one encoder alone: write that name in its list). The suffix keys features and
results apart from float32 ones, whose names, caches and results are unchanged (:mod:`align.precision`).
``precision: auto`` (never the default) is resolved once, here, to bfloat16 where the CPU that computes
the features has native bfloat16 units, else float32; one line on stderr says which and why, and the
config (as results record it) and every encoder name then hold the resolved precision, exactly as if
the file had said it.
"""

from __future__ import annotations

import typing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from align.bench.plan.sweeps import Selector, SweepSpec, is_metric, selector_for, task_metrics
from align.bench.plan.yaml_file import read_yaml
from align.errors import AlignError, BadInputError

TASKS = ("zeroshot_classification", "zeroshot_retrieval", "linear_probe", "fewshot", "captioning",
         "code_statistics", "visual_arithmetic", "attribute_questions")

# The keys each level of a config may hold, named once: the reader refuses any other, and the docs'
# config reference is checked against these sets (tests/unit/test_docs_pages.py).
TOP_LEVEL_KEYS = frozenset({"name", "seeds", "precision", "image_encoders", "text_encoders", "aligners", "datasets"})
ALIGNER_KEYS = frozenset({"name", "hparams", "label", "sweep", "optional"})
SWEEP_KEYS = frozenset({"grid", "select", "validation"})
DATASET_KEYS = frozenset({"name", "fit", "eval", "tasks", "label_set", "reducer", "fewshot_k", "recall_k", "options",
                          "select", "eval_dataset"})
SELECTOR_KEYS = frozenset({"task", "metric"})


@dataclass(frozen=True)
class AlignerSpec:
    name: str
    hparams: dict[str, Any] = field(default_factory=dict)
    label: str = ""
    sweep: SweepSpec | None = None  # a grid chosen on a validation part of each fit split (align/bench/plan/sweeps.py)
    optional: bool = False  # skipped in one line where its own encoders' weights are not on the machine

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
    eval_dataset: str | None = None  # score on this dataset's eval split instead (a shifted evaluation)

    @property
    def shift(self) -> dict[str, str] | None:
        """``{"fit": dataset, "eval": eval_dataset}`` when the entry is scored on another dataset, else None."""
        return None if self.eval_dataset is None else {"fit": self.name, "eval": self.eval_dataset}


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


def _take(mapping: dict[str, Any], allowed: frozenset[str], source: str, where: str) -> None:
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
    """An aligner entry, built once with its hyper-parameters so a bad one fails here, naming the key."""
    if isinstance(entry, str) and entry.endswith((".yaml", ".yml")):
        return _aligner_file(entry, source, where)
    if isinstance(entry, str):
        entry = {"name": entry}
    if not isinstance(entry, dict) or "name" not in entry:
        raise _fail(source, where, "expected a name or a mapping with 'name'")
    _take(entry, ALIGNER_KEYS, source, where)
    name = _name(entry["name"], source, f"{where}.name")
    _known("ALIGNERS", name, source, f"{where}.name")
    hparams = entry.get("hparams") or {}
    if not isinstance(hparams, dict):
        raise _fail(source, f"{where}.hparams", "expected a mapping")
    _aligner_hparams(name, dict(hparams), source, f"{where}.hparams")
    label = entry.get("label") or ""
    if not isinstance(label, str):
        raise _fail(source, f"{where}.label", f"expected a string, got {label!r}")
    sweep = None
    if entry.get("sweep") is not None:
        sweep = _sweep(entry["sweep"], name, dict(hparams), source, f"{where}.sweep")
    optional = _optional(entry.get("optional", False), name, dict(hparams), source, f"{where}.optional")
    return AlignerSpec(name, dict(hparams), label, sweep, optional)


def _optional(value: Any, name: str, hparams: dict[str, Any], source: str, where: str) -> bool:
    """``optional: true`` lets a run skip, in one line, an aligner whose own encoders (a pretrained CLIP's
    towers) cannot be built on this machine; an aligner on the config's encoders has nothing to skip for."""
    from align.registry import ALIGNERS

    if not isinstance(value, bool):
        raise _fail(source, where, f"expected true or false, got {value!r}")
    if value and ALIGNERS.create(name, **hparams).own_encoders is None:
        raise _fail(source, where, f"{name} runs on the config's encoders, which every run needs; only an aligner "
                    "with its own encoders (clip) can be optional")
    return value


def _name(value: Any, source: str, where: str) -> str:
    if not isinstance(value, str) or not value.strip():
        raise _fail(source, where, f"expected a non-empty string, got {value!r}")
    return value


def _known(registry: str, name: str, source: str, where: str) -> None:
    """A one-line error naming the key if ``name`` is not registered in ``align.registry.<registry>``."""
    import align.registry

    try:
        getattr(align.registry, registry).meta(name)
    except AlignError as err:
        raise _fail(source, where, str(err)) from None


MAX_SEED = 2**32 - 1  # numpy's and Lightning's seed range: a larger seed would be replaced silently
MAX_TASK_INT = 1_000_000  # fewshot_k, recall_k: far above any split's size, far below what overflows


def _positive_int(value: Any, source: str, where: str, most: int = MAX_TASK_INT) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or not 1 <= value <= most:
        raise _fail(source, where, f"expected a positive integer up to {most}, got {value!r}")
    return value


def _sweep(entry: Any, name: str, hparams: dict[str, Any], source: str, where: str) -> SweepSpec:
    """``{grid: {hparam: [values]}, select: {task, metric}, validation: fraction}``; every grid point is
    passed through the aligner's constructor now, so a bad value fails here and not mid-run."""
    if not isinstance(entry, dict):
        raise _fail(source, where, "expected a mapping with 'grid' (and optionally 'select', 'validation')")
    _take(entry, SWEEP_KEYS, source, where)
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
    if not isinstance(entry, dict) or set(entry) != SELECTOR_KEYS:
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
    working directory, to the benchmark config, or to the folder holding the ``configs/`` folder the benchmark
    config is in (so ``configs/aligners/asif.yaml`` is found from any working directory: a checkout's config
    named by its full path, or the copy installed with align)."""
    roots = [folder.parent for folder in Path(source).parents if folder.name == "configs"]
    candidates = [Path(entry), Path(source).parent / entry, *(root / entry for root in roots)]
    path = next((c for c in candidates if c.is_file()), None)
    if path is None:
        raise _fail(source, where, f"aligner config {entry!r} not found")
    loaded = read_yaml(path, "aligner config")
    if not isinstance(loaded, dict):  # not a name, and never another file (which could name this one)
        raise _fail(source, where, f"{path}: expected a mapping with 'name' (and 'hparams', 'label', 'sweep', 'optional')")
    return _aligner(loaded, str(path), "top level")


def _dataset(entry: Any, source: str, where: str) -> DatasetSpec:
    if not isinstance(entry, dict):
        raise _fail(source, where, "expected a mapping with name, fit, eval and tasks")
    _take(entry, DATASET_KEYS, source, where)
    for required in ("name", "fit", "eval", "tasks"):
        if required not in entry:
            raise _fail(source, where, f"missing {required!r}")
    name = _name(entry["name"], source, f"{where}.name")
    _known("DATASETS", name, source, f"{where}.name")
    fit, eval_ = (_name(entry[key], source, f"{where}.{key}") for key in ("fit", "eval"))
    eval_dataset = _eval_dataset(entry.get("eval_dataset"), name, source, f"{where}.eval_dataset")
    tasks = _str_list(entry["tasks"], source, f"{where}.tasks")
    for task in tasks:
        if task not in TASKS:
            raise _fail(source, f"{where}.tasks", f"unknown task {task!r} (known: {', '.join(TASKS)})")
    if len(set(tasks)) != len(tasks):
        raise _fail(source, f"{where}.tasks", "repeats a task")
    _check_ground_truth(tasks, eval_dataset or name, source, f"{where}.tasks")
    label_set = entry.get("label_set")
    if label_set is not None:
        label_set = _name(label_set, source, f"{where}.label_set")
    if entry["fit"] == entry["eval"]:
        raise _fail(source, where, f"fit and eval are the same split {entry['fit']!r}; scores must be held out")
    _check_data_names(name, {"fit": fit, **({} if eval_dataset else {"eval": eval_})}, label_set, source, where)
    if eval_dataset is not None:  # a shifted entry's eval split is one of the eval dataset's
        _check_data_names(eval_dataset, {"eval": eval_}, None, source, where)
    reducer = entry.get("reducer", "mean")
    if reducer not in ("mean", "max"):
        raise _fail(source, f"{where}.reducer", f"{reducer!r} is not 'mean' or 'max'")
    recall_k = _recall_k(entry.get("recall_k", [1, 5, 10]), source, f"{where}.recall_k")
    fewshot_k = _positive_int(entry.get("fewshot_k", 5), source, f"{where}.fewshot_k")
    options = _options(entry.get("options"), name, source, f"{where}.options")
    select = None
    if entry.get("select") is not None:
        select = _selector(entry["select"], recall_k, source, f"{where}.select")
        if select.task not in tasks:
            raise _fail(source, f"{where}.select.task", f"{select.task!r} is not among this entry's tasks")
    return DatasetSpec(name=name, fit=fit, eval=eval_, tasks=tasks, label_set=label_set, reducer=reducer,
                       fewshot_k=fewshot_k, recall_k=recall_k, options=options, select=select,
                       eval_dataset=eval_dataset)


def _check_data_names(dataset: str, splits: dict[str, str], label_set: str | None, source: str, where: str) -> None:
    """Split names (``NAME`` or ``NAME@N``) and the label set checked against what a dataset class declares,
    before anything is built; a dataset made by a function is checked when it is built (the runner then
    names the entry)."""
    from align.data.base import Dataset
    from align.data.splits import unknown_label_set
    from align.data.subsample import parse_split
    from align.registry import DATASETS

    factory = DATASETS.factory(dataset)
    if not isinstance(factory, type):  # a factory function: the class it declares it returns
        try:
            factory = typing.get_type_hints(factory).get("return")
        except Exception:  # noqa: BLE001 (an annotation that does not resolve: checked when built)
            return
    if not (isinstance(factory, type) and issubclass(factory, Dataset)):
        return
    for key, split in splits.items():
        try:
            base, _ = parse_split(split)
        except BadInputError as err:
            raise _fail(source, f"{where}.{key}", str(err)) from None
        if factory.splits and base not in factory.splits:
            raise _fail(source, f"{where}.{key}", f"{dataset} has no split {base!r} (splits: {', '.join(factory.splits)})")
    if label_set is not None and factory.label_sets is not None and label_set not in factory.label_sets:
        raise _fail(source, f"{where}.label_set", unknown_label_set(dataset, label_set, tuple(factory.label_sets)))


def _check_ground_truth(tasks: tuple[str, ...], dataset: str, source: str, where: str) -> None:
    """A task scored on ground truth beyond labels and captions (visual arithmetic, attribute questions)
    needs a dataset that has it: the one the entry is scored on (its eval dataset when shifted)."""
    from align.bench.plan.tasks import truth_problem

    for task in tasks:
        problem = truth_problem(task, dataset)
        if problem is not None:
            raise _fail(source, where, problem)


def _eval_dataset(value: Any, name: str, source: str, where: str) -> str | None:
    """A registered dataset other than the entry's own, whose ``eval`` split is scored instead (e.g. fit
    on ``emoji`` = Google's style, score on ``emoji.twitter``). The entry's ``options`` build the fit
    dataset only; the eval dataset is built with its defaults. Its split must still differ from ``fit``:
    emoji halves are the same concepts in every style, so ``anchors`` in another style is not held out."""
    if value is None:
        return None
    eval_dataset = _name(value, source, where)
    _known("DATASETS", eval_dataset, source, where)
    from align.registry import DATASETS

    same_asset = DATASETS.meta(name).weights is not None and DATASETS.meta(name).weights == DATASETS.meta(
        eval_dataset).weights
    if eval_dataset == name or same_asset:  # e.g. emoji and emoji.google: one asset, so no shift
        raise _fail(source, where, f"{eval_dataset!r} is the same data as {name!r}; leave eval_dataset out")
    return eval_dataset


def _recall_k(value: Any, source: str, where: str) -> tuple[int, ...]:
    if isinstance(value, int) and not isinstance(value, bool):
        value = [value]
    if not isinstance(value, list) or not value:
        raise _fail(source, where, f"expected a non-empty list of positive integers, got {value!r}")
    ks = tuple(_positive_int(k, source, where) for k in value)
    if len(set(ks)) != len(ks):
        raise _fail(source, where, "repeats a value")
    return ks


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


def _options(value: Any, dataset: str, source: str, where: str) -> dict[str, Any]:
    """Dataset factory arguments, checked against the factory's signature (an unknown one is named here,
    not a TypeError when the dataset is built)."""
    import inspect

    from align.registry import DATASETS

    if value is None:
        return {}
    if not isinstance(value, dict):
        raise _fail(source, where, "expected a mapping of dataset arguments")
    try:
        params = inspect.signature(DATASETS.factory(dataset)).parameters
    except (TypeError, ValueError):  # a factory without a readable signature: it checks its arguments itself
        return dict(value)
    if any(p.kind is inspect.Parameter.VAR_KEYWORD for p in params.values()):
        return dict(value)
    takes = [n for n, p in params.items() if p.kind in (p.KEYWORD_ONLY, p.POSITIONAL_OR_KEYWORD)]
    for key in value:
        if key not in takes:
            raise _fail(source, f"{where}.{key}", f"{dataset} takes no option {key!r} "
                        f"(takes: {', '.join(takes) or 'none'})")
    return dict(value)


def _encoders(value: Any, registry: str, source: str, where: str, precision: str) -> tuple[str, ...]:
    """Registered encoder names, each carrying ``precision`` as a name suffix unless float32
    (``align.precision``: the suffix is what keys caches and results apart)."""
    from align.precision import with_precision

    names = _str_list(value, source, where)
    out = []
    for i, name in enumerate(names):
        try:
            name = with_precision(name, precision)
        except BadInputError as err:
            raise _fail(source, f"{where}[{i}]", str(err)) from None
        _known(registry, name, source, f"{where}[{i}]")
        out.append(name)
    return tuple(out)


def _precision(raw: dict[str, Any], source: str) -> str:
    """The top-level ``precision`` (default float32) every encoder of the run computes in.

    ``auto`` is resolved here, once, for the CPU (where the benchmark computes features), printed
    as one line on stderr, and written back into ``raw`` so the config each result records names
    the precision its numbers were computed in."""
    import sys

    from align.precision import AUTO, DEFAULT_PRECISION, PRECISIONS, REQUESTS, auto_line, auto_precision

    value = raw.get("precision", DEFAULT_PRECISION)
    if value == AUTO:
        value, reason = auto_precision("cpu")
        raw["precision"] = value
        print(f"{source}: {auto_line(value, reason)}; every encoder name, feature and result carries it",
              file=sys.stderr, flush=True)
    if value not in PRECISIONS:
        raise _fail(source, "precision", f"unknown precision {value!r}; choose one of {', '.join(REQUESTS)}")
    return str(value)


def load_config(path: str | Path) -> BenchConfig:
    """Parse and validate a benchmark YAML file."""
    path = Path(path)
    source = str(path)
    raw = read_yaml(path)
    if not isinstance(raw, dict):
        raise BadInputError(f"{source}: expected a mapping at the top level")
    _take(raw, TOP_LEVEL_KEYS, source, "top level")
    for required in ("image_encoders", "text_encoders", "aligners", "datasets"):
        if required not in raw:
            raise _fail(source, "top level", f"missing {required!r}")
    if not isinstance(raw["aligners"], list) or not isinstance(raw["datasets"], list):
        raise _fail(source, "top level", "'aligners' and 'datasets' must be lists")
    seeds = raw.get("seeds", [0])
    if not isinstance(seeds, list) or not seeds or not all(
            isinstance(s, int) and not isinstance(s, bool) and 0 <= s <= MAX_SEED for s in seeds):
        raise _fail(source, "seeds", f"expected a non-empty list of integers from 0 to {MAX_SEED}")
    if len(set(seeds)) != len(seeds):
        raise _fail(source, "seeds", "repeats a seed")
    name = raw.get("name") or path.stem
    if not isinstance(name, str):
        raise _fail(source, "name", f"expected a string, got {name!r}")
    precision = _precision(raw, source)
    image_encoders = _encoders(raw["image_encoders"], "VISION_ENCODERS", source, "image_encoders", precision)
    text_encoders = _encoders(raw["text_encoders"], "TEXT_ENCODERS", source, "text_encoders", precision)
    aligners = tuple(_aligner(a, source, f"aligners[{i}]") for i, a in enumerate(raw["aligners"]))
    datasets = tuple(_dataset(d, source, f"datasets[{i}]") for i, d in enumerate(raw["datasets"]))
    _check_selectors(aligners, datasets, source)
    return BenchConfig(
        name=name,
        image_encoders=image_encoders,
        text_encoders=text_encoders,
        aligners=aligners,
        datasets=datasets,
        seeds=tuple(seeds),
        source=source,
        raw=raw,
    )
