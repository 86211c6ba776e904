"""The one tie rule of every scored task: a wrong candidate tied with the correct one ranks first.

Retrieval (both ways), zero-shot classification, linear probes and few-shot all rank candidates
(images, texts, classes) by a score, and a query is a hit at k when its best correct candidate is
among its first k. Exact ties happen: pixel-identical images under different names give identical
image embeddings, a caption shared by two images identical text embeddings, a degenerate aligner
equal scores everywhere. Every task here counts a tie against the query (the pessimistic rule): a
query's rank is the number of wrong candidates scoring *at least as high* as its best correct one,
so a hit needs a strict lead and a model scoring everything equal gets no credit. The rule is a
pure function of the scores (no hidden order), and per-item outputs stay integers.

CLIP_benchmark instead takes ``torch.topk``'s order among tied candidates (its retrieval and
``acc1``/``acc5``) and ``argmax``'s first tied class (its ``mean_per_class_recall``): where a tie
straddles k its number can be higher than ours, never lower, by at most the share of queries whose
tie straddles k (:func:`tied_below`); without such ties the two agree exactly.
"""

from __future__ import annotations

import torch


def rank_of_best_positive(scores: torch.Tensor, positive: torch.Tensor) -> torch.Tensor:
    """For each query row of ``scores [Q, N]``, how many negatives score ``>=`` its best positive
    (``[Q]`` int64; a hit at k iff it is below k). ``positive [Q, N]`` marks the correct candidates;
    a positive tied with another positive is no tie against the query."""
    best = scores.masked_fill(~positive, float("-inf")).amax(dim=1, keepdim=True)
    return ((scores >= best) & ~positive).sum(dim=1)


def tied_below(scores: torch.Tensor, positive: torch.Tensor) -> torch.Tensor:
    """For each query, how many negatives score *exactly* its best positive (``[Q]`` int64): the
    ranks a tie-breaking order (``torch.topk``'s) may give back. ``rank - tied_below`` is the rank
    under the optimistic rule; a tie straddles k where ``rank - tied_below < k <= rank``."""
    best = scores.masked_fill(~positive, float("-inf")).amax(dim=1, keepdim=True)
    return ((scores == best) & ~positive).sum(dim=1)


def label_positives(labels: torch.Tensor, num_classes: int) -> torch.Tensor:
    """``[n, C]`` booleans marking each row's label: classification as retrieval with one positive."""
    return torch.nn.functional.one_hot(labels.long(), num_classes).bool()


def ranked_predictions(scores: torch.Tensor, labels: torch.Tensor, k: int) -> torch.Tensor:
    """Each row's first ``k`` classes (``[n, k]`` int64, best first) under the tie rule: the best wrong
    classes in score order, with the label inserted at its rank (:func:`rank_of_best_positive`) when
    that rank is below k. So ``label in row[:j]`` iff the label's rank is below j, for every j <= k,
    and column 0 is a wrong class wherever one ties with the label at the top."""
    n, num_classes = scores.shape
    positive = label_positives(labels, num_classes)
    rank = rank_of_best_positive(scores, positive)
    if num_classes == 1:
        return labels.long().view(n, 1)
    wrong = scores.masked_fill(positive, float("-inf"))
    # the best wrong classes; the label's own column (-inf) is never among the first min(k, C-1)
    others = torch.topk(wrong, k=min(k, num_classes - 1), dim=1).indices
    column = torch.arange(k).expand(n, k)
    after = (column > rank[:, None]).long()  # columns past the label's slot shift one wrong class right
    source = (column - after).clamp(max=others.shape[1] - 1)
    out = others.gather(1, source)
    return torch.where(column == rank[:, None], labels.long()[:, None].expand(n, k), out)
