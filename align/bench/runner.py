"""Run a benchmark config: every encoder pair x aligner x dataset x task x seed, skipping done work.

Features come from the cache (computed once per encoder and split); an aligner is fit once per
(encoder pair, dataset, fit split, seed), shared by dataset entries that differ only in their tasks or
label set, and scored on every task. A result already there is kept (unless ``overwrite``) only when
it verifies and its identity, everything that produced it (:mod:`align.bench.identity`), is the one
the config gives now; a stale or unreadable one is recomputed and counted (:mod:`align.bench.ledger`).
Each result is written atomically, with its checksum, as soon as it exists, so an interrupted run
resumes where it stopped.

An aligner with a ``sweep`` first has its grid point chosen on a validation part of the fit split
(:meth:`_Run.sweep`, :mod:`align.bench.sweep`). A dataset entry's test split is loaded only after every
selection of that entry is done, so no selection can read it.
"""

from __future__ import annotations

import dataclasses
import json
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch

from align.bench.config import AlignerSpec, BenchConfig, DatasetSpec
from align.bench.executors import RayExecutor, SerialExecutor
from align.bench.fits import FitTexts, divergence, fit_or_reuse, saved_state
from align.bench.item_files import write_items
from align.bench.ledger import Ledger, RunSummary
from align.bench.pairs import FeatureBank, SplitInputs, fit_captions
from align.bench.results import beside_fit, make_result, write_result
from align.bench.sweep import select, selector_for
from align.bench.targets import EntryFacts, Target, check_collisions, fit_identity, fit_path, targets
from align.bench.tasks import TASKS, TaskContext, not_applicable
from align.data.validation import carve_validation
from align.errors import AlignError, BadInputError

__all__ = ["RunSummary", "run_benchmark"]

USER_DATA_SOURCES = ("folder", "manifest")


def _dataset_fingerprint(name: str) -> dict[str, Any]:
    """The asset a dataset is read from and its pinned file hashes (empty for data such as digits,
    which ships inside scikit-learn, and for user data, whose ``dataset_version`` hashes its files)."""
    from align.assets import CATALOG
    from align.registry import DATASETS

    asset = DATASETS.meta(name).weights
    if asset not in CATALOG:
        return {}
    spec = CATALOG[asset]
    return {"asset": asset, "asset_version": spec.version, "sha256": dict(spec.sha256)}


def _weights(kind: str, name: str) -> str | None:
    from align.features.cache import weights_fingerprint
    from align.registry import TEXT_ENCODERS, VISION_ENCODERS

    return weights_fingerprint(VISION_ENCODERS if kind == "image" else TEXT_ENCODERS, name)


def _options(spec: DatasetSpec, skip_bad: bool) -> dict[str, Any]:
    """The dataset factory's arguments: the entry's options, and ``skip_bad`` for user data (folder:,
    manifest:) under ``--skip-bad``."""
    options = dict(spec.options)
    if skip_bad and spec.name.split(":", 1)[0] in USER_DATA_SOURCES:
        options.setdefault("skip_bad", True)
    return options


def _open_dataset(spec: DatasetSpec, skip_bad: bool) -> Any:
    """The dataset of ``spec`` (options checked against its factory when the config was read)."""
    from align.registry import DATASETS

    return DATASETS.create(spec.name, **_options(spec, skip_bad))


def _eval_options(spec: DatasetSpec, skip_bad: bool) -> dict[str, Any]:
    """A shifted entry's eval dataset takes its defaults (the entry's options are the fit dataset's), and
    ``skip_bad`` for user data under ``--skip-bad``."""
    user_data = (spec.eval_dataset or "").split(":", 1)[0] in USER_DATA_SOURCES
    return {"skip_bad": True} if skip_bad and user_data else {}


def _open_eval_dataset(spec: DatasetSpec, skip_bad: bool, dataset: Any) -> tuple[Any, dict[str, Any] | None]:
    """The dataset ``spec.eval`` is read from (``dataset`` itself unless the entry is shifted) and, for a
    shifted entry, what its identity adds: the eval dataset's name, options, version and asset hashes."""
    from align.registry import DATASETS

    if spec.eval_dataset is None:
        return dataset, None
    options = _eval_options(spec, skip_bad)
    eval_dataset = DATASETS.create(spec.eval_dataset, **options)
    return eval_dataset, {"name": spec.eval_dataset, "options": options,
                          "version": str(getattr(eval_dataset, "version", "")),
                          "assets": _dataset_fingerprint(spec.eval_dataset)}


@dataclasses.dataclass
class AlignerPlan:
    """What the runner knows of one config aligner before fitting it: what its image and text sides
    consume, the text encoder its results are filed under, and which tasks it cannot do (and why)."""

    spec: AlignerSpec
    aligner: Any  # built with the config's hyper-parameters (cheap: nothing is loaded or fitted)
    text_side: str | None  # the only text encoder it runs beside; None: beside every one

    @classmethod
    def of(cls, spec: AlignerSpec, text_encoders: tuple[str, ...]) -> AlignerPlan:
        from align.registry import ALIGNERS

        aligner = ALIGNERS.create(spec.name, **spec.hparams)
        text_input = getattr(aligner, "text_input", "features")
        text_side = aligner.text_encoder_name if text_input == "strings" else None
        if text_input in ("strings", "none") and text_side is None:
            # its own text side (or none): one run, filed beside the config's first text encoder
            text_side = text_encoders[0]
        return cls(spec, aligner, text_side)

    @property
    def own_text_side(self) -> str | None:
        """How the result records a text side that is not the text encoder it is filed under."""
        text_input = getattr(self.aligner, "text_input", "features")
        if text_input == "none":
            return "none (images only)"
        if text_input == "strings" and self.aligner.text_encoder_name is None:
            return f"its own text encoder ({self.spec.name})"
        return None

    def runs_with(self, text_encoder: str, listed: tuple[str, ...]) -> bool:
        """Beside ``text_encoder``: its own text side, or any text encoder the config lists."""
        return self.text_side == text_encoder or (self.text_side is None and text_encoder in listed)

    def tasks(self, spec: DatasetSpec) -> list[str]:
        return list(spec.tasks)

    def not_applicable(self, spec: DatasetSpec) -> dict[str, str]:
        reasons = {task: not_applicable(task, self.aligner) for task in spec.tasks}
        return {task: reason for task, reason in reasons.items() if reason is not None}


def _plans(config: BenchConfig) -> tuple[list[AlignerPlan], list[str]]:
    """One plan per aligner, and every text encoder results are filed under: the config's, then the
    text sides of strings aligners that the config does not list (VLAP's ``table:<its LM>``, whose
    features are its own text side). List that text encoder in the config to fit the feature
    aligners in the same space beside it."""
    plans = [AlignerPlan.of(spec, config.text_encoders) for spec in config.aligners]
    text_encoders = list(config.text_encoders)
    for plan in plans:
        if plan.text_side is not None and plan.text_side not in text_encoders:
            text_encoders.append(plan.text_side)
    return plans, text_encoders


def run_benchmark(config: BenchConfig, results_dir: Path, *, overwrite: bool = False, progress: bool = True,
                  bank: FeatureBank | None = None, echo: Callable[[str], None] = print,
                  skip_bad: bool = False, save_aligners: bool = False,
                  executor: SerialExecutor | RayExecutor | None = None) -> RunSummary:
    """Write every result of ``config`` under ``results_dir`` that is missing, stale (produced by other
    settings: :mod:`align.bench.identity`) or unreadable. ``save_aligners`` also saves each fitted aligner
    beside its results (``results.aligner_path``) and reuses it on a later run when it verifies and is
    the same fit, so an interrupted run of slow aligners (VLAP) does not train them again. Every fit of a
    trained aligner made for results (not a sweep's grid points) leaves its training curves beside them
    (``results.beside_fit(..., "curves")``), which ``align report --html`` plots.

    ``executor`` runs each (aligner, seed) unit's fit and task results (:mod:`align.bench.executors`;
    default: here, in order). Sweeps and feature extraction stay in this process."""
    started = time.perf_counter()
    executor = executor or SerialExecutor()
    plans, text_encoders = _plans(config)
    _check_sweeps(config, plans)
    check_collisions(config, plans, text_encoders, save_aligners)
    run = _Run(config, Path(results_dir), bank or FeatureBank(progress=progress), echo, overwrite, save_aligners)
    for spec in config.datasets:
        dataset = _open_dataset(spec, skip_bad)
        fit_split = dataset.load(spec.fit)
        eval_source, eval_data = _open_eval_dataset(spec, skip_bad, dataset)
        facts = EntryFacts(spec, _options(spec, skip_bad), str(getattr(dataset, "version", fit_split.version)),
                           fit_split.version, _dataset_fingerprint(spec.name), eval_data)
        inputs: dict[tuple[str, str], SplitInputs] = {}  # each split's inputs, shared by the text encoders
        work: list[_PairWork] = []
        for image_encoder in config.image_encoders:
            for text_encoder in text_encoders:
                eligible = [p for p in plans if p.runs_with(text_encoder, config.text_encoders)]
                todo = [item for p in eligible for seed in config.seeds
                        if (item := run.pending(facts, p, seed, image_encoder, text_encoder)) is not None]
                if not todo:
                    continue
                captions, pairing = fit_captions(fit_split)
                fit = inputs.setdefault(("fit", image_encoder), SplitInputs(fit_split, bank=run.bank,
                                                                           image_encoder=image_encoder))
                # bound now: the features are made later, after this loop has moved on to the next text encoder
                fit_texts = FitTexts(captions, lambda t=text_encoder, c=captions, s=fit_split: run.bank.texts(
                    t, c, s, "fit-captions"))
                chosen = [run.sweep(spec, item.plan, item.seed, image_encoder, text_encoder, fit, fit_texts)
                          for item in todo]
                work.append(_PairWork(image_encoder, text_encoder, todo, chosen, fit, fit_texts, pairing))
        if not work:
            continue
        eval_split = eval_source.load(spec.eval)  # only now: every selection of this entry is done without it
        for pair in work:
            evaluation = inputs.setdefault(("eval", pair.image_encoder),
                                           SplitInputs(eval_split, bank=run.bank, image_encoder=pair.image_encoder))
            for item, sweep in zip(pair.todo, pair.chosen):
                if isinstance(executor, SerialExecutor):
                    run.run_one(facts, item, pair, evaluation, sweep)
                else:
                    run.prefetch(item, pair, evaluation, sweep)
                    executor.submit(run.unit(facts, item, pair, evaluation, sweep), run.adopt)
    executor.finish()
    run.summary.seconds = time.perf_counter() - started
    return run.summary


def _check_sweeps(config: BenchConfig, plans: list[AlignerPlan]) -> None:
    """A sweep must select on a task its aligner can do on every dataset entry (before any work)."""
    for i, plan in enumerate(plans):
        if plan.spec.sweep is None:
            continue
        for j, spec in enumerate(config.datasets):
            reason = not_applicable(selector_for(plan.spec.sweep, spec).task, plan.aligner)
            if reason is not None:
                raise BadInputError(f"{config.source or 'config'}: aligners[{i}].sweep: cannot select on "
                                    f"datasets[{j}]: {reason}")


@dataclasses.dataclass
class _Item:
    """One aligner and seed with something left to do on an encoder pair, and its result files."""

    plan: AlignerPlan
    seed: int
    targets: list[Target]


@dataclasses.dataclass
class _PairWork:
    """One encoder pair's pending work on a dataset entry, with its sweeps already chosen."""

    image_encoder: str
    text_encoder: str
    todo: list[_Item]
    chosen: list[dict[str, Any] | None]  # per todo item: its sweep record, or None without a sweep
    fit: SplitInputs
    fit_texts: FitTexts
    pairing: str


def _fit_key(spec: DatasetSpec, image_encoder: str, text_encoder: str, name: str, hparams: dict[str, Any],
             seed: int, *extra: Any) -> str:
    return json.dumps([spec.name, spec.fit, spec.options, image_encoder, text_encoder, name, hparams, seed, *extra],
                      sort_keys=True, default=str)


def _new_aligner(name: str, hparams: dict[str, Any], seed: int) -> Any:
    """A fresh aligner. Trained aligners seed themselves: they get the benchmark's seed unless the config fixes one."""
    from align.registry import ALIGNERS

    aligner = ALIGNERS.create(name, **hparams)
    if "seed" in getattr(aligner, "hparams", {}) and "seed" not in hparams:
        aligner = ALIGNERS.create(name, **{**hparams, "seed": seed})
    return aligner


def _rows(texts: torch.Tensor | list[str] | None, rows: torch.Tensor) -> torch.Tensor | list[str] | None:
    if texts is None or isinstance(texts, torch.Tensor):
        return None if texts is None else texts[rows]
    return [texts[int(i)] for i in rows]


def _recorded_choice(plan: AlignerPlan, found: list[Target]) -> dict[str, Any] | None:
    """A sweep's choice as the (verified, current) results of ``plan`` record it; None without a sweep,
    ``{}`` when no result says."""
    from align.bench.result_files import ResultProblem, read_result

    if plan.spec.sweep is None:
        return None
    try:
        selected = read_result(found[0].path).get("sweep", {}).get("selected") if found else None
    except ResultProblem:
        return {}
    return selected if isinstance(selected, dict) else {}


class _Run:
    """One call of :func:`run_benchmark`: what it shares across dataset entries (fits and sweeps made in
    this run, weights hashes, the ledger of result files) and the steps of each entry."""

    def __init__(self, config: BenchConfig, root: Path, bank: FeatureBank, echo: Callable[[str], None],
                 overwrite: bool, save_aligners: bool) -> None:
        self.config, self.root, self.bank, self.echo = config, root, bank, echo
        self.overwrite, self.save_aligners = overwrite, save_aligners
        self.summary = RunSummary()
        self.ledger = Ledger(self.summary, overwrite)
        self.fitted: dict[str, tuple[Any, float]] = {}  # fit key -> (aligner, fit seconds), for this run only
        self.sweeps: dict[str, dict[str, Any]] = {}  # sweep key -> its record, for this run only
        self.examples_written: set[Path] = set()  # report pictures written in this run
        self._weights: dict[tuple[str, str], str | None] = {}

    def weights(self, kind: str, name: str) -> str | None:
        if (kind, name) not in self._weights:
            self._weights[(kind, name)] = _weights(kind, name)
        return self._weights[(kind, name)]

    # ------------------------------------------------------------------ what is left to do

    def pending(self, facts: EntryFacts, plan: AlignerPlan, seed: int, image_encoder: str,
                text_encoder: str) -> _Item | None:
        """The work of ``plan`` and ``seed`` on this pair, or None when every result is there, verified and
        of the same identity (and, under ``--save-aligners``, its fit is saved and verifies); those
        results are counted as already there."""
        aligner = _new_aligner(plan.spec.name, plan.spec.hparams, seed)
        found = targets(self.root, facts, plan, seed, image_encoder, text_encoder, aligner, self.weights)
        if all(self.ledger.current(t.path, t.sha256) for t in found) and self._fit_saved(
                facts, plan, seed, image_encoder, text_encoder, _recorded_choice(plan, found)):
            for target in found:
                self.ledger.keep(target.path)
            return None
        return _Item(plan, seed, found)

    def _fit_saved(self, facts: EntryFacts, plan: AlignerPlan, seed: int, image_encoder: str, text_encoder: str,
                   selected: dict[str, Any] | None) -> bool:
        """Whether the fit behind the results needs no saving: not asked for, nothing to fit, or saved and
        verified with the identity of the fit (``selected``: a sweep's choice; ``{}`` when it is unknown)."""
        if not self.save_aligners or all(t in plan.not_applicable(facts.spec) for t in plan.tasks(facts.spec)):
            return True
        if plan.spec.sweep is not None and not selected:
            return False
        aligner = _new_aligner(plan.spec.name, {**plan.spec.hparams, **(selected or {})}, seed)
        path = fit_path(self.root, facts, plan, seed, image_encoder, text_encoder, selected)
        identity = fit_identity(facts, plan, seed, image_encoder, text_encoder, aligner, self.weights)
        return saved_state(path, identity["sha256"])[0] == "ok"

    # ------------------------------------------------------------------ sweeps

    def sweep(self, spec: DatasetSpec, plan: AlignerPlan, seed: int, image_encoder: str, text_encoder: str,
              fit: SplitInputs, fit_texts: FitTexts) -> dict[str, Any] | None:
        """The sweep record of ``plan`` (align/bench/sweep.py), or None when it has no sweep. Grid points are
        fitted on a fit part of the fit split and scored on its validation part: rows of ``fit``, nothing else.
        A point whose fit diverges scores NaN (never chosen)."""
        sweep = plan.spec.sweep
        if sweep is None:
            return None
        selector = selector_for(sweep, spec)
        name, base = plan.spec.name, plan.spec.hparams
        key = _fit_key(spec, image_encoder, text_encoder, name, base, seed, sweep.grid_dict(), sweep.validation,
                       selector.as_dict())
        if key in self.sweeps:  # e.g. two entries on the same fit split selecting on the same metric
            return self.sweeps[key]
        started = time.perf_counter()
        holdout = carve_validation(fit.split, sweep.validation, seed)
        fit_rows, validation_rows = torch.as_tensor(holdout.fit), torch.as_tensor(holdout.validation)
        part_fit, part_val = fit.part(fit_rows, holdout.fit_split), fit.part(validation_rows, holdout.validation_split)

        def fit_point(point: dict[str, Any]) -> Any:
            hparams = {**base, **point}
            part_key = _fit_key(spec, image_encoder, text_encoder, name, hparams, seed, "fit part", sweep.validation)
            if part_key not in self.fitted:  # shared by entries that select on different tasks
                torch.manual_seed(seed)
                aligner = _new_aligner(name, hparams, seed)
                aligner.fit(part_fit.for_aligner(aligner), _rows(fit_texts.for_aligner(aligner), fit_rows))
                self.fitted[part_key] = aligner, 0.0
            return self.fitted[part_key][0]

        def score(aligner: Any) -> dict[str, float]:
            if divergence(aligner) is not None:
                return {selector.metric: float("nan")}
            return TASKS[selector.task](TaskContext(spec, aligner, self.bank, text_encoder, part_fit, part_val, seed))[0]

        try:
            selection = select(sweep.points(), fit_point, score, selector.metric)
        except BadInputError as err:
            raise BadInputError(f"sweep of {plan.spec.display} on {spec.name}/{spec.fit} (seed {seed}): {err}") from None
        self.sweeps[key] = {**selection.record(sweep, selector, holdout.describe()),
                            "wall_time_s": round(time.perf_counter() - started, 4)}
        self.echo(f"{spec.name:<14} sweep {plan.spec.display:<12} seed {seed}: {selection.selected} "
                  f"({selector.metric} {selection.score:.3f} on {len(holdout.validation)} validation items)")
        return self.sweeps[key]

    # ------------------------------------------------------------------ units run elsewhere (executors)

    def prefetch(self, item: _Item, pair: _PairWork, evaluation: SplitInputs, sweep: dict[str, Any] | None) -> None:
        """Compute (or read from the cache) the image inputs of both splits and the fit texts the unit's
        aligner takes, here, before the unit leaves: they travel with it, and no worker loads an encoder
        for them."""
        hparams = {**item.plan.spec.hparams, **(sweep["selected"] if sweep is not None else {})}
        aligner = _new_aligner(item.plan.spec.name, hparams, item.seed)
        pair.fit.for_aligner(aligner)
        pair.fit_texts.for_aligner(aligner)
        evaluation.for_aligner(aligner)

    def unit(self, facts: EntryFacts, item: _Item, pair: _PairWork, evaluation: SplitInputs,
             sweep: dict[str, Any] | None) -> Callable[[], dict[str, Any]]:
        """``run_one`` of this unit as a self-contained callable for another process: a fresh run of the
        same settings (its own ledger; fits of this run are not shared) that returns what it echoed and
        its ledger's events, for :meth:`adopt`."""
        # absolute: a worker's working directory is not this process's
        config, root, bank, overwrite, save_aligners = (self.config, self.root.resolve(), self.bank, self.overwrite,
                                                        self.save_aligners)

        def run_unit() -> dict[str, Any]:
            lines: list[str] = []
            worker = _Run(config, root, bank, lines.append, overwrite, save_aligners)
            worker.run_one(facts, item, pair, evaluation, sweep)
            return {"echo": lines, "events": worker.ledger.events}

        return run_unit

    def adopt(self, report: dict[str, Any]) -> None:
        """A finished unit's output: its lines echoed here and its files counted once in this run's summary."""
        for line in report["echo"]:
            self.echo(line)
        self.ledger.replay(report["events"])

    # ------------------------------------------------------------------ fitting and scoring

    def _fit(self, facts: EntryFacts, plan: AlignerPlan, seed: int, pair: _PairWork,
             selected: dict[str, Any] | None) -> tuple[Any, float]:
        """The aligner fitted on the pair's fit split with the inputs it declares (or the same fit of an earlier
        dataset entry of this run, or a verified saved fit of the same identity), and the seconds it took."""
        spec = facts.spec
        key = _fit_key(spec, pair.image_encoder, pair.text_encoder, plan.spec.name, plan.spec.hparams, seed)
        if key in self.fitted:  # e.g. emoji retrieval and emoji subcategory zero-shot share one fit
            return self.fitted[key]
        torch.manual_seed(seed)
        started = time.perf_counter()
        aligner = _new_aligner(plan.spec.name, plan.spec.hparams, seed)
        identity = fit_identity(facts, plan, seed, pair.image_encoder, pair.text_encoder, aligner, self.weights)
        path = fit_path(self.root, facts, plan, seed, pair.image_encoder, pair.text_encoder, selected)
        aligner = fit_or_reuse(
            aligner, lambda a: (pair.fit.for_aligner(a), pair.fit_texts.for_aligner(a)),
            path=path if self.save_aligners else None, reuse=not self.overwrite, identity=identity,
            display=plan.spec.display, where=f"{spec.name}/{spec.fit}", seed=seed, echo=self.echo,
            curves=beside_fit(path, "curves"))
        self.fitted[key] = aligner, time.perf_counter() - started
        return self.fitted[key]

    def run_one(self, facts: EntryFacts, item: _Item, pair: _PairWork, evaluation: SplitInputs,
                sweep: dict[str, Any] | None) -> None:
        """Fit (or reuse a fit) and write every task's result that is not there yet; a task the aligner cannot
        do gets a result with no metrics that says why (the leaderboard shows "–"), and needs no fit. With
        a ``sweep`` record, the fit uses the selected hyper-parameters on the whole fit split
        (``sweep.REFIT_RULE``). Each file is checked again just before it is computed: another run sharing
        the folder may have written it meanwhile."""
        spec, plan, seed = facts.spec, item.plan, item.seed
        selected = sweep["selected"] if sweep is not None else None
        if selected is not None:
            plan = dataclasses.replace(plan, spec=dataclasses.replace(
                plan.spec, hparams={**plan.spec.hparams, **selected}))
        reasons = plan.not_applicable(spec)
        todo = []
        for target in item.targets:
            if self.ledger.current(target.path, target.sha256):
                self.ledger.keep(target.path)
            else:
                todo.append(target)
        applicable = [task for task in plan.tasks(spec) if task not in reasons]
        aligner, fit_seconds = plan.aligner, 0.0
        needs_fit = any(t.task in applicable for t in todo) or not self._fit_saved(
            facts, item.plan, seed, pair.image_encoder, pair.text_encoder, selected)
        if needs_fit:
            aligner, fit_seconds = self._fit(facts, plan, seed, pair, selected)
            if self.save_aligners and applicable:
                self._examples(facts, plan, seed, pair, selected, aligner, evaluation)
        ctx = TaskContext(spec, aligner, self.bank, pair.text_encoder, pair.fit, evaluation, seed)
        for target in todo:
            if self.ledger.current(target.path, target.sha256):
                self.ledger.keep(target.path)
                continue
            found, why = self.ledger.before_write(target.path, target.sha256)
            if found == "unreadable":
                self.echo(f"{why}; recomputing it")
            self._score(target, facts, plan, seed, pair, evaluation, ctx, aligner, reasons, fit_seconds, sweep)
            self.ledger.wrote(target.path, target.sha256, found)

    def _examples(self, facts: EntryFacts, plan: AlignerPlan, seed: int, pair: _PairWork,
                  selected: dict[str, Any] | None, aligner: Any, evaluation: SplitInputs) -> None:
        """The report's pictures of a saved fit (:mod:`align.bench.examples`), once per fit and run; an
        aligner that cannot make them is named in one line, and the results go on."""
        from align.bench.examples import example_items, write_examples

        path = fit_path(self.root, facts, plan, seed, pair.image_encoder, pair.text_encoder, selected)
        folder = beside_fit(path, "examples")
        if folder in self.examples_written:
            return
        self.examples_written.add(folder)
        try:
            items = example_items(aligner, evaluation, pair.fit, pair.fit_texts.captions)
        except AlignError as err:
            self.echo(f"no report pictures of {plan.spec.display} on {facts.spec.name}: {err}")
            return
        if items:
            identity = fit_identity(facts, plan, seed, pair.image_encoder, pair.text_encoder, aligner, self.weights)
            write_examples(folder, aligner_label=plan.spec.display, fit=f"{facts.spec.name}/{facts.spec.fit}",
                           eval_split=f"{evaluation.split.dataset}/{evaluation.split.split}", seed=seed,
                           identity=identity["sha256"], items=items)

    def _score(self, target: Target, facts: EntryFacts, plan: AlignerPlan, seed: int, pair: _PairWork,
               evaluation: SplitInputs, ctx: TaskContext, aligner: Any, reasons: dict[str, str],
               fit_seconds: float, sweep: dict[str, Any] | None) -> None:
        spec, task = facts.spec, target.task
        started = time.perf_counter()
        if task in reasons:
            metrics, details, items = {}, {"not_applicable": reasons[task]}, None
        else:
            metrics, details, items = TASKS[task](ctx)
        result = make_result(
            dataset=spec.name, aligner=plan.spec.display, image_encoder=pair.image_encoder,
            text_encoder=pair.text_encoder, task=task, metrics=metrics,
            aligner_name=plan.spec.name, hparams=getattr(aligner, "hparams", plan.spec.hparams), seed=seed,
            image_input=dataclasses.asdict(aligner.image_input_spec()),
            text_side=plan.own_text_side or pair.text_encoder,
            fit_split=spec.fit, eval_split=spec.eval, label_set=spec.label_set, fit_pairs=pair.pairing,
            num_fit_pairs=len(pair.fit), num_eval=len(evaluation),
            dataset_version=evaluation.split.version, dataset_hashes=facts.assets,
            skipped_rows={"fit": pair.fit.split.skipped, "eval": evaluation.split.skipped},
            weights_sha256={"image": self.weights("image", pair.image_encoder),
                            "text": self.weights("text", pair.text_encoder)},
            **({"shift": spec.shift} if spec.shift else {}),
            task_details=details, sweep=sweep, config=self.config.raw, config_path=self.config.source,
            wall_time_s={"fit": round(fit_seconds, 4), "task": round(time.perf_counter() - started, 4)},
            identity=target.identity,
            **({"items": write_items(target.path, items)} if items is not None else {}),
        )
        write_result(target.path, result)
        shown = ", ".join(f"{k} {v:.3f}" for k, v in list(metrics.items())[:4]) or f"– ({reasons.get(task, '')})"
        shown_name = spec.name + (f"→{spec.eval_dataset}" if spec.eval_dataset else "")
        self.echo(f"{shown_name:<14} {task:<24} {plan.spec.display:<12} seed {seed}: {shown}")
