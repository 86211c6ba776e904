"""Visual arithmetic scored on hand-made 2-D embeddings whose answers are known: the query formula, the
source left out of the candidates, ties counted against the query, and swaps of one query merged."""

from __future__ import annotations

import math

import pytest
import torch

from align.errors import BadInputError
from align.eval.arithmetic import (
    ArithmeticQuery,
    arithmetic_items,
    arithmetic_queries,
    arithmetic_vectors,
    image_only_items,
    recall_by_attribute,
)

WORDS = ["red", "blue", "same-a", "same-b"]
# red points along x, blue along y; two words with one embedding make a query equal to its source image
WORD_EMB = torch.tensor([[2.0, 0.0], [0.0, 3.0], [0.0, 1.0], [0.0, 1.0]])  # lengths differ: normalised inside


def images(*rows: tuple[float, float]) -> torch.Tensor:
    return torch.tensor(rows, dtype=torch.float32)


def query(source: int, targets: tuple[int, ...], old: str = "red", new: str = "blue") -> ArithmeticQuery:
    return ArithmeticQuery(source, "colour", old, new, targets)


def test_query_is_unit_image_minus_unit_old_plus_unit_new() -> None:
    got = arithmetic_vectors(images((3.0, 4.0)), torch.tensor([0]), torch.tensor([[2.0, 0.0]]), torch.tensor([[0.0, 5.0]]))
    assert torch.allclose(got, torch.tensor([[0.6 - 1.0, 0.8 + 1.0]]))


def test_hand_computed_recall_at_1_and_5() -> None:
    # query from image 0 = (1,0) - red + blue = (0,1): image 1 (0,1) first, image 2 (1,1) second
    emb = images((1.0, 0.0), (0.0, 1.0), (1.0, 1.0), (-1.0, 0.0))
    items = arithmetic_items(emb, WORD_EMB, WORDS, [query(0, (1,)), query(0, (2,))])
    assert items.ranks.tolist() == [0, 1]
    assert items.metrics() == {"recall@1": 0.5, "recall@5": 1.0}
    assert items.images.tolist() == [0, 0] and items.num_images == 4


def test_the_source_is_no_candidate() -> None:
    # "same-a" -> "same-b" leaves the query on its source (cosine 1); the target (1,1) is the best other image
    emb = images((1.0, 0.0), (0.0, 1.0), (1.0, 1.0), (-1.0, 0.0))
    items = arithmetic_items(emb, WORD_EMB, WORDS, [query(0, (2,), "same-a", "same-b")])
    assert items.ranks.tolist() == [0]  # it would be 1 if the source itself were a candidate


def test_a_wrong_image_tied_with_the_target_ranks_first() -> None:
    emb = images((1.0, 0.0), (0.0, 1.0), (0.0, 2.0), (-1.0, 0.0))  # images 1 and 2: one direction, tied
    items = arithmetic_items(emb, WORD_EMB, WORDS, [query(0, (1,)), query(0, (2,))])
    assert items.ranks.tolist() == [1, 1]
    assert items.metrics() == {"recall@1": 0.0, "recall@5": 1.0}


def test_swaps_with_one_query_become_one_query_with_every_target() -> None:
    swaps = [(0, 1, "colour", "red", "blue"), (0, 2, "colour", "red", "blue"), (0, 3, "colour", "red", "green"),
             (1, 0, "colour", "blue", "red")]
    found = arithmetic_queries(swaps)
    assert found == [query(0, (1, 2)), ArithmeticQuery(0, "colour", "red", "green", (3,)), query(1, (0,), "blue", "red")]
    emb = images((1.0, 0.0), (0.0, 1.0), (0.0, 1.0), (-1.0, 0.0))  # both targets tied: neither is wrong
    items = arithmetic_items(emb, WORD_EMB, WORDS, found[:1])
    assert items.ranks.tolist() == [0]


def test_image_only_search_ranks_by_the_source_image_alone() -> None:
    emb = images((1.0, 0.0), (0.0, 1.0), (1.0, 0.1), (-1.0, 0.0))
    assert arithmetic_items(emb, WORD_EMB, WORDS, [query(0, (1,))]).ranks.tolist() == [0]
    assert image_only_items(emb, [query(0, (1,))]).ranks.tolist() == [1]  # (1, 0.1) is nearer the source


def test_recall_by_attribute_splits_the_queries() -> None:
    emb = images((1.0, 0.0), (0.0, 1.0), (1.0, 1.0), (-1.0, math.sqrt(3)))
    queries = [query(0, (1,)), ArithmeticQuery(0, "size", "red", "blue", (2,))]
    by = recall_by_attribute(arithmetic_items(emb, WORD_EMB, WORDS, queries), queries)
    assert by == {"colour": {"recall@1": 1.0, "recall@5": 1.0, "queries": 1},
                  "size": {"recall@1": 0.0, "recall@5": 1.0, "queries": 1}}


@pytest.mark.parametrize("queries,words,message", [
    ([], WORDS, "no swap has both its images"),
    ([query(0, (0,))], WORDS, "its own target"),
    ([query(0, (9,))], WORDS, "outside"),
    ([query(0, (1,), "red", "green")], WORDS, "no embedding for 'green'"),
])
def test_bad_queries_are_one_line_errors(queries: list[ArithmeticQuery], words: list[str], message: str) -> None:
    with pytest.raises(BadInputError, match=message) as info:
        arithmetic_items(images((1.0, 0.0), (0.0, 1.0)), WORD_EMB, words, queries)
    assert "\n" not in str(info.value)
