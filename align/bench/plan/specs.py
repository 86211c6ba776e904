"""What a fit and a result are: frozen, typed specs from which every identity, path and cache key derives.

A :class:`FitSpec` holds everything that decides a fit's numbers: the aligner (registry name, code
version, resolved hyper-parameters, and the sweep that chose them), the seed, both encoders with the
sha256 of their weights, the text side it was fitted beside, and the fit split of one dataset entry
(name, options, versions, asset hashes). A :class:`ResultSpec` adds what decides a score: the eval
split, label set (or shifted eval dataset), task and task options, and the evaluation code's version.

Fields that change no number say so on the field (``identity=False`` metadata: an aligner's label,
which only names its folder); hyper-parameters that change no number (devices, logging, checkpoint
folder) are left out by :data:`NOT_IDENTITY`. The identity is the sha256 of the canonical JSON of the
identity parts (:mod:`align.checksum`), and its format is the one results were written with before
these specs existed, so older results folders stay current.
"""

from __future__ import annotations

import dataclasses
import hashlib
from collections.abc import Mapping
from functools import cached_property
from pathlib import Path
from typing import Any

from align.bench.plan.layout import aligner_path, dataset_part, result_path
from align.checksum import canonical
from align.methods.framework.trained import without_run_defaults

FORMAT = 1
# hyper-parameters that never change a number: a fit resumed from a checkpoint equals an uninterrupted one,
# and where a fit runs (CPU or GPU, one device or several data-parallel ones) changes only float rounding.
# ``precision`` does change numbers: it is identity, but left out at its default (``RUN_DEFAULTS``) so
# results made before it existed keep their identity.
NOT_IDENTITY = ("progress", "checkpoint_dir", "accelerator", "devices", "strategy")


def naming_only(default: Any = "") -> Any:
    """A field that names files or shows in reports but changes no number: it is no part of an identity."""
    return dataclasses.field(default=default, metadata={"identity": False})


def sealed(parts: Mapping[str, Any]) -> dict[str, Any]:
    """``{"sha256": ..., "parts": parts}``."""
    return {"sha256": hashlib.sha256(canonical(parts)).hexdigest(), "parts": dict(parts)}


@dataclasses.dataclass(frozen=True)
class EncoderSpec:
    """A frozen encoder by registry name, and the sha256 of the weights it loads (None: built in code)."""

    name: str
    weights_sha256: str | None

    def part(self) -> dict[str, Any]:
        return {"name": self.name, "weights_sha256": self.weights_sha256}


@dataclasses.dataclass(frozen=True)
class AlignerChoice:
    """An aligner as it will be fitted: registry name, code version, resolved hyper-parameters, and the
    sweep (grid, validation part, selector) whose choice it awaits or records."""

    name: str
    version: str
    hparams: Mapping[str, Any]
    sweep: Mapping[str, Any] | None = None
    label: str = naming_only()

    @property
    def display(self) -> str:
        return self.label or self.name

    def part(self) -> dict[str, Any]:
        hparams = {k: v for k, v in without_run_defaults(self.hparams).items() if k not in NOT_IDENTITY}
        part = {"name": self.name, "version": self.version, "hparams": hparams}
        return {**part, "sweep": dict(self.sweep)} if self.sweep is not None else part


@dataclasses.dataclass(frozen=True)
class FitData:
    """The fit split of one dataset entry: options as the dataset was built, versions and asset hashes."""

    name: str
    fit: str
    options: Mapping[str, Any]
    version: str
    fit_version: str
    assets: Mapping[str, Any]

    def part(self) -> dict[str, Any]:
        return {"name": self.name, "fit": self.fit, "options": dict(self.options), "version": self.version,
                "fit_version": self.fit_version, "assets": dict(self.assets)}


@dataclasses.dataclass(frozen=True)
class FitSpec:
    """Everything that decides one fit's numbers."""

    aligner: AlignerChoice
    seed: int
    image: EncoderSpec
    text: EncoderSpec
    text_side: str  # the text encoder's name, or the aligner's own text side ("none (images only)", ...)
    data: FitData

    def parts(self) -> dict[str, Any]:
        encoders = {"image": self.image.part(), "text": self.text.part(), "text_side": self.text_side}
        return {"format": FORMAT, "aligner": self.aligner.part(), "seed": int(self.seed), "encoders": encoders,
                "dataset": self.data.part()}

    @cached_property
    def identity(self) -> dict[str, Any]:
        return sealed(self.parts())

    @property
    def key(self) -> str:
        """A short key for this fit within a run (fits shared by dataset entries that differ only in tasks)."""
        return self.identity["sha256"]

    def path(self, root: Path, variant: str = "") -> Path:
        """Where ``--save-aligners`` keeps this fit (``variant``: a sweep's choice gets its own file)."""
        return aligner_path(root, image_encoder=self.image.name, text_encoder=self.text.name,
                            aligner=self.aligner.display, dataset=self.data.name, fit_split=self.data.fit,
                            seed=self.seed, variant=variant)


@dataclasses.dataclass(frozen=True)
class ResultSpec:
    """Everything that decides one score: a fit (with its sweep, before the choice) and the evaluation."""

    fit: FitSpec
    task: str
    task_options: Mapping[str, Any]
    eval_version: str
    eval_split: str
    label_set: str | None
    eval_dataset: Mapping[str, Any] | None = None  # a shifted entry's eval dataset: name, options, version, assets

    def parts(self) -> dict[str, Any]:
        fit = self.fit.parts()
        evaluation: dict[str, Any] = {"eval": self.eval_split, "label_set": self.label_set}
        if self.eval_dataset is not None:  # unshifted identities keep their old parts, so their results stay current
            evaluation["eval_dataset"] = dict(self.eval_dataset)
        task = {"name": self.task, "options": dict(self.task_options), "eval_version": self.eval_version}
        return {**fit, "dataset": {**fit["dataset"], **evaluation}, "task": task}

    @cached_property
    def identity(self) -> dict[str, Any]:
        return sealed(self.parts())

    @property
    def sha256(self) -> str:
        return self.identity["sha256"]

    def path(self, root: Path) -> Path:
        shifted = self.eval_dataset["name"] if self.eval_dataset is not None else None
        return result_path(root, image_encoder=self.fit.image.name, text_encoder=self.fit.text.name,
                           aligner=self.fit.aligner.display, task=self.task, seed=self.fit.seed,
                           dataset=dataset_part(self.fit.data.name, self.label_set, shifted))

