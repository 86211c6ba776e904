"""A unit's sweep, run: every grid point fitted on a fit part of the fit split and scored on its validation part.

Only rows of the fit split are read (:func:`align.data.validation.carve_validation`); the runner loads
the eval split after every selection of a dataset entry is done. A point whose fit diverges scores NaN
and is never chosen. The choice is then refitted on the whole fit split (``plan.sweeps.REFIT_RULE``).
"""

from __future__ import annotations

import time
from typing import Any

import torch

from align.bench.execute.features import SplitInputs
from align.bench.execute.fitting import FitTexts, divergence
from align.bench.execute.scoring import TASKS, TaskContext
from align.bench.execute.session import Session
from align.bench.plan.config import DatasetSpec
from align.bench.plan.sweeps import select, selector_for
from align.bench.plan.units import Unit, chosen_fit
from align.data.validation import carve_validation
from align.errors import BadInputError
from align.methods.framework.base import Aligner


def _rows(texts: torch.Tensor | list[str] | None, rows: torch.Tensor) -> torch.Tensor | list[str] | None:
    if texts is None or isinstance(texts, torch.Tensor):
        return None if texts is None else texts[rows]
    return [texts[int(i)] for i in rows]


def run_sweep(session: Session, spec: DatasetSpec, unit: Unit, fit: SplitInputs, fit_texts: FitTexts) -> dict[str, Any] | None:
    """The sweep record of ``unit`` (what it chose, on which validation part, with what scores), or None
    without a sweep. A sweep already run in this session for the same fit split and selector is reused."""
    sweep = unit.plan.spec.sweep
    if sweep is None:
        return None
    key = unit.fit.key  # the configured fit with its sweep part: grid, validation fraction and selector
    if key in session.sweeps:  # e.g. two entries on the same fit split selecting on the same metric
        return session.sweeps[key]
    started = time.perf_counter()
    selector = selector_for(sweep, spec)
    holdout = carve_validation(fit.split, sweep.validation, unit.seed)
    fit_rows, validation_rows = torch.as_tensor(holdout.fit), torch.as_tensor(holdout.validation)
    part_fit, part_val = fit.part(fit_rows, holdout.fit_split), fit.part(validation_rows, holdout.validation_split)

    def fit_point(point: dict[str, Any]) -> Aligner:
        fit_spec, aligner = chosen_fit(unit, point)
        part_key = f"{fit_spec.key}:fit part {sweep.validation}"  # shared by entries that select on different tasks
        if part_key not in session.fitted:
            torch.manual_seed(unit.seed)
            aligner.fit(part_fit.for_aligner(aligner), _rows(fit_texts.for_aligner(aligner), fit_rows))
            session.fitted[part_key] = aligner, 0.0, 0.0
        return session.fitted[part_key][0]

    def score(aligner: Aligner) -> dict[str, float]:
        if divergence(aligner) is not None:
            return {selector.metric: float("nan")}
        context = TaskContext(spec, aligner, session.bank, unit.fit.text.name, part_fit, part_val, unit.seed)
        return TASKS[selector.task](context).metrics

    display = unit.plan.spec.display
    try:
        selection = select(sweep.points(), fit_point, score, selector.metric)
    except BadInputError as err:
        raise BadInputError(f"sweep of {display} on {spec.name}/{spec.fit} (seed {unit.seed}): {err}") from None
    session.sweeps[key] = {**selection.record(sweep, selector, holdout.describe()),
                           "wall_time_s": round(time.perf_counter() - started, 4)}
    session.echo(f"{spec.name:<14} sweep {display:<12} seed {unit.seed}: {selection.selected} "
                 f"({selector.metric} {selection.score:.3f} on {len(holdout.validation)} validation items)")
    return session.sweeps[key]

