"""Run a benchmark config in three steps: plan, execute, record.

- **Plan** (:mod:`align.bench.plan`): each dataset entry is opened and every (encoder pair, aligner,
  seed) becomes a unit: one :class:`~align.bench.plan.specs.FitSpec` and one
  :class:`~align.bench.plan.specs.ResultSpec` per task, from which every identity and path derives.
- **Execute** (:mod:`align.bench.execute`): a unit whose results are all there (verified, same
  identity) is skipped; the others have their sweeps chosen on validation parts of the fit split,
  then (the entry's eval split is read only now) are fitted and scored, here or on another executor.
- **Record** (:mod:`align.bench.record`): each result is written atomically with its checksum and its
  per-item outputs as soon as it exists, so an interrupted run resumes where it stopped; the ledger
  counts every file once; ``align report`` builds the leaderboard from the files.
"""

from __future__ import annotations

import contextlib
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

from align.bench.execute.executors import RayExecutor, SerialExecutor
from align.bench.execute.features import FeatureBank, SplitInputs, fit_captions
from align.bench.execute.fitting import FitTexts
from align.bench.execute.optional import available
from align.bench.execute.selection import run_sweep
from align.bench.execute.session import Session
from align.bench.execute.units import FitInputs, fit_is_saved, run_unit
from align.bench.plan.collisions import check_collisions
from align.bench.plan.config import BenchConfig, DatasetSpec
from align.bench.plan.sweeps import selector_for
from align.bench.plan.tasks import not_applicable
from align.bench.plan.units import (
    AlignerPlan, Entry, Unit, aligner_plans, chosen_fit, encoder_lists, open_entry, plan_unit,
)
from align.bench.record.ledger import RunSummary
from align.data.splits import DatasetSplit
from align.bench.record.result_files import ResultProblem, read_result
from align.errors import BadInputError, EncoderUnavailable, RunInterrupted

__all__ = ["RunSummary", "run_benchmark"]


def run_benchmark(config: BenchConfig, results_dir: Path, *, overwrite: bool = False, progress: bool = True,
                  bank: FeatureBank | None = None, echo: Callable[[str], None] = print,
                  skip_bad: bool = False, save_aligners: bool = False,
                  executor: SerialExecutor | RayExecutor | None = None) -> RunSummary:
    """Write every result of ``config`` under ``results_dir`` that is missing, stale (produced by other
    settings) or unreadable. ``save_aligners`` also saves each fitted aligner beside its results and
    reuses it on a later run when it verifies and is the same fit, so an interrupted run of slow
    aligners (VLAP) does not train them again; every fit of a trained aligner made for results (not a
    sweep's grid points) leaves its training curves beside them, which ``align report --html`` plots.

    ``executor`` runs each unit's fit and results (:mod:`align.bench.execute.executors`; default: here,
    in order). Sweeps and feature extraction stay in this process. An ``optional`` aligner whose own encoders
    cannot be built here is left out with one ``skipped:`` line (:mod:`align.bench.execute.optional`)."""
    started = time.perf_counter()
    executor = executor or SerialExecutor()
    plans, text_encoders = aligner_plans(config)
    _check_sweeps(config, plans)
    check_collisions(config, plans, text_encoders, save_aligners)
    session = Session(config, Path(results_dir), bank or FeatureBank(progress=progress), echo, overwrite, save_aligners)
    plans = available(plans, session.bank, echo)
    image_encoders, text_encoders = encoder_lists(config, plans)
    try:
        for i, spec in enumerate(config.datasets):
            with _naming_entry(config, i):
                _run_entry(executor, session, open_entry(spec, skip_bad), plans, image_encoders, text_encoders)
        executor.finish()
    except RunInterrupted as stop:  # SIGTERM / SIGINT (align bench): say what finished
        stop.summary = session.summary
        raise
    session.summary.seconds = time.perf_counter() - started
    session.summary.phases = session.clock.split(session.summary.seconds)
    return session.summary


@contextlib.contextmanager
def _naming_entry(config: BenchConfig, index: int) -> Iterator[None]:
    """A data or fit error of one dataset entry (an unknown label set, an empty split, too few pairs left
    after ``--skip-bad``) names the config file and the entry's key, an encoder that cannot be built its
    ``image_encoders`` / ``text_encoders`` list; an error already naming the file passes as it is."""
    source = config.source or "config"
    try:
        yield
    except EncoderUnavailable as err:
        raise BadInputError(f"{source}: {err.kind}_encoders: {err}") from None
    except BadInputError as err:
        if str(err).startswith(source):
            raise
        spec = config.datasets[index]
        raise BadInputError(f"{source}: datasets[{index}] ({spec.name}, fit {spec.fit}, eval {spec.eval}): {err}") from None


def _run_entry(executor: SerialExecutor | RayExecutor, session: Session, entry: Entry, plans: list[AlignerPlan],
               image_encoders: list[str], text_encoders: list[str]) -> None:
    """Select on the entry's fit split, then (its eval split read only now) fit and score every pending unit."""
    work = _select(session, entry, plans, image_encoders, text_encoders)
    if not work:
        return
    evaluation = _EvalInputs(entry, session.bank)
    if entry.user_copy:
        _warn_shared_images(session, entry.fit_split, evaluation.split)
    for unit, inputs, sweep in work:
        _submit(executor, session, entry.spec, unit, inputs, evaluation.of(unit.fit.image.name), sweep)


def _warn_shared_images(session: Session, fit: DatasetSplit, test: DatasetSplit) -> None:
    """Once per run and split pair: images of a user's copy on both sides, counted, not dropped
    (:mod:`align.data.shared_images` says why)."""
    from align.data.shared_images import shared_images_line

    key = repr([(s.dataset, s.split, s.version) for s in (fit, test)])
    if key in session.warned:
        return
    session.warned.add(key)
    line = shared_images_line(fit, test)
    if line is not None:
        session.echo(line)


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


Work = list[tuple[Unit, FitInputs, "dict[str, Any] | None"]]


def _select(session: Session, entry: Entry, plans: list[AlignerPlan], image_encoders: list[str],
            text_encoders: list[str]) -> Work:
    """The entry's pending units with their fit inputs and sweep choices (fit split only)."""
    config = session.config
    fit_splits: dict[str, SplitInputs] = {}  # one per image encoder, shared by the text encoders
    work: Work = []
    for image_encoder in image_encoders:
        for text_encoder in text_encoders:
            units = [plan_unit(entry, plan, seed, image_encoder, text_encoder, session.weights)
                     for plan in plans if plan.runs_with(image_encoder, text_encoder, config) for seed in config.seeds]
            pending = [unit for unit in units if not _done(session, entry, unit)]
            if not pending:
                continue
            split = fit_splits.setdefault(image_encoder, SplitInputs(entry.fit_split, bank=session.bank,
                                                                     image_encoder=image_encoder))
            inputs = _fit_inputs(session, entry, split, text_encoder)
            with session.clock.phase("sweeps"):
                work += [(unit, inputs, run_sweep(session, entry.spec, unit, split, inputs.texts)) for unit in pending]
    return work


def _fit_inputs(session: Session, entry: Entry, split: SplitInputs, text_encoder: str) -> FitInputs:
    captions, pairing = fit_captions(entry.fit_split)
    # bound now: the features are made on first use, after this loop has moved on to the next text encoder
    texts = FitTexts(captions, lambda t=text_encoder, c=captions, s=entry.fit_split: session.bank.texts(
        t, c, s, "fit-captions"))
    return FitInputs(split, texts, pairing)


def _done(session: Session, entry: Entry, unit: Unit) -> bool:
    """Whether every result of ``unit`` is there, verified and of the same identity (and, under
    ``--save-aligners``, its fit is saved and verifies); those results are then counted as already there."""
    paths = [(result.path(session.root), result.sha256) for result in unit.results]
    if not all(session.ledger.current(path, sha) for path, sha in paths):
        return False
    if not fit_is_saved(session, entry.spec, unit, _recorded_choice(unit, session.root)):
        return False
    for path, _ in paths:
        session.ledger.keep(path)
    return True


def _recorded_choice(unit: Unit, root: Path) -> dict[str, Any] | None:
    """A sweep's choice as the (verified, current) results of ``unit`` record it; None without a sweep,
    ``{}`` when no result says."""
    if unit.plan.spec.sweep is None:
        return None
    try:
        selected = read_result(unit.results[0].path(root)).get("sweep", {}).get("selected") if unit.results else None
    except ResultProblem:
        return {}
    return selected if isinstance(selected, dict) else {}


class _EvalInputs:
    """The entry's eval split (read once), and its inputs under each image encoder."""

    def __init__(self, entry: Entry, bank: FeatureBank) -> None:
        self.split, self.bank = entry.load_eval(), bank
        self._inputs: dict[str, SplitInputs] = {}

    def of(self, image_encoder: str) -> SplitInputs:
        if image_encoder not in self._inputs:
            self._inputs[image_encoder] = SplitInputs(self.split, bank=self.bank, image_encoder=image_encoder)
        return self._inputs[image_encoder]


def _submit(executor: SerialExecutor | RayExecutor, session: Session, spec: DatasetSpec, unit: Unit, inputs: FitInputs,
            evaluation: SplitInputs, sweep: dict[str, Any] | None) -> None:
    """Run the unit here, or send it to the executor with its inputs computed first (they travel with it,
    and no worker loads an encoder for them); its echoed lines and ledger events come back here."""
    if isinstance(executor, SerialExecutor):
        run_unit(session, spec, unit, inputs, evaluation, sweep)
        return
    _, aligner = chosen_fit(unit, sweep["selected"] if sweep is not None else None)
    inputs.split.for_aligner(aligner)
    inputs.texts.for_aligner(aligner)
    evaluation.for_aligner(aligner)

    def remote() -> dict[str, Any]:
        lines: list[str] = []
        worker = session.fresh(lines.append)
        run_unit(worker, spec, unit, inputs, evaluation, sweep)
        return {"echo": lines, "events": worker.ledger.events}

    def adopt(report: dict[str, Any]) -> None:
        for line in report["echo"]:
            session.echo(line)
        session.ledger.replay(report["events"])

    executor.submit(remote, adopt)
