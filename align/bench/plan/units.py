"""Plan: a config's dataset entries, opened, become work units: one fit each, and the results it writes.

A :class:`Unit` is one aligner and seed on one encoder pair and dataset entry. Its :class:`FitSpec`
holds the configured hyper-parameters and, for a swept aligner, the sweep (grid, validation part,
selector) whose choice the fit awaits; its :class:`ResultSpec` list is one per task. Everything a
unit's files are identified and named by comes from these specs (:mod:`align.bench.plan.specs`).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from typing import Any

from align.bench.plan.config import AlignerSpec, BenchConfig, DatasetSpec
from align.bench.plan.specs import AlignerChoice, EncoderSpec, FitData, FitSpec, ResultSpec
from align.bench.plan.sweeps import selector_for
from align.bench.plan.tasks import EVAL_VERSION, not_applicable, task_options
from align.data.base import Dataset, DatasetSplit
from align.methods.framework.base import Aligner

Weights = Callable[[str, str], "str | None"]  # (kind "image" | "text", encoder name) -> sha256 of its weights


def build_aligner(name: str, hparams: dict[str, Any], seed: int) -> Aligner:
    """A fresh aligner. Trained aligners seed themselves: they get the benchmark's seed unless the config fixes one."""
    from align.registry import ALIGNERS

    aligner = ALIGNERS.create(name, **hparams)
    if "seed" in aligner.hparams and "seed" not in hparams:
        aligner = ALIGNERS.create(name, **{**hparams, "seed": seed})
    return aligner


@dataclasses.dataclass(frozen=True)
class AlignerPlan:
    """What the runner knows of one config aligner before fitting it: what its image and text sides
    consume, the encoders its results are filed under, and which tasks it cannot do (and why)."""

    spec: AlignerSpec
    aligner: Aligner  # built with the config's hyper-parameters (cheap: nothing is loaded or fitted)
    text_side: str | None  # the only text encoder it runs beside; None: beside every one
    image_side: str | None = None  # the only image encoder it runs on (its own encoders); None: every one

    @classmethod
    def of(cls, spec: AlignerSpec, text_encoders: tuple[str, ...], precision: str = "float32") -> AlignerPlan:
        """``precision``: the config's, which an aligner's own encoders (a CLIP reference's towers) run in too."""
        from align.precision import with_precision
        from align.registry import ALIGNERS

        aligner = ALIGNERS.create(spec.name, **spec.hparams)
        if aligner.own_encoders is not None:
            image_side, text_side = (with_precision(name, precision) for name in aligner.own_encoders)
            return cls(spec, aligner, text_side, image_side)
        text_side = aligner.text_encoder_name if aligner.text_input == "strings" else None
        if aligner.text_input in ("strings", "none") and text_side is None:
            # its own text side (or none): one run, filed beside the config's first text encoder
            text_side = text_encoders[0]
        return cls(spec, aligner, text_side)

    @property
    def own_text_side(self) -> str | None:
        """How the result records a text side that is not the text encoder it is filed under."""
        if self.aligner.text_input == "none":
            return "none (images only)"
        if self.aligner.text_input == "strings" and self.aligner.text_encoder_name is None:
            return f"its own text encoder ({self.spec.name})"
        return None

    def runs_with(self, image_encoder: str, text_encoder: str, config: BenchConfig) -> bool:
        """On this encoder pair: its own encoders, or an image encoder the config lists beside its own text
        side or any text encoder the config lists."""
        if self.image_side is not None:
            return (image_encoder, text_encoder) == (self.image_side, self.text_side)
        return image_encoder in config.image_encoders and (
            self.text_side == text_encoder or (self.text_side is None and text_encoder in config.text_encoders))

    def not_applicable(self, spec: DatasetSpec) -> dict[str, str]:
        reasons = {task: not_applicable(task, self.aligner) for task in spec.tasks}
        return {task: reason for task, reason in reasons.items() if reason is not None}

    def sweep_part(self, spec: DatasetSpec) -> dict[str, Any] | None:
        """The sweep as its results depend on it: grid, validation fraction and the selector used on ``spec``."""
        sweep = self.spec.sweep
        if sweep is None:
            return None
        return {"grid": sweep.grid_dict(), "validation": sweep.validation, "select": selector_for(sweep, spec).as_dict()}


def aligner_plans(config: BenchConfig) -> tuple[list[AlignerPlan], list[str]]:
    """One plan per aligner, and every text encoder results are filed under (:func:`encoder_lists`)."""
    precision = str(config.raw.get("precision", "float32"))  # resolved by load_config ("auto" included)
    plans = [AlignerPlan.of(spec, config.text_encoders, precision) for spec in config.aligners]
    return plans, encoder_lists(config, plans)[1]


def encoder_lists(config: BenchConfig, plans: list[AlignerPlan]) -> tuple[list[str], list[str]]:
    """Every image and text encoder results are filed under: the config's, then the encoders of aligners
    that bring their own and that the config does not list (VLAP's ``table:<its LM>``, whose features
    are its own text side; a CLIP reference's two towers). List such a text encoder in the config to fit
    the feature aligners in the same space beside it."""
    image_encoders, text_encoders = list(config.image_encoders), list(config.text_encoders)
    for plan in plans:
        if plan.image_side is not None and plan.image_side not in image_encoders:
            image_encoders.append(plan.image_side)
        if plan.text_side is not None and plan.text_side not in text_encoders:
            text_encoders.append(plan.text_side)
    return image_encoders, text_encoders


@dataclasses.dataclass
class Entry:
    """One dataset entry, opened: its fit split and what every identity of its results holds. The eval
    split is read only by :meth:`load_eval`, after every selection on the entry is done."""

    spec: DatasetSpec
    data: FitData
    fit_split: DatasetSplit
    eval_source: Dataset
    eval_dataset: dict[str, Any] | None  # a shifted entry's eval dataset: name, options, version, assets
    user_copy: bool = False  # either side read from the user's copy (Dataset.user_copy): shared images counted

    def load_eval(self) -> DatasetSplit:
        return self.eval_source.load(self.spec.eval)


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


def open_entry(spec: DatasetSpec, skip_bad: bool) -> Entry:
    """Open ``spec``'s dataset (and a shifted entry's eval dataset) and load its fit split. Under
    ``--skip-bad`` a dataset that takes ``skip_bad`` (a user's files: folder:, manifest:, COCO, Flickr,
    ImageNet, wds:; :mod:`align.data.skip_bad`) leaves unreadable files out, and says so in each result."""
    from align.data.skip_bad import skip_bad_options
    from align.registry import DATASETS

    options = {**skip_bad_options(spec.name, skip_bad), **spec.options}  # the entry's own skip_bad wins
    dataset = DATASETS.create(spec.name, **options)
    fit_split = dataset.load(spec.fit)
    data = FitData(spec.name, spec.fit, options, str(getattr(dataset, "version", fit_split.version)),
                   fit_split.version, _dataset_fingerprint(spec.name))
    if spec.eval_dataset is None:
        return Entry(spec, data, fit_split, dataset, None, getattr(dataset, "user_copy", False))
    eval_options = skip_bad_options(spec.eval_dataset, skip_bad)
    eval_source = DATASETS.create(spec.eval_dataset, **eval_options)
    shifted = {"name": spec.eval_dataset, "options": eval_options, "version": str(getattr(eval_source, "version", "")),
               "assets": _dataset_fingerprint(spec.eval_dataset)}
    user_copy = getattr(dataset, "user_copy", False) or getattr(eval_source, "user_copy", False)
    return Entry(spec, data, fit_split, eval_source, shifted, user_copy)


@dataclasses.dataclass(frozen=True)
class Unit:
    """One aligner and seed on one encoder pair and dataset entry: its fit (as configured, awaiting a
    sweep's choice if it has one) and one result per task."""

    plan: AlignerPlan
    fit: FitSpec
    results: tuple[ResultSpec, ...]

    @property
    def seed(self) -> int:
        return self.fit.seed

    def tasks_to_fit_for(self, spec: DatasetSpec) -> list[str]:
        """The tasks of this unit its aligner can do (a unit whose tasks are all "–" needs no fit)."""
        reasons = self.plan.not_applicable(spec)
        return [result.task for result in self.results if result.task not in reasons]


def plan_unit(entry: Entry, plan: AlignerPlan, seed: int, image_encoder: str, text_encoder: str,
              weights: Weights) -> Unit:
    """The unit of ``plan`` and ``seed`` on this encoder pair: its fit spec and its result specs."""
    spec = entry.spec
    aligner = build_aligner(plan.spec.name, plan.spec.hparams, seed)
    aligner.check_encoders(image_encoder, text_encoder)  # an aligner with its own encoders: on them only
    choice = AlignerChoice(plan.spec.name, str(type(aligner).version), dict(aligner.hparams),
                           plan.sweep_part(spec), label=plan.spec.display)
    fit = FitSpec(choice, seed, EncoderSpec(image_encoder, weights("image", image_encoder)),
                  EncoderSpec(text_encoder, weights("text", text_encoder)), plan.own_text_side or text_encoder,
                  entry.data)
    results = tuple(ResultSpec(fit, task, task_options(task, spec), EVAL_VERSION, spec.eval, spec.label_set,
                               entry.eval_dataset) for task in spec.tasks)
    return Unit(plan, fit, results)


def chosen_fit(unit: Unit, selected: dict[str, Any] | None) -> tuple[FitSpec, Aligner]:
    """The fit a unit really makes, and a fresh aligner for it: a sweep's choice over the configured
    hyper-parameters (its fit identity then holds the chosen values and no sweep part)."""
    hparams = {**unit.plan.spec.hparams, **(selected or {})}
    aligner = build_aligner(unit.plan.spec.name, hparams, unit.seed)
    choice = dataclasses.replace(unit.fit.aligner, hparams=dict(aligner.hparams), sweep=None)
    return dataclasses.replace(unit.fit, aligner=choice), aligner
