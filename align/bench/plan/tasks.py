"""What each benchmark task reads from a dataset entry, and which aligners cannot do it (and why).

These are declarations: the task functions themselves are in :mod:`align.bench.execute.scoring`.
"""

from __future__ import annotations

from typing import Any

EVAL_VERSION = "2"  # part of every result's identity: bump it when a change in scoring or align/eval moves a score
# 2: one tie rule for every task (align/eval/ties.py): a wrong class tied with the label ranks first
# the dataset entry's options each task reads (also part of the identity of that task's results)
TASK_OPTIONS = {"zeroshot_classification": ("reducer",), "zeroshot_retrieval": ("recall_k",),
                "fewshot": ("fewshot_k",)}


# Tasks scored on ground truth beyond labels and captions: the dataset method each reads (called with a
# plain split name; e.g. align.data.shapes.Shapes.arithmetic) and what that ground truth is called.
GROUND_TRUTH = {"visual_arithmetic": ("arithmetic", "visual arithmetic ground truth"),
                "attribute_questions": ("questions", "attribute questions")}
TEXT_IMAGE_TASKS = ("zeroshot_classification", "zeroshot_retrieval", *GROUND_TRUTH)


def missing_truth(task: str, dataset: str) -> str:
    """The one-line problem of scoring ``task`` on ``dataset``, which has no such ground truth."""
    method, what = GROUND_TRUTH[task]
    return f"dataset {dataset!r} has no {what} (no .{method}()), so it cannot be scored on task {task!r}"


def truth_problem(task: str, dataset: str) -> str | None:
    """Why registered ``dataset`` cannot give ``task`` its ground truth, or None when it can or when that
    is known only once it is built (a factory function that does not declare the class it returns)."""
    import typing

    from align.registry import DATASETS

    if task not in GROUND_TRUTH:
        return None
    factory = DATASETS.factory(dataset)
    if not isinstance(factory, type):
        try:
            factory = typing.get_type_hints(factory).get("return")
        except Exception:  # noqa: BLE001 (an annotation that does not resolve: checked when the task runs)
            return None
    if not isinstance(factory, type):
        return None
    return None if callable(getattr(factory, GROUND_TRUTH[task][0], None)) else missing_truth(task, dataset)


def task_options(task: str, spec: Any) -> dict[str, Any]:
    """The options of dataset entry ``spec`` (a ``config.DatasetSpec``, not imported: config.py asks this
    module which tasks a dataset's ground truth allows) that ``task`` reads, e.g. ``{"fewshot_k": 5}``."""
    return {name: getattr(spec, name) for name in TASK_OPTIONS.get(task, ())}


def not_applicable(task: str, aligner: Any) -> str | None:
    """Why ``aligner`` cannot do ``task`` (the leaderboard shows "–" and the result file says this),
    or None when it can."""
    name = aligner.name
    if task in TEXT_IMAGE_TASKS and aligner.text_input == "none":
        return f"{name} has no text side (it learns from images alone), so it cannot score text against images"
    if task == "captioning" and not aligner.can_caption:
        return f"{name} has no language model to generate captions"
    if task == "code_statistics" and not aligner.quantizes_images:
        return f"{name} does not write images as discrete codes"
    return None
