"""Attribute questions with one-word answers, answered by text-image similarity in the shared space.

A question about image i ("what colour is the circle?") is answered by the candidate answer whose prompt
has the highest cosine with image i. The prompt is the question's own text followed by the answer
("what colour is the circle? red"): a question holds only its text, its answer and what it asks (count,
colour, size, shape), so this is the one prompt that tells *which* shape is asked about without parsing
the question; a template from the answer alone ("a photo of something red") would give every colour
question about an image the same answer, whichever of its shapes is meant. This is the plainest form of
zero-shot VQA with a contrastive model (score each question-answer text against the image); Song et
al. (2022, "CLIP models are few-shot learners") first rewrite the question as a statement with a
language model, which needs one here and would make the score depend on it.

The candidates of a question are every answer its attribute has (all colours for a colour question),
given by the caller. A question's rank follows :mod:`align.eval.ties` (a wrong answer tied with the
right one ranks first), and ``acc1`` is the share of questions whose right answer ranks first.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F

from align.errors import BadInputError
from align.eval.items import QueryItems
from align.eval.ties import rank_of_best_positive

ACCURACY_KS: tuple[tuple[str, int], ...] = (("acc1", 1),)


def answer_prompt(question: str, answer: str) -> str:
    """The text scored against the image for one candidate answer (see the module docstring)."""
    return f"{question} {answer}"


@dataclass(frozen=True)
class AnswerChoices:
    """Every question's candidate prompts: ``choices[q, a]`` indexes ``prompts`` (-1 pads a question with
    fewer candidates) and ``correct[q]`` is the column of its right answer. Prompts are de-duplicated,
    since many images are asked the same question with the same candidates."""

    prompts: tuple[str, ...]
    choices: torch.Tensor  # [Q, A] int64
    correct: torch.Tensor  # [Q] int64


def answer_choices(questions: Sequence[str], answers: Sequence[str], attributes: Sequence[str],
                   candidates: Mapping[str, Sequence[str]]) -> AnswerChoices:
    """The prompts of every question's candidates (``candidates[attribute]``); the right answer must be one."""
    if not (len(questions) == len(answers) == len(attributes)) or not questions:
        raise BadInputError(f"attribute questions: {len(questions)} questions, {len(answers)} answers and "
                            f"{len(attributes)} attributes; expected the same, non-zero number")
    width = max(len(candidates.get(a, ())) for a in set(attributes))
    prompts: dict[str, int] = {}
    choices = torch.full((len(questions), width), -1, dtype=torch.long)
    correct = torch.empty(len(questions), dtype=torch.long)
    for q, (question, answer, attribute) in enumerate(zip(questions, answers, attributes, strict=True)):
        options = list(candidates.get(attribute, ()))
        if answer not in options:
            raise BadInputError(f"attribute questions: answer {answer!r} to {question!r} is not among the "
                                f"{attribute} candidates ({', '.join(options) or 'none'})")
        for a, option in enumerate(options):
            choices[q, a] = prompts.setdefault(answer_prompt(question, option), len(prompts))
        correct[q] = options.index(answer)
    return AnswerChoices(tuple(prompts), choices, correct)


def answer_ranks(image_emb: torch.Tensor, images: torch.Tensor, prompt_emb: torch.Tensor,
                 choices: AnswerChoices) -> torch.Tensor:
    """``[Q]`` rank of each question's right answer among its candidates, by the cosine of each candidate
    prompt with the question's image (padding scores ``-inf`` and never counts)."""
    if image_emb.ndim != 2 or prompt_emb.shape != (len(choices.prompts), image_emb.shape[1]):
        raise BadInputError(f"attribute questions: image embeddings {tuple(image_emb.shape)} and prompt embeddings "
                            f"{tuple(prompt_emb.shape)} do not fit {len(choices.prompts)} prompts")
    if images.min() < 0 or images.max() >= image_emb.shape[0]:
        raise BadInputError(f"attribute questions: image ids must lie in [0, {image_emb.shape[0]})")
    prompts = F.normalize(prompt_emb.float(), dim=-1)
    queried = F.normalize(image_emb.float(), dim=-1)[images]  # [Q, D]
    scores = torch.einsum("qd,qad->qa", queried, prompts[choices.choices.clamp(min=0)])
    scores = scores.masked_fill(choices.choices < 0, float("-inf"))
    positive = torch.nn.functional.one_hot(choices.correct, choices.choices.shape[1]).bool()
    return rank_of_best_positive(scores, positive)


def question_items(image_emb: torch.Tensor, images: Sequence[int], prompt_emb: torch.Tensor,
                   choices: AnswerChoices) -> QueryItems:
    """``acc1`` of every question (:class:`QueryItems`, resampled by the image asked about)."""
    ids = torch.as_tensor(list(images), dtype=torch.long)
    if ids.shape != choices.correct.shape:
        raise BadInputError(f"attribute questions: {len(ids)} image ids for {len(choices.correct)} questions")
    ranks = answer_ranks(image_emb, ids, prompt_emb, choices)
    return QueryItems(ranks.numpy().astype(np.int64), ids.numpy().astype(np.int64), int(image_emb.shape[0]),
                      ACCURACY_KS)


def accuracy_by_attribute(items: QueryItems, attributes: Sequence[str]) -> dict[str, dict[str, float]]:
    """``acc1`` and the number of questions for each attribute asked (count, colour, size, shape...)."""
    out: dict[str, dict[str, float]] = {}
    kinds = np.asarray(list(attributes))
    for attribute in sorted(set(attributes)):
        ranks = items.ranks[kinds == attribute]
        out[attribute] = {"acc1": int((ranks < 1).sum()) / len(ranks), "questions": len(ranks)}
    return out
