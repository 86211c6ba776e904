"""Run a benchmark config: every encoder pair x aligner x dataset x task x seed, skipping done work.

Features come from the cache (computed once per encoder and split); an aligner is fit once per
(encoder pair, dataset, seed) and scored on every task of that dataset. Finished results are
skipped unless ``overwrite``; each result is written atomically as soon as it exists, so an
interrupted run resumes where it stopped.
"""

from __future__ import annotations

import dataclasses
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch

from align.bench.config import AlignerSpec, BenchConfig, DatasetSpec
from align.bench.pairs import FeatureBank, SplitFeatures, fit_captions
from align.bench.results import make_result, result_path, write_result
from align.bench.tasks import TASKS, TaskContext

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


def run_benchmark(config: BenchConfig, results_dir: Path, *, overwrite: bool = False, progress: bool = True,
                  bank: FeatureBank | None = None, echo: Callable[[str], None] = print,
                  skip_bad: bool = False) -> RunSummary:
    from align.registry import ALIGNERS

    summary = RunSummary()
    started = time.perf_counter()
    bank = bank or FeatureBank(progress=progress)
    for aligner in config.aligners:  # fail on unknown names before any embedding work
        ALIGNERS.meta(aligner.name)
    for spec in config.datasets:
        dataset = _open_dataset(spec, skip_bad)
        fit_split, eval_split = dataset.load(spec.fit), dataset.load(spec.eval)
        for image_encoder in config.image_encoders:
            for text_encoder in config.text_encoders:
                todo = [(a, seed) for a in config.aligners for seed in config.seeds
                        if overwrite or not all(result_path(results_dir, image_encoder=image_encoder,
                                                            text_encoder=text_encoder, aligner=a.display,
                                                            dataset=_path_name(spec), task=t, seed=seed).exists()
                                                for t in spec.tasks)]
                summary.skipped += (len(config.aligners) * len(config.seeds) - len(todo)) * len(spec.tasks)
                if not todo:
                    continue
                captions, pairing = fit_captions(fit_split)
                fit = SplitFeatures(fit_split, bank.images(image_encoder, fit_split))
                fit_texts = bank.texts(text_encoder, captions, fit_split, "fit-captions")
                evaluation = SplitFeatures(eval_split, bank.images(image_encoder, eval_split))
                for aligner_spec, seed in todo:
                    summary.written += _run_one(
                        config, spec, aligner_spec, seed, image_encoder, text_encoder, fit, fit_texts, evaluation,
                        pairing, bank, results_dir, overwrite, echo)
    summary.seconds = time.perf_counter() - started
    return summary


def _run_one(config: BenchConfig, spec: DatasetSpec, aligner_spec: AlignerSpec, seed: int, image_encoder: str,
             text_encoder: str, fit: SplitFeatures, fit_texts: torch.Tensor, evaluation: SplitFeatures,
             pairing: str, bank: FeatureBank, results_dir: Path, overwrite: bool,
             echo: Callable[[str], None]) -> int:
    from align.registry import ALIGNERS

    torch.manual_seed(seed)
    fit_started = time.perf_counter()
    aligner = ALIGNERS.create(aligner_spec.name, **aligner_spec.hparams)
    if "seed" in getattr(aligner, "hparams", {}) and "seed" not in aligner_spec.hparams:
        # trained aligners seed themselves: give them the benchmark's seed unless the config fixes one
        aligner = ALIGNERS.create(aligner_spec.name, **{**aligner_spec.hparams, "seed": seed})
    aligner.fit(fit.images, fit_texts)
    fit_seconds = time.perf_counter() - fit_started
    ctx = TaskContext(spec, aligner, bank, text_encoder, fit, evaluation, seed)
    written = 0
    for task in spec.tasks:
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
            task_details=details, config=config.raw, config_path=config.source,
            wall_time_s={"fit": round(fit_seconds, 4), "task": round(time.perf_counter() - task_started, 4)},
        )
        write_result(path, result)
        written += 1
        shown = ", ".join(f"{k} {v:.3f}" for k, v in list(metrics.items())[:4])
        echo(f"{spec.name:<14} {task:<24} {aligner_spec.display:<12} seed {seed}: {shown}")
    return written
