"""What each benchmark task reads from a dataset entry, and which aligners cannot do it (and why).

These are declarations: the task functions themselves are in :mod:`align.bench.execute.scoring`.
"""

from __future__ import annotations

from typing import Any

from align.bench.plan.config import DatasetSpec

EVAL_VERSION = "2"  # part of every result's identity: bump it when a change in scoring or align/eval moves a score
# 2: one tie rule for every task (align/eval/ties.py): a wrong class tied with the label ranks first
# the dataset entry's options each task reads (also part of the identity of that task's results)
TASK_OPTIONS = {"zeroshot_classification": ("reducer",), "zeroshot_retrieval": ("recall_k",),
                "fewshot": ("fewshot_k",)}


def task_options(task: str, spec: DatasetSpec) -> dict[str, Any]:
    """The options of ``spec`` that ``task`` reads, e.g. ``{"fewshot_k": 5}``."""
    return {name: getattr(spec, name) for name in TASK_OPTIONS.get(task, ())}


def not_applicable(task: str, aligner: Any) -> str | None:
    """Why ``aligner`` cannot do ``task`` (the leaderboard shows "–" and the result file says this),
    or None when it can."""
    name = aligner.name
    if task in ("zeroshot_classification", "zeroshot_retrieval") and aligner.text_input == "none":
        return f"{name} has no text side (it learns from images alone), so it cannot score text against images"
    if task == "captioning" and not aligner.can_caption:
        return f"{name} has no language model to generate captions"
    if task == "code_statistics" and not aligner.quantizes_images:
        return f"{name} does not write images as discrete codes"
    return None
