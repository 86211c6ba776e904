"""A unit's tasks share one context, which embeds each split's images once: the probe, few-shot and zero-shot
tasks of an aligner that embeds through a frozen LM (LQAE) would otherwise redo the same images per task."""

from __future__ import annotations

import dataclasses
from typing import Any

import torch

from align.bench.execute.scoring import TaskContext


class CountingAligner:
    def __init__(self) -> None:
        self.calls: list[int] = []

    def encode_image(self, inputs: torch.Tensor) -> torch.Tensor:
        self.calls.append(len(inputs))
        return inputs * 2


class Part:
    def __init__(self, rows: int) -> None:
        self.inputs = torch.arange(rows, dtype=torch.float32)[:, None]

    def for_aligner(self, aligner: Any) -> torch.Tensor:
        return self.inputs


def context(aligner: CountingAligner, fit: Part, evaluation: Part) -> TaskContext:
    return TaskContext(spec=None, aligner=aligner, bank=None, text_encoder="txt", fit=fit, eval=evaluation,  # type: ignore[arg-type]
                       seed=0)


def test_each_part_is_embedded_once_per_context() -> None:
    aligner, fit, evaluation = CountingAligner(), Part(5), Part(3)
    ctx = context(aligner, fit, evaluation)
    first = ctx.embed_images(ctx.fit), ctx.embed_images(ctx.eval)
    again = ctx.embed_images(ctx.fit), ctx.embed_images(ctx.eval)
    assert aligner.calls == [5, 3]
    assert all(torch.equal(a, b) for a, b in zip(first, again))
    assert torch.equal(first[0], fit.inputs * 2)


def test_another_part_or_another_context_embeds_again() -> None:
    aligner, fit, evaluation = CountingAligner(), Part(5), Part(3)
    context(aligner, fit, evaluation).embed_images(fit)
    ctx = context(aligner, fit, evaluation)
    ctx.embed_images(fit)
    ctx.embed_images(Part(4))
    assert aligner.calls == [5, 5, 4]


def test_a_context_copied_for_another_aligner_does_not_inherit_the_first_ones_embeddings() -> None:
    first, second, fit = CountingAligner(), CountingAligner(), Part(5)
    ctx = context(first, fit, Part(3))
    ctx.embed_images(fit)
    dataclasses.replace(ctx, aligner=second).embed_images(fit)
    assert first.calls == [5] and second.calls == [5]
