"""The files one (dataset entry, aligner, seed, encoder pair) produces, each with its identity.

:class:`EntryFacts` holds what a dataset entry contributes to every identity (the effective dataset
options, its version and asset hashes); :func:`targets` gives the result files of one combination and
:func:`fit_identity` the identity of its fit (:mod:`align.bench.identity`). :func:`check_collisions`
refuses, before any work, a config whose entries or aligners would write one file with different
settings (each rerun would then find the other's result and report or recompute it).
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

from align.bench.config import BenchConfig, DatasetSpec
from align.bench.identity import aligner_part, fit_parts, result_parts, sealed
from align.bench.results import aligner_path, dataset_part, result_path
from align.bench.sweep import selector_for
from align.bench.tasks import EVAL_VERSION, task_options
from align.checksum import canonical
from align.errors import BadInputError


@dataclasses.dataclass(frozen=True)
class Target:
    """One result file and the identity of the result it must hold."""

    task: str
    path: Path
    identity: dict[str, Any]

    @property
    def sha256(self) -> str:
        return self.identity["sha256"]


@dataclasses.dataclass(frozen=True)
class EntryFacts:
    """What a dataset entry adds to every identity: name, fit split, effective options, versions, asset hashes."""

    spec: DatasetSpec
    options: dict[str, Any]  # as the dataset was built (``--skip-bad`` included)
    version: str
    fit_version: str
    assets: dict[str, Any]
    eval_data: dict[str, Any] | None = None  # a shifted entry's eval dataset: name, options, version, assets

    def fit_part(self) -> dict[str, Any]:
        return {"name": self.spec.name, "fit": self.spec.fit, "options": self.options, "version": self.version,
                "fit_version": self.fit_version, "assets": self.assets}

    def eval_part(self) -> dict[str, Any]:
        """The eval split and label set; a shifted entry adds its eval dataset (unshifted identities keep
        their old parts, so their results stay current)."""
        part = {"eval": self.spec.eval, "label_set": self.spec.label_set}
        return part if self.eval_data is None else {**part, "eval_dataset": self.eval_data}


def sweep_part(plan: Any, spec: DatasetSpec) -> dict[str, Any] | None:
    """A sweep as its results depend on it: grid, validation fraction and the selector used on ``spec``."""
    sweep = plan.spec.sweep
    if sweep is None:
        return None
    return {"grid": sweep.grid_dict(), "validation": sweep.validation, "select": selector_for(sweep, spec).as_dict()}


def encoders_part(plan: Any, image_encoder: str, text_encoder: str,
                  weights: Callable[[str, str], str | None]) -> dict[str, Any]:
    return {"image": {"name": image_encoder, "weights_sha256": weights("image", image_encoder)},
            "text": {"name": text_encoder, "weights_sha256": weights("text", text_encoder)},
            "text_side": plan.own_text_side or text_encoder}


def targets(root: Path, facts: EntryFacts, plan: Any, seed: int, image_encoder: str, text_encoder: str,
            aligner: Any, weights: Callable[[str, str], str | None]) -> list[Target]:
    """The result files of ``plan`` on ``facts.spec`` (``aligner``: built with the configured hyper-parameters
    and the seed, as the runner builds it)."""
    spec = facts.spec
    fit = fit_parts(aligner=aligner_part(plan.spec.name, aligner, sweep_part(plan, spec)), seed=seed,
                    encoders=encoders_part(plan, image_encoder, text_encoder, weights), dataset=facts.fit_part())
    out = []
    for task in plan.tasks(spec):
        parts = result_parts(fit, evaluation=facts.eval_part(),
                             task={"name": task, "options": task_options(task, spec), "eval_version": EVAL_VERSION})
        path = result_path(root, image_encoder=image_encoder, text_encoder=text_encoder, aligner=plan.spec.display,
                           dataset=dataset_part(spec.name, spec.label_set, spec.eval_dataset), task=task, seed=seed)
        out.append(Target(task, path, sealed(parts)))
    return out


def fit_identity(facts: EntryFacts, plan: Any, seed: int, image_encoder: str, text_encoder: str, aligner: Any,
                 weights: Callable[[str, str], str | None]) -> dict[str, Any]:
    """The identity of the fit of ``aligner`` (built with the hyper-parameters really fitted)."""
    return sealed(fit_parts(aligner=aligner_part(plan.spec.name, aligner), seed=seed,
                            encoders=encoders_part(plan, image_encoder, text_encoder, weights),
                            dataset=facts.fit_part()))


def fit_path(root: Path, facts: EntryFacts, plan: Any, seed: int, image_encoder: str, text_encoder: str,
             selected: dict[str, Any] | None) -> Path:
    """Where ``--save-aligners`` keeps this fit; a sweep's choice gets its own file."""
    variant = hashlib.sha256(canonical(selected)).hexdigest()[:10] if selected is not None else ""
    return aligner_path(root, image_encoder=image_encoder, text_encoder=text_encoder, aligner=plan.spec.display,
                        dataset=facts.spec.name, fit_split=facts.spec.fit, seed=seed, variant=variant)


def _settings(spec: DatasetSpec, plan: Any, task: str | None) -> str:
    """What the config says about one file (everything but what the run measures: versions, weights)."""
    entry = {"name": spec.name, "fit": spec.fit, "options": spec.options}
    sweep = None  # a fitted file holds a sweep's choice, which its name tells apart (fit_path)
    if task is not None:
        entry.update(eval=spec.eval, eval_dataset=spec.eval_dataset, label_set=spec.label_set, task=task,
                     **task_options(task, spec))
        sweep = sweep_part(plan, spec)
    return json.dumps([entry, plan.spec.name, plan.aligner.hparams, sweep], sort_keys=True, default=str)


def check_collisions(config: BenchConfig, plans: list[Any], text_encoders: list[str], save_aligners: bool) -> None:
    """A one-line error if two dataset entries or two aligners of ``config`` would write the same result (or,
    with ``save_aligners``, the same fitted aligner) with different settings."""
    seen: dict[Path, tuple[str, str]] = {}
    root = Path("results")
    for i, spec in enumerate(config.datasets):
        for j, plan in enumerate(plans):
            for image_encoder in config.image_encoders:
                for text_encoder in (t for t in text_encoders if plan.runs_with(t, config.text_encoders)):
                    files = [(result_path(root, image_encoder=image_encoder, text_encoder=text_encoder,
                                          aligner=plan.spec.display,
                                          dataset=dataset_part(spec.name, spec.label_set, spec.eval_dataset),
                                          task=task, seed=0), _settings(spec, plan, task)) for task in plan.tasks(spec)]
                    if save_aligners:
                        files.append((aligner_path(root, image_encoder=image_encoder, text_encoder=text_encoder,
                                                   aligner=plan.spec.display, dataset=spec.name, fit_split=spec.fit,
                                                   seed=0), _settings(spec, plan, None)))
                    for path, settings in files:
                        where = f"datasets[{i}] with aligners[{j}]"
                        if path in seen and seen[path][0] != settings:
                            raise BadInputError(
                                f"{config.source or 'config'}: {seen[path][1]} and {where} would both write "
                                f"{path.relative_to(root)} with different settings; give the aligners different "
                                "labels, or run the dataset entries into separate results folders")
                        seen.setdefault(path, (settings, where))
