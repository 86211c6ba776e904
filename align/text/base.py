"""The language-side protocols: sentence encoders and word-embedding tables."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any, TypeVar

import torch
from torch import nn

from align.errors import BadInputError

LM_KINDS = ("masked", "causal")
M = TypeVar("M")


def seeded(seed: int, build: Callable[[], M]) -> M:
    """Run ``build`` under ``torch.manual_seed(seed)`` without disturbing the caller's RNG, so randomly
    initialised weights (toy models, an MLM head missing from a checkpoint) are reproducible."""
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        return build()


def check_texts(texts: Sequence[str] | str) -> list[str]:
    """The texts as a list, or a one-line :class:`BadInputError` for empty or non-string input.

    A bare string is refused rather than iterated character by character."""
    if isinstance(texts, str):
        raise BadInputError("encode_text takes a list of strings, not a single string; wrap it in a list")
    texts = list(texts)
    if not texts:
        raise BadInputError("encode_text got an empty list; pass at least one string")
    for i, text in enumerate(texts):
        if not isinstance(text, str):
            raise BadInputError(f"encode_text: item {i} is {type(text).__name__}, not str")
        if not text.strip():
            raise BadInputError(f"encode_text: item {i} is an empty string")
    return texts


def input_embedding_scale(lm: nn.Module, token_id: int) -> float:
    """What ``lm``'s input-embedding module multiplies a raw table row by (Gemma: sqrt(D); others: 1),
    measured on ``token_id``'s row, for callers that feed it raw rows as ``inputs_embeds``."""
    emb = lm.get_input_embeddings()
    probe = torch.tensor([token_id], device=emb.weight.device)
    with torch.no_grad():
        return float(emb(probe).norm() / emb.weight[probe].norm().clamp_min(1e-12))


class TextEncoder(nn.Module):
    """Frozen sentence encoder: a list of strings in, one float32 embedding ``[B, D]`` per string out.

    Implementations call :func:`check_texts` first, so empty input fails the same way everywhere."""

    name: str
    embed_dim: int
    weights_sha256: str | None = None  # of the weight files really loaded; see VisionEncoder.weights_sha256

    def encode_text(self, texts: Sequence[str], batch_size: int = 64) -> torch.Tensor:
        raise NotImplementedError

    def forward(self, texts: Sequence[str]) -> torch.Tensor:
        return self.encode_text(texts)


class EmbeddingTable:
    """A language model's input word-embedding matrix with the strings and tokenizer behind its rows.

    ``weight`` is ``[V, D]`` float32 (the raw matrix: models that rescale embeddings inside
    ``forward``, such as Gemma's ``* sqrt(D)``, are not rescaled here); ``tokens[i]`` is the string of
    row ``i``; ``special_ids`` are rows that are not words (padding, [CLS], <bos>, [unusedN], rows
    beyond the tokenizer's vocabulary, ...), so methods can exclude them from a codebook.

    ``tokenizer`` is the library tokenizer (Hugging Face, or an adapter with the same call signature)
    when there is one. Tables whose tokenizer or language model is slow to build pass
    ``tokenizer_loader`` / ``lm_loader`` instead: each is called once, on first use, and cached.
    """

    def __init__(
        self,
        name: str,
        weight: torch.Tensor,
        tokens: Sequence[str],
        special_ids: Sequence[int] = (),
        tokenizer: Any = None,
        lm_kind: str | None = None,
        *,
        tokenizer_loader: Callable[[], Any] | None = None,
        lm_loader: Callable[[], nn.Module] | None = None,
    ) -> None:
        if weight.ndim != 2:
            raise ValueError(f"table {name}: weight must be [V, D], got shape {tuple(weight.shape)}")
        if len(tokens) != weight.shape[0]:
            raise ValueError(f"table {name}: {len(tokens)} tokens for {weight.shape[0]} rows")
        if lm_kind is not None and lm_kind not in LM_KINDS:
            raise ValueError(f"table {name}: lm_kind must be one of {LM_KINDS} or None, got {lm_kind!r}")
        if lm_kind is None and lm_loader is not None:
            raise ValueError(f"table {name}: an lm_loader needs an lm_kind")
        self.name = name
        self.weight = weight.detach().float()
        self.tokens = list(tokens)
        self.special_ids = sorted(set(int(i) for i in special_ids))
        self.lm_kind = lm_kind
        self._tokenizer = tokenizer
        self._tokenizer_loader = tokenizer_loader
        self._lm_loader = lm_loader
        self._lm: nn.Module | None = None

    def __repr__(self) -> str:
        return (f"EmbeddingTable(name={self.name!r}, vocab_size={self.vocab_size}, embed_dim={self.embed_dim}, "
                f"special={len(self.special_ids)}, lm_kind={self.lm_kind!r})")

    @property
    def vocab_size(self) -> int:
        return int(self.weight.shape[0])

    @property
    def embed_dim(self) -> int:
        return int(self.weight.shape[1])

    @property
    def tokenizer(self) -> Any:
        """The tokenizer, built on first access when the table was given a ``tokenizer_loader``."""
        if self._tokenizer is None and self._tokenizer_loader is not None:
            self._tokenizer = self._tokenizer_loader()
        return self._tokenizer

    @property
    def word_ids(self) -> list[int]:
        """Row ids that are not special: the usual codebook for quantising onto words."""
        special = set(self.special_ids)
        return [i for i in range(self.vocab_size) if i not in special]

    def encode_ids(self, text: str) -> list[int]:
        """Row ids of ``text``'s tokens (without special tokens)."""
        tokenizer = self.tokenizer
        if tokenizer is None:
            raise NotImplementedError(f"table {self.name} has no tokenizer")
        return list(tokenizer(text, add_special_tokens=False)["input_ids"])

    def load_lm(self) -> nn.Module:
        """The language model whose input embeddings this table is (masked or causal, see ``lm_kind``).

        Built on the first call and returned again afterwards (in eval mode; freezing its parameters
        is the caller's choice, e.g. a method that trains a new MLM head)."""
        if self._lm_loader is None:
            raise NotImplementedError(f"table {self.name} exposes no language model")
        if self._lm is None:
            self._lm = self._lm_loader().eval()
        return self._lm
