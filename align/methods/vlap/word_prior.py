"""Word-frequency priors over a language model's vocabulary, for VLAP's optimal-transport rows.

VLAP replaces SwAV's uniform prototype marginal by a word-frequency-aware one (papers.md §3.3). The
draft code loads ``vocab_dist`` from pickles computed on CC3M and uses ``softmax(vocab_dist / 0.25)``;
what ``vocab_dist`` holds (counts? probabilities? log-frequencies?) is unknown (papers.md §3.4), and the
readings differ wildly:

* log-frequency (natural log): ``softmax(ln f / 0.25) = f^4 / Σ f^4``. Over the 32k most frequent
  English words this has perplexity ~2: "the" alone gets ~82% of the mass, so OT would send most of
  every batch to "the";
* log10-frequency: the same family with T = 0.25 · ln 10 ≈ 0.58 (perplexity ~23);
* probabilities: ``softmax(p / 0.25)`` is within a factor e^(4 max p) ≈ 1.2 of uniform;
* counts: one-hot on the most frequent token.

This module offers the family explicitly: ``recipe="softmax_log"`` is ``softmax(ln f / T)``
(``= f^(1/T)`` normalised; invariant to scaling ``f``, so counts and frequencies agree; T=1 is plain
normalised frequency), ``recipe="softmax_freq"`` is ``softmax((f / Σf) / T)``, and
``recipe="normalized"`` is ``f / Σf``. **Default: ``normalized``**, the plain frequency prior, because
the literal log reading at T = 0.25 is degenerate (see above); pass ``recipe="softmax_log"`` to
reproduce that reading, with ``temperature=0.25`` as the draft's value.

Frequencies come from the ``wordfreq`` package (``word_frequency(word, lang)``, case-insensitive,
~10 µs a token, so a 262k vocabulary takes a few seconds; imported lazily). Corpus counts (papers.md
§7.3) go straight to :func:`prior_from_frequencies`. Token strings are cleaned of WordPiece ``##``,
SentencePiece ``▁``, byte-level BPE ``Ġ`` and CLIP's ``</w>``; special tokens (``special_ids``, or any
``[...]`` / ``<...>`` token) and tokens wordfreq does not know get ``floor`` (default 1e-9, below the
1e-8 floor of wordfreq's lists). Tokens that clean to the same word share its frequency (``▁the``,
``the`` and ``The`` each get f(the)); :func:`frequent_subset` keeps one token per word.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import Literal

import torch

from align.errors import BadInputError

Recipe = Literal["normalized", "softmax_log", "softmax_freq"]

#: wordfreq's lists stop at 1e-8; unknown and special tokens get less than any listed word.
DEFAULT_FLOOR = 1e-9

_START_MARKERS = ("▁", "Ġ")  # SentencePiece and byte-level BPE: a piece that starts a word
_CONTINUATION = "##"  # WordPiece: a piece that continues a word
_END_MARKER = "</w>"  # CLIP's BPE: a piece that ends a word


def is_special(token: str) -> bool:
    """Bracketed control tokens: ``[CLS]``, ``[unused3]``, ``<pad>``, ``</s>``, ``<0x0A>``, ``<|endoftext|>``."""
    return len(token) > 2 and ((token[0] == "[" and token[-1] == "]") or (token[0] == "<" and token[-1] == ">"))


def clean_token(token: str) -> str:
    """The word inside a vocabulary piece: tokenizer markers removed ("" if nothing is left)."""
    word = token[len(_CONTINUATION):] if token.startswith(_CONTINUATION) else token
    if word.endswith(_END_MARKER):
        word = word[: -len(_END_MARKER)]
    for marker in _START_MARKERS:
        word = word.replace(marker, "")
    return word.strip()


def token_frequencies(
    tokens: Sequence[str], lang: str = "en", special_ids: Iterable[int] = (), floor: float = DEFAULT_FLOOR
) -> torch.Tensor:
    """``[K]`` float64 word frequency of each token (wordfreq), ``floor`` for special and unknown ones."""
    if floor < 0:
        raise BadInputError(f"word prior: floor must be >= 0, got {floor}")
    try:
        from wordfreq import word_frequency
    except ImportError as err:  # pragma: no cover - depends on the environment
        raise BadInputError(
            "word prior: the `wordfreq` package is needed for word frequencies (pip install wordfreq); "
            "or pass corpus counts to prior_from_frequencies"
        ) from err
    special = set(int(i) for i in special_ids)
    freqs = []
    for i, token in enumerate(tokens):
        word = "" if i in special or is_special(token) else clean_token(token)
        freqs.append(max(word_frequency(word, lang), floor) if word else floor)
    return torch.tensor(freqs, dtype=torch.float64)


def prior_from_frequencies(
    frequencies: torch.Tensor, recipe: Recipe = "normalized", temperature: float = 0.25
) -> torch.Tensor:
    """A float64 distribution over the rows of ``frequencies`` (counts or frequencies, >= 0).

    ``normalized``: f / Σf. ``softmax_log``: softmax(ln f / T) = f^(1/T) / Σ f^(1/T) (zeros stay 0).
    ``softmax_freq``: softmax((f / Σf) / T). See the module docstring for why the default is
    ``normalized``."""
    f = torch.as_tensor(frequencies, dtype=torch.float64)
    if f.ndim != 1 or f.numel() == 0:
        raise BadInputError(f"word prior: expected a non-empty 1-D frequency vector, got shape {tuple(f.shape)}")
    if not torch.isfinite(f).all() or (f < 0).any() or not f.sum() > 0:
        raise BadInputError("word prior: frequencies must be finite, non-negative and not all zero")
    if recipe == "normalized":
        return f / f.sum()
    if not temperature > 0:
        raise BadInputError(f"word prior: temperature must be positive, got {temperature!r}")
    if recipe == "softmax_log":
        return torch.softmax(f.log() / temperature, dim=0)
    if recipe == "softmax_freq":
        return torch.softmax(f / f.sum() / temperature, dim=0)
    raise BadInputError(f"word prior: unknown recipe {recipe!r}; use normalized, softmax_log or softmax_freq")


def frequency_prior(
    tokens: Sequence[str],
    recipe: Recipe = "normalized",
    temperature: float = 0.25,
    lang: str = "en",
    special_ids: Iterable[int] = (),
    floor: float = DEFAULT_FLOOR,
) -> torch.Tensor:
    """``[K]`` float64 word-frequency prior over ``tokens`` (wordfreq + :func:`prior_from_frequencies`)."""
    freqs = token_frequencies(tokens, lang=lang, special_ids=special_ids, floor=floor)
    return prior_from_frequencies(freqs, recipe=recipe, temperature=temperature)


def uniform_prior(size: int) -> torch.Tensor:
    """SwAV's marginal: ``[size]`` float64, all ``1/size``."""
    if size < 1:
        raise BadInputError(f"word prior: size must be >= 1, got {size}")
    return torch.full((size,), 1.0 / size, dtype=torch.float64)


def _starts_words(tokens: Sequence[str]) -> list[bool]:
    """Whether each token is a whole word or a word's first piece, judged by the vocabulary's scheme:
    WordPiece (``##`` marks continuations), SentencePiece / byte-level BPE (``▁`` / ``Ġ`` mark word
    starts), CLIP BPE (``</w>`` marks word ends); a vocabulary without markers is all words."""
    wordpiece = any(t.startswith(_CONTINUATION) for t in tokens)
    starts = any(t.startswith(_START_MARKERS) for t in tokens)
    ends = any(t.endswith(_END_MARKER) for t in tokens)
    out = []
    for t in tokens:
        if starts or ends:
            out.append(t.startswith(_START_MARKERS) or t.endswith(_END_MARKER))
        elif wordpiece:
            out.append(not t.startswith(_CONTINUATION))
        else:
            out.append(True)
    return out


def frequent_subset(
    tokens: Sequence[str],
    n: int,
    lang: str = "en",
    special_ids: Iterable[int] = (),
    frequencies: torch.Tensor | None = None,
) -> torch.Tensor:
    """Row ids of the ``n`` most frequent real words of a big vocabulary, most frequent first.

    To run OT over a manageable part of e.g. Gemma's 262k rows. Real word: not special, cleaned
    word contains a letter and wordfreq knows it (frequency above the floor). One token per word
    (case-insensitive): the word-start form (``▁the`` over the continuation piece ``the``), then the
    exact lower-case spelling, then the lowest id. Fewer than ``n`` ids come back when the
    vocabulary has fewer real words. ``frequencies`` (from :func:`token_frequencies`) skips the
    wordfreq look-ups. Build the subset's prior from ``[tokens[i] for i in ids]``."""
    if n < 1:
        raise BadInputError(f"frequent_subset: n must be >= 1, got {n}")
    special = set(int(i) for i in special_ids)
    freqs = token_frequencies(tokens, lang=lang, special_ids=special) if frequencies is None else frequencies
    if len(freqs) != len(tokens):
        raise BadInputError(f"frequent_subset: {len(freqs)} frequencies for {len(tokens)} tokens")
    starts = _starts_words(tokens)
    candidates = []
    for i, token in enumerate(tokens):
        if i in special or is_special(token):
            continue
        word = clean_token(token)
        f = float(freqs[i])
        if f <= DEFAULT_FLOOR or not any(c.isalpha() for c in word):
            continue
        candidates.append((-f, not starts[i], word != word.lower(), i, word.casefold()))
    candidates.sort()
    seen: set[str] = set()
    ids: list[int] = []
    for _, _, _, i, key in candidates:
        if key not in seen:
            seen.add(key)
            ids.append(i)
            if len(ids) == n:
                break
    return torch.tensor(ids, dtype=torch.long)
