"""Run a benchmark config: every encoder pair x aligner x dataset x task x seed, skipping done work.

Features come from the cache (computed once per encoder and split); an aligner is fit once per
(encoder pair, dataset, fit split, seed), shared by dataset entries that differ only in their tasks or
label set, and scored on every task. Finished results are
skipped unless ``overwrite``; each result is written atomically as soon as it exists, so an
interrupted run resumes where it stopped.

An aligner with a ``sweep`` first has its grid point chosen on a validation part of the fit split
(:func:`_sweep`, :mod:`align.bench.sweep`). A dataset entry's test split is loaded only after every
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
from align.bench.pairs import FeatureBank, SplitInputs, fit_captions
from align.bench.results import aligner_path, make_result, result_path, write_result
from align.bench.sweep import select, selector_for
from align.bench.tasks import TASKS, TaskContext, not_applicable
from align.data.validation import carve_validation
from align.errors import BadInputError

USER_DATA_SOURCES = ("folder", "manifest")


@dataclasses.dataclass
class RunSummary:
    written: int = 0
    skipped: int = 0
    seconds: float = 0.0


def _path_name(spec: DatasetSpec) -> str:
    """Dataset part of a result's file name; the label set keeps e.g. emoji categories and subcategories apart."""
    return spec.name + (f"-{spec.label_set}" if spec.label_set else "")


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


def _open_dataset(spec: DatasetSpec, skip_bad: bool) -> Any:
    """The dataset of ``spec``; ``skip_bad`` reaches the loaders of user data (folder:, manifest:) only."""
    from align.registry import DATASETS

    options = dict(spec.options)
    if skip_bad and spec.name.split(":", 1)[0] in USER_DATA_SOURCES:
        options.setdefault("skip_bad", True)
    return DATASETS.create(spec.name, **options)


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
                  skip_bad: bool = False, save_aligners: bool = False) -> RunSummary:
    """Write every missing result of ``config`` under ``results_dir``. ``save_aligners`` also saves each
    fitted aligner beside its results (``results.aligner_path``) and reuses it on a later run with the
    same hyper-parameters, so an interrupted run of slow aligners (VLAP) does not train them again."""
    from align.registry import ALIGNERS

    summary = RunSummary()
    started = time.perf_counter()
    bank = bank or FeatureBank(progress=progress)
    for aligner in config.aligners:  # fail on unknown names before any embedding work
        ALIGNERS.meta(aligner.name)
    plans, text_encoders = _plans(config)
    _check_sweeps(config, plans)
    fitted: dict[str, tuple[Any, float]] = {}  # fit key -> (aligner, fit seconds), for this run only
    sweeps: dict[str, dict[str, Any]] = {}  # sweep key -> its record, for this run only
    for spec in config.datasets:
        dataset = _open_dataset(spec, skip_bad)
        fit_split = dataset.load(spec.fit)
        inputs: dict[tuple[str, str], SplitInputs] = {}  # each split's inputs, shared by the text encoders
        work: list[_PairWork] = []
        for image_encoder in config.image_encoders:
            for text_encoder in text_encoders:
                def done(plan: AlignerPlan, seed: int) -> bool:
                    saved = aligner_path(results_dir, image_encoder=image_encoder, text_encoder=text_encoder,
                                         aligner=plan.spec.display, dataset=spec.name, fit_split=spec.fit, seed=seed)
                    return not overwrite and all(
                        result_path(results_dir, image_encoder=image_encoder, text_encoder=text_encoder,
                                    aligner=plan.spec.display, dataset=_path_name(spec), task=t, seed=seed).exists()
                        for t in plan.tasks(spec)) and (not save_aligners or saved.with_suffix(".json").exists())

                eligible = [p for p in plans if p.runs_with(text_encoder, config.text_encoders)]
                todo = [(p, seed) for p in eligible for seed in config.seeds if not done(p, seed)]
                summary.skipped += sum(len(p.tasks(spec)) for p in eligible) * len(config.seeds) - sum(
                    len(p.tasks(spec)) for p, _ in todo)
                if not todo:
                    continue
                captions, pairing = fit_captions(fit_split)
                fit = inputs.setdefault(("fit", image_encoder), SplitInputs(fit_split, bank, image_encoder))
                # bound now: the fits run after this loop, when `text_encoder` names another encoder
                fit_texts = FitTexts(captions, lambda encoder=text_encoder, captions=captions: bank.texts(
                    encoder, captions, fit_split, "fit-captions"))
                chosen = [_sweep(spec, plan, seed, image_encoder, text_encoder, fit, fit_texts, bank, sweeps, fitted,
                                 echo) for plan, seed in todo]
                work.append(_PairWork(image_encoder, text_encoder, todo, chosen, fit, fit_texts, pairing))
        if not work:
            continue
        eval_split = dataset.load(spec.eval)  # only now: every selection of this entry is done without it
        for pair in work:
            evaluation = inputs.setdefault(("eval", pair.image_encoder),
                                           SplitInputs(eval_split, bank, pair.image_encoder))
            for (plan, seed), sweep in zip(pair.todo, pair.chosen):
                summary.written += _run_one(
                    config, spec, plan, seed, pair.image_encoder, pair.text_encoder, pair.fit, pair.fit_texts,
                    evaluation, pair.pairing, bank, results_dir, overwrite, echo, fitted, save_aligners, sweep)
    summary.seconds = time.perf_counter() - started
    return summary


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
class _PairWork:
    """One encoder pair's pending work on a dataset entry, with its sweeps already chosen."""

    image_encoder: str
    text_encoder: str
    todo: list[tuple[AlignerPlan, int]]
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


def _sweep(spec: DatasetSpec, plan: AlignerPlan, seed: int, image_encoder: str, text_encoder: str,
           fit: SplitInputs, fit_texts: FitTexts, bank: FeatureBank, sweeps: dict[str, dict[str, Any]],
           fitted: dict[str, tuple[Any, float]], echo: Callable[[str], None]) -> dict[str, Any] | None:
    """The sweep record of ``plan`` (align/bench/sweep.py), or None when it has no sweep. Grid points are fitted
    on a fit part of the fit split and scored on its validation part: rows of ``fit``, nothing else."""
    sweep = plan.spec.sweep
    if sweep is None:
        return None
    selector = selector_for(sweep, spec)
    name, base = plan.spec.name, plan.spec.hparams
    key = _fit_key(spec, image_encoder, text_encoder, name, base, seed, sweep.grid_dict(), sweep.validation,
                   selector.as_dict())
    if key in sweeps:  # e.g. two entries on the same fit split selecting on the same metric
        return sweeps[key]
    started = time.perf_counter()
    holdout = carve_validation(fit.split, sweep.validation, seed)
    fit_rows, validation_rows = torch.as_tensor(holdout.fit), torch.as_tensor(holdout.validation)
    part_fit, part_val = fit.part(fit_rows, holdout.fit_split), fit.part(validation_rows, holdout.validation_split)

    def fit_point(point: dict[str, Any]) -> Any:
        hparams = {**base, **point}
        part_key = _fit_key(spec, image_encoder, text_encoder, name, hparams, seed, "fit part", sweep.validation)
        if part_key not in fitted:  # shared by entries that select on different tasks
            torch.manual_seed(seed)
            aligner = _new_aligner(name, hparams, seed)
            aligner.fit(part_fit.for_aligner(aligner), _rows(fit_texts.for_aligner(aligner), fit_rows))
            fitted[part_key] = aligner, 0.0
        return fitted[part_key][0]

    def score(aligner: Any) -> dict[str, float]:
        return TASKS[selector.task](TaskContext(spec, aligner, bank, text_encoder, part_fit, part_val, seed))[0]

    selection = select(sweep.points(), fit_point, score, selector.metric)
    sweeps[key] = {**selection.record(sweep, selector, holdout.describe()),
                   "wall_time_s": round(time.perf_counter() - started, 4)}
    echo(f"{spec.name:<14} sweep {plan.spec.display:<12} seed {seed}: {selection.selected} "
         f"({selector.metric} {selection.score:.3f} on {len(holdout.validation)} validation items)")
    return sweeps[key]


def _saved_fit(path: Path, name: str, hparams: dict[str, Any]) -> Any:
    """The aligner saved at ``path`` if it was fitted with ``hparams``, else None. The saved
    hyper-parameters are passed through the aligner's constructor first, so a parameter added since
    (with a default) does not make an older fit look different."""
    from align.methods.base import load_aligner
    from align.registry import ALIGNERS

    meta = path.with_suffix(".json")
    if not (meta.exists() and path.with_suffix(".safetensors").exists()):
        return None
    saved = json.loads(meta.read_text())
    try:
        completed = ALIGNERS.create(name, **saved.get("hparams", {})).hparams
    except (TypeError, BadInputError):
        return None
    if saved.get("aligner") != name or json.loads(json.dumps(completed)) != json.loads(json.dumps(hparams)):
        return None
    return load_aligner(path)


class FitTexts:
    """The fit captions, as strings and (computed on first use, from the cache) as text-encoder features."""

    def __init__(self, captions: list[str], features: Callable[[], torch.Tensor]) -> None:
        self.captions = captions
        self._make, self._features = features, None

    def for_aligner(self, aligner: Any) -> torch.Tensor | list[str] | None:
        text_input = getattr(aligner, "text_input", "features")
        if text_input == "none":
            return None
        if text_input == "strings":
            return self.captions
        if self._features is None:
            self._features = self._make()
        return self._features


def _fit(spec: DatasetSpec, plan: AlignerPlan, seed: int, image_encoder: str, text_encoder: str,
         fit: SplitInputs, fit_texts: FitTexts, results_dir: Path, overwrite: bool, echo: Callable[[str], None],
         fitted: dict[str, tuple[Any, float]], save_aligners: bool) -> tuple[Any, float]:
    """The aligner fitted on ``fit`` with the inputs it declares (or the same fit of an earlier dataset
    entry of this run, or a saved fit with the same hyper-parameters), and the seconds it took."""
    aligner_spec = plan.spec
    key = _fit_key(spec, image_encoder, text_encoder, aligner_spec.name, aligner_spec.hparams, seed)
    if key in fitted:  # e.g. emoji retrieval and emoji subcategory zero-shot share one fit
        return fitted[key]
    torch.manual_seed(seed)
    fit_started = time.perf_counter()
    aligner = _new_aligner(aligner_spec.name, aligner_spec.hparams, seed)
    saved = aligner_path(results_dir, image_encoder=image_encoder, text_encoder=text_encoder,
                         aligner=aligner_spec.display, dataset=spec.name, fit_split=spec.fit, seed=seed)
    reused = _saved_fit(saved, aligner_spec.name, aligner.hparams) if save_aligners and not overwrite else None
    if reused is not None:
        aligner = reused
        echo(f"reusing the fitted aligner {saved}")
    else:
        aligner.fit(fit.for_aligner(aligner), fit_texts.for_aligner(aligner))
        if save_aligners:
            aligner.save(saved)
    fitted[key] = aligner, time.perf_counter() - fit_started
    return fitted[key]


def _run_one(config: BenchConfig, spec: DatasetSpec, plan: AlignerPlan, seed: int, image_encoder: str,
             text_encoder: str, fit: SplitInputs, fit_texts: FitTexts, evaluation: SplitInputs,
             pairing: str, bank: FeatureBank, results_dir: Path, overwrite: bool,
             echo: Callable[[str], None], fitted: dict[str, tuple[Any, float]], save_aligners: bool,
             sweep: dict[str, Any] | None = None) -> int:
    """Fit (or reuse a fit) and write every task's result; a task the aligner cannot do gets a result
    with no metrics that says why (the leaderboard shows "–"), and needs no fit. With a ``sweep``
    record, the fit uses the selected hyper-parameters on the whole fit split (``sweep.REFIT_RULE``)."""
    if sweep is not None:
        plan = dataclasses.replace(plan, spec=dataclasses.replace(
            plan.spec, hparams={**plan.spec.hparams, **sweep["selected"]}))
    aligner_spec = plan.spec
    reasons = plan.not_applicable(spec)
    todo = [task for task in plan.tasks(spec) if overwrite or not result_path(
        results_dir, image_encoder=image_encoder, text_encoder=text_encoder, aligner=aligner_spec.display,
        dataset=_path_name(spec), task=task, seed=seed).exists()]
    aligner, fit_seconds = plan.aligner, 0.0
    unsaved = save_aligners and not aligner_path(
        results_dir, image_encoder=image_encoder, text_encoder=text_encoder, aligner=aligner_spec.display,
        dataset=spec.name, fit_split=spec.fit, seed=seed).with_suffix(".json").exists()
    applicable = [task for task in plan.tasks(spec) if task not in reasons]
    if any(task in applicable for task in todo) or (unsaved and applicable):
        aligner, fit_seconds = _fit(spec, plan, seed, image_encoder, text_encoder, fit, fit_texts, results_dir,
                                    overwrite, echo, fitted, save_aligners)
    ctx = TaskContext(spec, aligner, bank, text_encoder, fit, evaluation, seed)
    written = 0
    for task in todo:
        path = result_path(results_dir, image_encoder=image_encoder, text_encoder=text_encoder,
                           aligner=aligner_spec.display, dataset=_path_name(spec), task=task, seed=seed)
        task_started = time.perf_counter()
        if task in reasons:
            metrics, details = {}, {"not_applicable": reasons[task]}
        else:
            metrics, details = TASKS[task](ctx)
        result = make_result(
            dataset=spec.name, aligner=aligner_spec.display, image_encoder=image_encoder, text_encoder=text_encoder,
            task=task, metrics=metrics,
            aligner_name=aligner_spec.name, hparams=getattr(aligner, "hparams", aligner_spec.hparams), seed=seed,
            image_input=dataclasses.asdict(aligner.image_input_spec()), text_side=plan.own_text_side or text_encoder,
            fit_split=spec.fit, eval_split=spec.eval, label_set=spec.label_set, fit_pairs=pairing,
            num_fit_pairs=len(fit), num_eval=len(evaluation),
            dataset_version=evaluation.split.version, dataset_hashes=_dataset_fingerprint(spec.name),
            skipped_rows={"fit": fit.split.skipped, "eval": evaluation.split.skipped},
            weights_sha256={"image": _weights("image", image_encoder), "text": _weights("text", text_encoder)},
            task_details=details, sweep=sweep, config=config.raw, config_path=config.source,
            wall_time_s={"fit": round(fit_seconds, 4), "task": round(time.perf_counter() - task_started, 4)},
        )
        write_result(path, result)
        written += 1
        shown = ", ".join(f"{k} {v:.3f}" for k, v in list(metrics.items())[:4]) or f"– ({reasons.get(task, '')})"
        echo(f"{spec.name:<14} {task:<24} {aligner_spec.display:<12} seed {seed}: {shown}")
    return written
