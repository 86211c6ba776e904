"""Visual arithmetic: does ``image - old word + new word`` find the image with that one thing changed?

The query of a swap is, in the aligner's shared space,

    q = normalize(image[source]) - normalize(text(old)) + normalize(text(new))

and it is scored by cosine against every candidate image (normalised), so the length of ``q`` does not
matter. This is the "image of a blue car - 'blue' + 'red'" nearest-image search of Kiros et al. (2014,
"Unifying visual-semantic embeddings with multimodal neural language models"), here on unit vectors:
SIMAT's delta-vector query, the image plus lambda times the difference of the two texts (Couairon et
al., 2021, "Embedding arithmetic of multimodal queries for image retrieval"), with lambda fixed at 1,
since nothing here is tuned on test items. benchmarks/vlap_emoji.py (VLAP's visual semantic
arithmetic) builds the same query, but counts ties in the query's favour.

Candidates are every image of the eval split except the source itself: the source is near its own
query by construction, and counting it would measure how little the words move the query, not whether
they move it to the target. Every image that answers the query is a right answer: swaps with the same
source and the same two words (two shapes of one colour, or two targets differing in jitter only) are
one query with several targets. A query's rank follows :mod:`align.eval.ties` (a wrong image tied with
its best right one ranks first), and R@k is the share of queries whose rank is below k.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F

from align.errors import BadInputError
from align.eval.items import QueryItems
from align.eval.ties import rank_of_best_positive

RECALL_KS: tuple[tuple[str, int], ...] = (("recall@1", 1), ("recall@5", 5))


@dataclass(frozen=True)
class ArithmeticQuery:
    """``image[source] - old + new``: the images ``targets`` answer it; ``attribute`` names what changes."""

    source: int
    attribute: str
    old: str
    new: str
    targets: tuple[int, ...]


def arithmetic_queries(swaps: Iterable[tuple[int, int, str, str, str]]) -> list[ArithmeticQuery]:
    """One query per distinct ``(source, attribute, old, new)`` of ``(source, target, attribute, old, new)``
    swaps, with every target of it, in order of first appearance (the query vector depends on these only)."""
    grouped: dict[tuple[int, str, str, str], list[int]] = {}
    for source, target, attribute, old, new in swaps:
        if source == target:
            raise BadInputError(f"visual arithmetic: swap {old!r} -> {new!r} has image {source} as its own target")
        grouped.setdefault((int(source), attribute, old, new), []).append(int(target))
    return [ArithmeticQuery(source, attribute, old, new, tuple(sorted(set(targets))))
            for (source, attribute, old, new), targets in grouped.items()]


def arithmetic_vectors(image_emb: torch.Tensor, sources: torch.Tensor, old_emb: torch.Tensor,
                       new_emb: torch.Tensor) -> torch.Tensor:
    """``[Q, D]`` queries ``normalize(image[source]) - normalize(old) + normalize(new)`` (see the module docstring)."""
    if old_emb.shape != new_emb.shape or old_emb.shape != (len(sources), image_emb.shape[1]):
        raise BadInputError(f"visual arithmetic: word embeddings {tuple(old_emb.shape)} and {tuple(new_emb.shape)} "
                            f"do not fit {len(sources)} queries of width {image_emb.shape[1]}")
    images = F.normalize(image_emb.float(), dim=-1)
    return images[sources] - F.normalize(old_emb.float(), dim=-1) + F.normalize(new_emb.float(), dim=-1)


def query_ranks(image_emb: torch.Tensor, query_emb: torch.Tensor, sources: torch.Tensor,
                targets: Sequence[Sequence[int]]) -> torch.Tensor:
    """``[Q]`` rank of each query's best target among every image but its source (cosine; the source
    scores ``-inf``, below every candidate, so it never counts against the query)."""
    n = image_emb.shape[0]
    scores = F.normalize(query_emb.float(), dim=-1) @ F.normalize(image_emb.float(), dim=-1).T
    rows = torch.arange(len(sources))
    scores[rows, sources] = float("-inf")
    positive = torch.zeros(len(sources), n, dtype=torch.bool)
    for q, found in enumerate(targets):
        positive[q, list(found)] = True
    return rank_of_best_positive(scores, positive)


def _check(image_emb: torch.Tensor, queries: Sequence[ArithmeticQuery]) -> None:
    if image_emb.ndim != 2 or image_emb.shape[0] < 2:
        raise BadInputError(f"visual arithmetic: expected [N, D] image embeddings with N >= 2, got {tuple(image_emb.shape)}")
    if not queries:
        raise BadInputError("visual arithmetic: no swap has both its images in the eval split")
    n = image_emb.shape[0]
    for query in queries:
        if not query.targets or not all(0 <= i < n for i in (query.source, *query.targets)):
            raise BadInputError(f"visual arithmetic: query from image {query.source} names images outside [0, {n})")
        if query.source in query.targets:
            raise BadInputError(f"visual arithmetic: query from image {query.source} has it as its own target")


def arithmetic_items(image_emb: torch.Tensor, word_emb: torch.Tensor, words: Sequence[str],
                     queries: Sequence[ArithmeticQuery]) -> QueryItems:
    """R@1 and R@5 of every query (:class:`QueryItems`, resampled by source image); ``word_emb [W, D]``
    holds the shared-space embedding of each of ``words`` (every old and new word of the queries)."""
    _check(image_emb, queries)
    index = {word: i for i, word in enumerate(words)}
    missing = sorted({w for q in queries for w in (q.old, q.new)} - set(index))
    if missing or word_emb.shape[0] != len(words):
        raise BadInputError(f"visual arithmetic: {len(words)} words for {word_emb.shape[0]} word embeddings"
                            + (f"; no embedding for {missing[0]!r}" if missing else ""))
    sources = torch.tensor([q.source for q in queries], dtype=torch.long)
    old = word_emb[torch.tensor([index[q.old] for q in queries])]
    new = word_emb[torch.tensor([index[q.new] for q in queries])]
    ranks = query_ranks(image_emb, arithmetic_vectors(image_emb, sources, old, new), sources,
                        [q.targets for q in queries])
    return QueryItems(ranks.numpy().astype(np.int64), sources.numpy().astype(np.int64), int(image_emb.shape[0]),
                      RECALL_KS)


def image_only_items(image_emb: torch.Tensor, queries: Sequence[ArithmeticQuery]) -> QueryItems:
    """The same search with the source image alone as the query (no words): what the arithmetic adds is
    the difference, since a target differs from its source in one attribute and may be near it already."""
    _check(image_emb, queries)
    sources = torch.tensor([q.source for q in queries], dtype=torch.long)
    ranks = query_ranks(image_emb, image_emb.float()[sources], sources, [q.targets for q in queries])
    return QueryItems(ranks.numpy().astype(np.int64), sources.numpy().astype(np.int64), int(image_emb.shape[0]),
                      RECALL_KS)


def recall_by_attribute(items: QueryItems, queries: Sequence[ArithmeticQuery]) -> dict[str, dict[str, float]]:
    """R@1, R@5 and the number of queries for each attribute swapped (colour, shape, size, position...)."""
    out: dict[str, dict[str, float]] = {}
    for attribute in sorted({q.attribute for q in queries}):
        mask = np.array([q.attribute == attribute for q in queries])
        ranks = items.ranks[mask]
        out[attribute] = {name: int((ranks < k).sum()) / len(ranks) for name, k in items.metric_ks}
        out[attribute]["queries"] = int(mask.sum())
    return out
