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
from align.bench.pairs import FeatureBank, SplitFeatures, fit_captions
from align.bench.results import aligner_path, make_result, result_path, write_result
from align.bench.sweep import select, selector_for
from align.bench.tasks import TASKS, TaskContext
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
    """What the runner knows of one config aligner before fitting it: its own text encoder, if it reads
    caption strings (VLAP), and which tasks it can do (captioning needs a ``caption`` method)."""

    spec: AlignerSpec
    text_side: str | None
    can_caption: bool

    @classmethod
    def of(cls, spec: AlignerSpec) -> AlignerPlan:
        from align.registry import ALIGNERS

        aligner = ALIGNERS.create(spec.name, **spec.hparams)  # cheap: hyper-parameters are only checked
        strings = getattr(aligner, "text_input", "features") == "strings"
        return cls(spec, aligner.text_encoder_name if strings else None, callable(getattr(aligner, "caption", None)))

    def runs_with(self, text_encoder: str) -> bool:
        return self.text_side in (None, text_encoder)

    def tasks(self, spec: DatasetSpec) -> list[str]:
        return [t for t in spec.tasks if t != "captioning" or self.can_caption]


def _plans(config: BenchConfig) -> list[AlignerPlan]:
    """One plan per aligner; a strings aligner's text encoder must be among the config's text encoders, so
    its results are filed under the text space it really uses, beside baselines fitted in that space."""
    plans = [AlignerPlan.of(spec) for spec in config.aligners]
    for plan in plans:
        if plan.text_side is not None and plan.text_side not in config.text_encoders:
            raise BadInputError(f"{config.source or 'config'}: aligner {plan.spec.display!r} reads caption strings "
                                f"through its own language model; add {plan.text_side!r} to text_encoders")
    return plans


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
    plans = _plans(config)
    fitted: dict[str, tuple[Any, float]] = {}  # fit key -> (aligner, fit seconds), for this run only
    sweeps: dict[str, dict[str, Any]] = {}  # sweep key -> its record, for this run only
    for spec in config.datasets:
        dataset = _open_dataset(spec, skip_bad)
        fit_split = dataset.load(spec.fit)
        work: list[_PairWork] = []
        for image_encoder in config.image_encoders:
            for text_encoder in config.text_encoders:
                def done(plan: AlignerPlan, seed: int) -> bool:
                    saved = aligner_path(results_dir, image_encoder=image_encoder, text_encoder=text_encoder,
                                         aligner=plan.spec.display, dataset=spec.name, fit_split=spec.fit, seed=seed)
                    return not overwrite and all(
                        result_path(results_dir, image_encoder=image_encoder, text_encoder=text_encoder,
                                    aligner=plan.spec.display, dataset=_path_name(spec), task=t, seed=seed).exists()
                        for t in plan.tasks(spec)) and (not save_aligners or saved.with_suffix(".json").exists())

                eligible = [p for p in plans if p.runs_with(text_encoder)]
                todo = [(p, seed) for p in eligible for seed in config.seeds if not done(p, seed)]
                summary.skipped += sum(len(p.tasks(spec)) for p in eligible) * len(config.seeds) - sum(
                    len(p.tasks(spec)) for p, _ in todo)
                if not todo:
                    continue
                captions, pairing = fit_captions(fit_split)
                fit = SplitFeatures(fit_split, bank.images(image_encoder, fit_split))
                fit_texts = FitTexts(captions, lambda: bank.texts(text_encoder, captions, fit_split, "fit-captions"))
                chosen = [_sweep(spec, plan, seed, image_encoder, text_encoder, fit, fit_texts, bank, sweeps, fitted,
                                 echo) for plan, seed in todo]
                work.append(_PairWork(image_encoder, text_encoder, todo, chosen, fit, fit_texts, pairing))
        if not work:
            continue
        eval_split = dataset.load(spec.eval)  # only now: every selection of this entry is done without it
        for pair in work:
            evaluation = SplitFeatures(eval_split, bank.images(pair.image_encoder, eval_split))
            for (plan, seed), sweep in zip(pair.todo, pair.chosen):
                summary.written += _run_one(
                    config, spec, plan, seed, pair.image_encoder, pair.text_encoder, pair.fit, pair.fit_texts,
                    evaluation, pair.pairing, bank, results_dir, overwrite, echo, fitted, save_aligners, sweep)
    summary.seconds = time.perf_counter() - started
    return summary


@dataclasses.dataclass
class _PairWork:
    """One encoder pair's pending work on a dataset entry, with its sweeps already chosen."""

    image_encoder: str
    text_encoder: str
    todo: list[tuple[AlignerPlan, int]]
    chosen: list[dict[str, Any] | None]  # per todo item: its sweep record, or None without a sweep
    fit: SplitFeatures
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


def _rows(texts: torch.Tensor | list[str], rows: Any) -> torch.Tensor | list[str]:
    return texts[torch.as_tensor(rows)] if isinstance(texts, torch.Tensor) else [texts[int(i)] for i in rows]


def _sweep(spec: DatasetSpec, plan: AlignerPlan, seed: int, image_encoder: str, text_encoder: str,
           fit: SplitFeatures, fit_texts: FitTexts, bank: FeatureBank, sweeps: dict[str, dict[str, Any]],
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
    part_fit = SplitFeatures(holdout.fit_split, fit.images[torch.as_tensor(holdout.fit)])
    part_val = SplitFeatures(holdout.validation_split, fit.images[torch.as_tensor(holdout.validation)])

    def fit_point(point: dict[str, Any]) -> Any:
        hparams = {**base, **point}
        part_key = _fit_key(spec, image_encoder, text_encoder, name, hparams, seed, "fit part", sweep.validation)
        if part_key not in fitted:  # shared by entries that select on different tasks
            torch.manual_seed(seed)
            aligner = _new_aligner(name, hparams, seed)
            aligner.fit(part_fit.images, _rows(fit_texts.for_aligner(aligner), holdout.fit))
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

    def for_aligner(self, aligner: Any) -> torch.Tensor | list[str]:
        if getattr(aligner, "text_input", "features") == "strings":
            return self.captions
        if self._features is None:
            self._features = self._make()
        return self._features


def _run_one(config: BenchConfig, spec: DatasetSpec, plan: AlignerPlan, seed: int, image_encoder: str,
             text_encoder: str, fit: SplitFeatures, fit_texts: FitTexts, evaluation: SplitFeatures,
             pairing: str, bank: FeatureBank, results_dir: Path, overwrite: bool,
             echo: Callable[[str], None], fitted: dict[str, tuple[Any, float]], save_aligners: bool,
             sweep: dict[str, Any] | None = None) -> int:
    """Fit (or reuse the same fit of an earlier dataset entry) and write every task's result. With a ``sweep``
    record, the aligner is fitted with the selected hyper-parameters on the whole fit split (``sweep.REFIT_RULE``)."""
    aligner_spec = plan.spec
    if sweep is not None:
        aligner_spec = dataclasses.replace(aligner_spec, hparams={**aligner_spec.hparams, **sweep["selected"]})
    key = _fit_key(spec, image_encoder, text_encoder, aligner_spec.name, aligner_spec.hparams, seed)
    if key not in fitted:  # e.g. emoji retrieval and emoji subcategory zero-shot share one fit
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
            aligner.fit(fit.images, fit_texts.for_aligner(aligner))
            if save_aligners:
                aligner.save(saved)
        fitted[key] = aligner, time.perf_counter() - fit_started
    aligner, fit_seconds = fitted[key]
    ctx = TaskContext(spec, aligner, bank, text_encoder, fit, evaluation, seed)
    written = 0
    for task in plan.tasks(spec):
        path = result_path(results_dir, image_encoder=image_encoder, text_encoder=text_encoder,
                           aligner=aligner_spec.display, dataset=_path_name(spec), task=task, seed=seed)
        if path.exists() and not overwrite:
            continue
        task_started = time.perf_counter()
        metrics, details = TASKS[task](ctx)
        result = make_result(
            dataset=spec.name, aligner=aligner_spec.display, image_encoder=image_encoder, text_encoder=text_encoder,
            task=task, metrics=metrics,
            aligner_name=aligner_spec.name, hparams=getattr(aligner, "hparams", aligner_spec.hparams), seed=seed,
            fit_split=spec.fit, eval_split=spec.eval, label_set=spec.label_set, fit_pairs=pairing,
            num_fit_pairs=int(fit.images.shape[0]), num_eval=int(evaluation.images.shape[0]),
            dataset_version=evaluation.split.version, dataset_hashes=_dataset_fingerprint(spec.name),
            skipped_rows={"fit": fit.split.skipped, "eval": evaluation.split.skipped},
            weights_sha256={"image": _weights("image", image_encoder), "text": _weights("text", text_encoder)},
            task_details=details, sweep=sweep, config=config.raw, config_path=config.source,
            wall_time_s={"fit": round(fit_seconds, 4), "task": round(time.perf_counter() - task_started, 4)},
        )
        write_result(path, result)
        written += 1
        shown = ", ".join(f"{k} {v:.3f}" for k, v in list(metrics.items())[:4])
        echo(f"{spec.name:<14} {task:<24} {aligner_spec.display:<12} seed {seed}: {shown}")
    return written
