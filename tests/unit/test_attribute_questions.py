"""Attribute questions scored on hand-made 2-D embeddings: the prompt, the best candidate wins, ties count
against the question, a question with fewer candidates is not padded with real ones, per-attribute accuracy."""

from __future__ import annotations

import pytest
import torch

from align.errors import BadInputError
from align.eval.questions import accuracy_by_attribute, answer_choices, answer_prompt, question_items

CANDIDATES = {"colour": ["red", "blue"], "count": ["one", "two", "three"]}


def test_prompt_is_the_question_then_the_answer() -> None:
    assert answer_prompt("what colour is the circle?", "red") == "what colour is the circle? red"


def test_choices_share_prompts_and_point_at_the_right_answer() -> None:
    choices = answer_choices(["what colour?", "what colour?", "how many?"], ["blue", "red", "two"],
                             ["colour", "colour", "count"], CANDIDATES)
    assert choices.prompts == ("what colour? red", "what colour? blue", "how many? one", "how many? two",
                               "how many? three")
    assert choices.choices.tolist() == [[0, 1, -1], [0, 1, -1], [2, 3, 4]]
    assert choices.correct.tolist() == [1, 0, 1]


def colour_questions(answers: list[str]) -> tuple[list[int], object]:
    return list(range(len(answers))), answer_choices(["what colour?"] * len(answers), answers,
                                                     ["colour"] * len(answers), CANDIDATES)


# prompt 0 "what colour? red" along x, prompt 1 "what colour? blue" along y
PROMPTS = torch.tensor([[1.0, 0.0], [0.0, 1.0]])


def test_hand_computed_accuracy() -> None:
    images = torch.tensor([[1.0, 0.2], [0.3, 1.0], [0.1, 2.0]])
    ids, choices = colour_questions(["red", "red", "blue"])
    items = question_items(images, ids, PROMPTS, choices)
    assert items.ranks.tolist() == [0, 1, 0]
    assert items.metrics() == {"acc1": 2 / 3}


def test_a_wrong_answer_tied_with_the_right_one_ranks_first() -> None:
    ids, choices = colour_questions(["red"])
    assert question_items(torch.tensor([[1.0, 1.0]]), ids, PROMPTS, choices).ranks.tolist() == [1]


def test_padding_never_competes() -> None:
    # a colour question has 2 candidates beside a count question's 3: its third column is padding, which
    # would tie with its right answer (prompt 0) if it were scored as the prompt it is clamped to
    choices = answer_choices(["what colour?", "how many?"], ["red", "one"], ["colour", "count"], CANDIDATES)
    prompts = torch.tensor([[1.0, 0.0], [0.0, 1.0], [0.0, 1.0], [1.0, 1.0], [-1.0, 0.0]])
    items = question_items(torch.tensor([[1.0, 0.0], [0.0, 1.0]]), [0, 1], prompts, choices)
    assert items.ranks.tolist() == [0, 0] and items.images.tolist() == [0, 1]


def test_accuracy_by_attribute() -> None:
    choices = answer_choices(["what colour?", "what colour?", "how many?"], ["red", "blue", "two"],
                             ["colour", "colour", "count"], CANDIDATES)
    prompts = torch.tensor([[1.0, 0.0], [0.0, 1.0], [1.0, 0.0], [0.0, 1.0], [-1.0, -1.0]])
    items = question_items(torch.tensor([[1.0, 0.0], [1.0, 0.1]]), [0, 1, 1], prompts, choices)
    assert items.ranks.tolist() == [0, 1, 1]
    assert accuracy_by_attribute(items, ["colour", "colour", "count"]) == {
        "colour": {"acc1": 0.5, "questions": 2}, "count": {"acc1": 0.0, "questions": 1}}


@pytest.mark.parametrize("answers,attributes,message", [
    (["green"], ["colour"], "answer 'green' to 'q\\?' is not among the colour candidates"),
    (["red"], ["size"], "not among the size candidates \\(none\\)"),
    ([], [], "expected the same, non-zero number"),
])
def test_bad_questions_are_one_line_errors(answers: list[str], attributes: list[str], message: str) -> None:
    with pytest.raises(BadInputError, match=message) as info:
        answer_choices(["q?"] * len(answers), answers, attributes, CANDIDATES)
    assert "\n" not in str(info.value)
