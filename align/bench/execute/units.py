"""A unit, executed: fit its aligner (or reuse a fit), then score and record every result not there yet.

A unit's fit is shared within the run by every dataset entry with the same fit spec, and under
``--save-aligners`` saved beside its results and reused by a later run when it verifies and is the
same fit (:func:`align.bench.execute.fitting.fit_or_reuse`). A task the aligner cannot do gets a
result with no metrics that says why, and needs no fit. Each result file is checked again just
before it is computed: another run sharing the folder may have written it meanwhile.
"""

from __future__ import annotations

import dataclasses
import hashlib
import time
from pathlib import Path
from typing import Any

import torch

from align.bench.execute.features import SplitInputs
from align.bench.execute.fitting import FitTexts, fit_or_reuse, saved_state
from align.bench.execute.phases import ENCODING
from align.bench.execute.scoring import TASKS, Scored, TaskContext
from align.bench.execute.session import Session
from align.bench.plan.config import DatasetSpec
from align.bench.plan.layout import beside_fit, check_inside
from align.bench.plan.specs import FitSpec
from align.bench.plan.units import Unit, chosen_fit
from align.bench.record.result_json import record_result
from align.checksum import canonical
from align.errors import AlignError
from align.methods.framework.base import Aligner


@dataclasses.dataclass
class FitInputs:
    """What a unit's fit reads: the fit split's image inputs and texts under its encoder pair, and how
    its captions were paired with images (recorded in every result)."""

    split: SplitInputs
    texts: FitTexts
    pairing: str


def fit_path(session: Session, unit: Unit, selected: dict[str, Any] | None) -> Path:
    """Where ``--save-aligners`` keeps the unit's fit; a sweep's choice gets its own file."""
    variant = hashlib.sha256(canonical(selected)).hexdigest()[:10] if selected is not None else ""
    return unit.fit.path(session.root, variant)


def fit_is_saved(session: Session, spec: DatasetSpec, unit: Unit, selected: dict[str, Any] | None) -> bool:
    """Whether the unit's fit needs no saving: not asked for, nothing to fit, or saved and verified with
    the identity of the fit (``selected``: a sweep's choice; ``{}`` when it is unknown)."""
    if not session.save_aligners or not unit.tasks_to_fit_for(spec):
        return True
    if unit.plan.spec.sweep is not None and not selected:
        return False
    fit_spec, _ = chosen_fit(unit, selected)
    return saved_state(fit_path(session, unit, selected), fit_spec.identity["sha256"])[0] == "ok"


def fit_unit(session: Session, spec: DatasetSpec, unit: Unit, inputs: FitInputs,
             selected: dict[str, Any] | None) -> tuple[Aligner, float, float, FitSpec]:
    """The unit's aligner fitted on the whole fit split with the hyper-parameters chosen (or the same fit
    made earlier in this run, or a verified saved fit of the same identity), the seconds it took less those
    spent encoding its features, and those."""
    fit_spec, aligner = chosen_fit(unit, selected)
    if fit_spec.key in session.fitted:  # e.g. emoji retrieval and emoji subcategory zero-shot share one fit
        return (*session.fitted[fit_spec.key], fit_spec)
    torch.manual_seed(unit.seed)
    encoding, started = session.clock.total(ENCODING), time.perf_counter()
    path = fit_path(session, unit, selected)
    if session.save_aligners:
        check_inside(session.root, path)
    check_inside(session.root, beside_fit(path, "curves") / "fit.yaml")
    with session.clock.phase("fits"):
        aligner = fit_or_reuse(
            aligner, lambda a: (inputs.split.for_aligner(a), inputs.texts.for_aligner(a)),
            path=path if session.save_aligners else None, reuse=not session.overwrite, identity=fit_spec.identity,
            display=unit.plan.spec.display, where=f"{spec.name}/{spec.fit}", seed=unit.seed,
            echo=session.echo, curves=beside_fit(path, "curves"))
    encoding = session.clock.total(ENCODING) - encoding
    session.fitted[fit_spec.key] = aligner, time.perf_counter() - started - encoding, encoding
    return (*session.fitted[fit_spec.key], fit_spec)


def write_examples(session: Session, spec: DatasetSpec, unit: Unit, fit_spec: FitSpec, selected: dict[str, Any] | None,
                   aligner: Aligner, inputs: FitInputs, evaluation: SplitInputs) -> None:
    """The report's pictures of a saved fit (:mod:`align.bench.execute.examples`), once per fit and run; an
    aligner that cannot make them is named in one line, and the results go on."""
    from align.bench.execute.examples import example_items
    from align.bench.record.examples import write_examples as write

    folder = beside_fit(fit_path(session, unit, selected), "examples")
    check_inside(session.root, folder / "examples.jsonl")
    if folder in session.examples_written:
        return
    session.examples_written.add(folder)
    try:
        items = example_items(aligner, evaluation, inputs.split, inputs.texts.captions)
    except AlignError as err:
        session.echo(f"no report pictures of {unit.plan.spec.display} on {spec.name}: {err}")
        return
    if items:
        write(folder, aligner_label=unit.plan.spec.display, fit=f"{spec.name}/{spec.fit}",
              eval_split=f"{evaluation.split.dataset}/{evaluation.split.split}", seed=unit.seed,
              identity=fit_spec.identity["sha256"], items=items)


def run_unit(session: Session, spec: DatasetSpec, unit: Unit, inputs: FitInputs, evaluation: SplitInputs,
             sweep: dict[str, Any] | None) -> None:
    """Fit (or reuse a fit) and write every result of ``unit`` that is not there yet. With a ``sweep``
    record, the fit uses the selected hyper-parameters on the whole fit split."""
    selected = sweep["selected"] if sweep is not None else None
    reasons = unit.plan.not_applicable(spec)
    todo = [result for result in unit.results if not _kept(session, result)]
    aligner, fit_seconds, fit_encoding = unit.plan.aligner, 0.0, 0.0
    if any(r.task not in reasons for r in todo) or not fit_is_saved(session, spec, unit, selected):
        aligner, fit_seconds, fit_encoding, fit_spec = fit_unit(session, spec, unit, inputs, selected)
        if session.save_aligners and unit.tasks_to_fit_for(spec):
            write_examples(session, spec, unit, fit_spec, selected, aligner, inputs, evaluation)
    context = TaskContext(spec, aligner, session.bank, unit.fit.text.name, inputs.split, evaluation, unit.seed)
    for result in todo:
        if _kept(session, result):
            continue
        path = check_inside(session.root, result.path(session.root))
        found, why = session.ledger.before_write(path, result.sha256)
        if found == "unreadable":
            session.echo(f"{why}; recomputing it")
        encoding, started = session.clock.total(ENCODING), time.perf_counter()
        if result.task in reasons:
            scored = Scored({}, {"not_applicable": reasons[result.task]})
        else:
            with session.clock.phase("scoring"):
                scored = TASKS[result.task](context)
        encoding = session.clock.total(ENCODING) - encoding
        seconds = {"fit": round(fit_seconds, 4), "task": round(time.perf_counter() - started - encoding, 4),
                   "encoding": {"fit": round(fit_encoding, 4), "task": round(encoding, 4)}}
        provenance = {"fit_pairs": inputs.pairing, "num_fit_pairs": len(inputs.split), "num_eval": len(evaluation),
                      "dataset_version": evaluation.split.version, "sweep": sweep,
                      "skipped_rows": {"fit": inputs.split.split.skipped, "eval": evaluation.split.skipped},
                      "config": session.config.raw, "config_path": session.config.source, "wall_time_s": seconds}
        record_result(path, result, metrics=scored.metrics, details=scored.details, items=scored.items,
                      hparams=aligner.hparams, image_input=dataclasses.asdict(aligner.image_input_spec()),
                      provenance=provenance)
        session.ledger.wrote(path, result.sha256, found)
        session.echo(_line(spec, unit, result.task, scored, reasons))


def _kept(session: Session, result: Any) -> bool:
    """Whether ``result`` is there already (verified, same identity): then it is counted as kept."""
    path = result.path(session.root)
    if session.ledger.current(path, result.sha256):
        session.ledger.keep(path)
        return True
    return False


def _line(spec: DatasetSpec, unit: Unit, task: str, scored: Scored, reasons: dict[str, str]) -> str:
    shown = ", ".join(f"{k} {v:.3f}" for k, v in list(scored.metrics.items())[:4]) or f"– ({reasons.get(task, '')})"
    name = spec.name + (f"→{spec.eval_dataset}" if spec.eval_dataset else "")
    return f"{name:<14} {task:<24} {unit.plan.spec.display:<12} seed {unit.seed}: {shown}"
