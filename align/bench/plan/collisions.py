"""Refuse, before any work, a config whose entries or aligners would write one file with different settings
(each rerun would then find the other's result and report or recompute it)."""

from __future__ import annotations

import json
from pathlib import Path

from align.bench.plan.config import BenchConfig, DatasetSpec
from align.bench.plan.layout import aligner_path, dataset_part, result_path
from align.bench.plan.tasks import task_options
from align.bench.plan.units import AlignerPlan, encoder_lists
from align.errors import BadInputError


def _settings(spec: DatasetSpec, plan: AlignerPlan, task: str | None) -> str:
    """What the config says about one file (everything but what the run measures: versions, weights)."""
    entry = {"name": spec.name, "fit": spec.fit, "options": spec.options}
    sweep = None  # a fitted file holds a sweep's choice, which its name tells apart (FitSpec.path's variant)
    if task is not None:
        entry.update(eval=spec.eval, eval_dataset=spec.eval_dataset, label_set=spec.label_set, task=task,
                     **task_options(task, spec))
        sweep = plan.sweep_part(spec)
    return json.dumps([entry, plan.spec.name, plan.aligner.hparams, sweep], sort_keys=True, default=str)


def _files(spec: DatasetSpec, plan: AlignerPlan, image_encoder: str, text_encoder: str,
           save_aligners: bool) -> list[tuple[Path, str]]:
    root = Path("results")
    files = [(result_path(root, image_encoder=image_encoder, text_encoder=text_encoder, aligner=plan.spec.display,
                          dataset=dataset_part(spec.name, spec.label_set, spec.eval_dataset), task=task, seed=0),
              _settings(spec, plan, task)) for task in spec.tasks]
    if save_aligners:
        files.append((aligner_path(root, image_encoder=image_encoder, text_encoder=text_encoder,
                                   aligner=plan.spec.display, dataset=spec.name, fit_split=spec.fit, seed=0),
                      _settings(spec, plan, None)))
    return files


def check_collisions(config: BenchConfig, plans: list[AlignerPlan], text_encoders: list[str],
                     save_aligners: bool) -> None:
    """A one-line error if two dataset entries or two aligners of ``config`` would write the same result (or,
    with ``save_aligners``, the same fitted aligner) with different settings."""
    seen: dict[Path, tuple[str, str]] = {}
    image_encoders = encoder_lists(config, plans)[0]
    for i, spec in enumerate(config.datasets):
        for j, plan in enumerate(plans):
            for image_encoder in image_encoders:
                for text_encoder in (t for t in text_encoders if plan.runs_with(image_encoder, t, config)):
                    for path, settings in _files(spec, plan, image_encoder, text_encoder, save_aligners):
                        where = f"datasets[{i}] with aligners[{j}]"
                        if path in seen and seen[path][0] != settings:
                            raise BadInputError(
                                f"{config.source or 'config'}: {seen[path][1]} and {where} would both write "
                                f"{path.relative_to(Path('results'))} with different settings; give the aligners "
                                "different labels, or run the dataset entries into separate results folders")
                        seen.setdefault(path, (settings, where))
