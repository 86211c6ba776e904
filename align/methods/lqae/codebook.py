"""Which rows of the frozen table LQAE may quantize to, and the random-table baseline's rows.

- ``codebook_rows="all"``: every row that is not special (or every row, ``exclude_special=False``),
  the paper's setting (all of RoBERTa's 50k rows).
- ``codebook_rows="words"``: the ``size`` most frequent *whole words*, so an image's tokens read as
  words rather than word pieces, byte fallbacks or foreign scripts (Gemma's table has 262k rows, most
  of them not English words). A whole word: the row's token starts a word (SentencePiece's "▁" or
  byte-level BPE's "Ġ" mark it; in WordPiece any token but a "##" continuation), the rest is
  alphabetic (``str.isalpha``) and wordfreq knows it in English. Frequency is wordfreq's, most frequent
  first; spellings that differ only in case keep one row (the lower-case one, else the lowest id).
"""

from __future__ import annotations

import torch

from align.errors import BadInputError
from align.text.base import EmbeddingTable

CODEBOOK_ROWS = ("all", "words")
_START_MARKERS = ("▁", "Ġ")  # SentencePiece / byte-level BPE: the piece starts a word
_CONTINUATION = "##"  # WordPiece: the piece continues a word


def _bracketed(token: str) -> bool:
    """Control tokens written ``<...>`` / ``[...]`` (a table may not list all of them as special)."""
    return len(token) > 2 and (token[0], token[-1]) in (("<", ">"), ("[", "]"))


def whole_word_candidates(tokens: list[str], special_ids: list[int]) -> list[tuple[int, str]]:
    """``(row id, word)`` of every row whose token is a word start and alphabetic after its marker."""
    marked = any(t.startswith(_START_MARKERS) for t in tokens)
    special = set(special_ids)
    out = []
    for i, token in enumerate(tokens):
        if i in special or _bracketed(token):
            continue
        if marked:
            if not token.startswith(_START_MARKERS):
                continue
            word = token[1:]
        elif token.startswith(_CONTINUATION):
            continue
        else:
            word = token
        if word.isalpha():
            out.append((i, word))
    return out


def frequent_words(table: EmbeddingTable, size: int | None, lang: str = "en") -> torch.Tensor:
    """Row ids of the ``size`` most frequent whole words (all of them when ``size`` is None), most
    frequent first; a one-line error when the table has fewer."""
    from wordfreq import word_frequency

    scored = []
    for i, word in whole_word_candidates(table.tokens, table.special_ids):
        freq = word_frequency(word, lang)
        if freq > 0:
            scored.append((-freq, word != word.lower(), i, word.casefold()))
    scored.sort()
    seen: set[str] = set()
    ids = []
    for _, _, i, key in scored:
        if key not in seen:
            seen.add(key)
            ids.append(i)
    if size is not None and len(ids) < size:
        raise BadInputError(f"lqae: codebook_size={size} but table {table.name!r} has only {len(ids)} whole "
                            "English words for codebook_rows='words'")
    return torch.tensor(ids[:size] if size is not None else ids, dtype=torch.long)


def searchable_ids(table: EmbeddingTable, rows: str, size: int | None, exclude_special: bool) -> torch.Tensor:
    """The table rows the quantizer searches (full-table ids)."""
    if rows == "words":
        return frequent_words(table, size)
    if rows != "all":
        raise BadInputError(f"lqae: codebook_rows must be one of {', '.join(CODEBOOK_ROWS)}, got {rows!r}")
    return torch.tensor(table.word_ids if exclude_special else range(table.vocab_size), dtype=torch.long)


def random_table(weight: torch.Tensor, seed: int) -> torch.Tensor:
    """A Gaussian table of ``weight``'s shape with its per-dimension mean and std (seeded)."""
    generator = torch.Generator().manual_seed(seed)
    noise = torch.randn(weight.shape, generator=generator)
    return noise * weight.std(0, keepdim=True) + weight.mean(0, keepdim=True)


def random_codebook(weight: torch.Tensor, ids: torch.Tensor, seed: int, restricted: bool) -> torch.Tensor:
    """The random baseline's table: the LM table's shape, Gaussian rows with its per-dimension statistics;
    with a restricted codebook the searchable rows ``ids`` get the statistics of those rows instead, so
    the baseline's codes match the language codebook's in number and spread."""
    rows = random_table(weight, seed)
    if restricted:
        rows[ids] = random_table(weight[ids], seed)
    return rows
