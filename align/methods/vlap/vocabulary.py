"""Which word embeddings VLAP assigns to, and with what row marginal (the OT "prototypes").

Why this matters: the assignment puts mass ``1/B`` on each of B columns (captions) and ``r_k`` on each of
K rows (words). When K is much larger than the number of columns, every caption has to take about K/B
words, most of them unrelated to it, and the targets become nearly uniform over a few hundred words
(the dilution that kept VLAP near chance with 20,000 words against a batch of 64). Two options fix it:

* ``vocab="captions"``: the words of the fit captions together with the ``size`` most frequent English
  words (distractors), instead of the ``size`` most frequent words alone (``"frequent"``);
* ``prior="captions"``: the row marginal is each word's count in the fit captions (VLAP's draft computes
  its frequency prior on its own training captions, CC3M), so the OT sends each caption's mass to words
  that captions actually use; ``"frequency"`` is general English frequency (wordfreq), ``"uniform"``
  SwAV's marginal over every vocabulary word. ``"uniform_on_captions"`` is the ablation of the caption
  counts at equal support: the caption prior with its mass on the caption words spread evenly over them
  (every other word keeps exactly its pseudo-count mass), so only the shape differs, not which words
  get the mass. (Plain ``"uniform"`` puts most of its mass on the ~2,000 distractor words that no
  caption uses, which the caption prior gives under 1%.)

Both depend on the fit data, so a fitted VLAP stores the chosen rows and marginal with its weights.
"""

from __future__ import annotations

import torch

from align.errors import BadInputError
from align.methods.vlap.word_prior import frequency_prior, frequent_subset, uniform_prior
from align.text.base import EmbeddingTable

VOCABULARIES = ("frequent", "captions")
PRIORS = ("uniform", "frequency", "captions", "uniform_on_captions")
#: priors computed from the fit captions (so saved with a fitted VLAP)
CAPTION_PRIORS = ("captions", "uniform_on_captions")
#: pseudo-count of a vocabulary word that no fit caption uses, under the caption prior: small enough that
#: captions keep their mass on their own words, non-zero so every word stays a possible target
CAPTION_PSEUDO_COUNT = 0.01


def caption_tokens(ids: torch.Tensor, mask: torch.Tensor, special: torch.Tensor) -> torch.Tensor:
    """Every non-special token id of the (right-padded) captions ``ids [N, L]``, with repetitions."""
    keep = mask.bool() & ~special[ids]
    return ids[keep]


def vocabulary(table: EmbeddingTable, kind: str, size: int | None, captions: torch.Tensor | None = None) -> torch.Tensor:
    """Sorted row ids to assign to: the ``size`` most frequent words (all word rows when ``size`` is None),
    joined, for ``kind="captions"``, by every token of ``captions`` (from :func:`caption_tokens`)."""
    if kind not in VOCABULARIES:
        raise BadInputError(f"vlap: unknown vocabulary {kind!r}; use one of {', '.join(VOCABULARIES)}")
    if size is None:
        ids = torch.tensor(table.word_ids, dtype=torch.long)
    else:
        ids = frequent_subset(table.tokens, size, special_ids=table.special_ids)
    if kind == "captions":
        if captions is None or captions.numel() == 0:
            raise BadInputError("vlap: vocab='captions' needs the fit captions' tokens")
        ids = torch.cat([ids, captions.long()])
    ids = ids.unique()  # sorted
    if len(ids) < 2:
        raise BadInputError(f"vlap: the table {table.name!r} gives fewer than 2 words to assign to")
    return ids


def row_prior(table: EmbeddingTable, ids: torch.Tensor, kind: str, captions: torch.Tensor | None = None) -> torch.Tensor:
    """``[K]`` float64 OT row marginal over the vocabulary ``ids`` (sums to 1); the caption priors count
    the caption tokens ``captions`` (from :func:`caption_tokens`)."""
    if kind == "uniform":
        return uniform_prior(len(ids))
    if kind == "frequency":
        return frequency_prior([table.tokens[i] for i in ids.tolist()])
    if kind not in CAPTION_PRIORS:
        raise BadInputError(f"vlap: unknown prior {kind!r}; use one of {', '.join(PRIORS)}")
    if captions is None or captions.numel() == 0:
        raise BadInputError(f"vlap: prior={kind!r} needs the fit captions' tokens")
    position = torch.full((table.vocab_size,), -1, dtype=torch.long)
    position[ids] = torch.arange(len(ids))
    used = position[captions.long()]
    counts = torch.bincount(used[used >= 0], minlength=len(ids)).double()
    if kind == "uniform_on_captions":  # the same total on the same words, spread evenly
        support = counts > 0
        counts[support] = counts.sum() / support.sum()
    counts += CAPTION_PSEUDO_COUNT
    return counts / counts.sum()
