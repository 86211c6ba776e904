"""Tiny randomly initialised text parts for unit tests: deterministic from a seed, built in milliseconds.

They exercise every code path of the real parts (tokenizer, table, masked and causal LM) without any
weights on disk. Their outputs mean nothing.
"""

from __future__ import annotations

import hashlib
import itertools
import re
from collections.abc import Sequence
from typing import Any

import torch
from torch import nn

from align.registry import EMBEDDING_TABLES, TEXT_ENCODERS
from align.text.base import EmbeddingTable, TextEncoder, check_texts, seeded
from align.text.tables import table_from_lm

_TOY = dict(license="MIT", citation=None, weights=None)
_WORDS = (
    "a an the of in on at with and or is are this that photo picture image drawing painting of "
    "cat cats dog dogs bird fish horse cow sheep car truck bus bike train plane boat house tree flower "
    "red green blue yellow black white big small old young man woman child people face hand food fruit "
    "apple banana water sky sun moon star heart smile happy sad"
).split()
_CONSONANTS = "bcdfghjklmnprstvwxz"
_VOWELS = "aeiou"
_TOKEN_RE = re.compile(r"\w+|[^\w\s]")


def toy_vocab(specials: Sequence[str], size: int = 1000) -> list[str]:
    """A deterministic WordPiece vocabulary: specials, characters, caption words, then syllables."""
    chars = list("abcdefghijklmnopqrstuvwxyz0123456789.,!?'-")
    syllables = [c + v for c, v in itertools.product(_CONSONANTS, _VOWELS)]
    closed = [s + c for s, c in itertools.product(syllables, _CONSONANTS)]
    pieces = [*specials, *chars, *("##" + c for c in chars), *_WORDS, *syllables,
              *("##" + s for s in syllables), *("##" + s for s in closed)]
    vocab = list(dict.fromkeys(pieces))  # first occurrence wins, order kept
    if len(vocab) >= size:
        return vocab[:size]
    raise ValueError(f"toy vocabulary has only {len(vocab)} pieces")


def toy_tokenizer(specials: Sequence[str], *, unk: str, pad: str, cls: str | None = None, sep: str | None = None,
                  mask: str | None = None, bos: str | None = None, eos: str | None = None,
                  size: int = 1000) -> Any:
    """An in-memory BERT-style WordPiece tokenizer (lower-casing) wrapped for ``transformers``.

    Masked style (``cls``/``sep`` given) wraps text as ``[CLS] text [SEP]``; causal style (``bos``
    given) prepends ``<bos>`` and leaves ``<eos>`` for generation to produce."""
    from tokenizers import Tokenizer, decoders, models, normalizers, pre_tokenizers, processors
    from transformers import PreTrainedTokenizerFast

    vocab = {piece: i for i, piece in enumerate(toy_vocab(specials, size))}
    tok = Tokenizer(models.WordPiece(vocab=vocab, unk_token=unk))
    tok.normalizer = normalizers.BertNormalizer(lowercase=True)
    tok.pre_tokenizer = pre_tokenizers.BertPreTokenizer()
    tok.decoder = decoders.WordPiece()
    if bos is not None:
        tok.post_processor = processors.TemplateProcessing(
            single=f"{bos} $A", pair=f"{bos} $A $B", special_tokens=[(bos, vocab[bos])])
    elif cls is not None and sep is not None:
        tok.post_processor = processors.TemplateProcessing(
            single=f"{cls} $A {sep}", pair=f"{cls} $A {sep} $B {sep}",
            special_tokens=[(cls, vocab[cls]), (sep, vocab[sep])])
    named = dict(unk_token=unk, pad_token=pad, cls_token=cls, sep_token=sep, mask_token=mask,
                 bos_token=bos, eos_token=eos)
    return PreTrainedTokenizerFast(tokenizer_object=tok, **{k: v for k, v in named.items() if v is not None})


class HashingTextEncoder(TextEncoder):
    """Bag of hashed words and character trigrams, mean-pooled through a random embedding.

    No tokenizer or vocabulary to build; the same seed gives the same vectors in every process (the
    hash is blake2b, not Python's salted ``hash``), and texts sharing words or trigrams are correlated."""

    def __init__(self, embed_dim: int = 32, buckets: int = 4096, seed: int = 0, normalize: bool = True) -> None:
        super().__init__()
        self.name = "toy:text"
        self.embed_dim = embed_dim
        self.buckets = buckets
        self.normalize = normalize
        self.bag = seeded(seed, lambda: nn.EmbeddingBag(buckets, embed_dim, mode="mean"))
        self.requires_grad_(False)

    def _features(self, text: str) -> list[int]:
        words = _TOKEN_RE.findall(text.lower())
        grams = [w[i:i + 3] for w in (f"<{w}>" for w in words) for i in range(max(1, len(w) - 2))]
        return [int.from_bytes(hashlib.blake2b(f.encode(), digest_size=4).digest(), "little") % self.buckets
                for f in [*words, *grams]]

    @torch.no_grad()
    def encode_text(self, texts: Sequence[str], batch_size: int = 64) -> torch.Tensor:
        texts = check_texts(texts)
        ids = [self._features(t) for t in texts]
        flat = torch.tensor([i for row in ids for i in row], dtype=torch.long)
        offsets = torch.tensor([0, *itertools.accumulate(len(row) for row in ids)][:-1], dtype=torch.long)
        out = self.bag(flat.to(self.bag.weight.device), offsets.to(self.bag.weight.device)).float().cpu()
        return nn.functional.normalize(out, dim=-1) if self.normalize else out


@TEXT_ENCODERS.register("toy:text", embed_dim=32, description="hashing bag-of-words, random, for tests", **_TOY)
def toy_text(embed_dim: int = 32, seed: int = 0, normalize: bool = True) -> HashingTextEncoder:
    return HashingTextEncoder(embed_dim=embed_dim, seed=seed, normalize=normalize)


@EMBEDDING_TABLES.register("toy:table-masked", embed_dim=32,
                           description="tiny random BertForMaskedLM (vocab 1000, 2 layers), for tests", **_TOY)
def toy_table_masked(hidden_size: int = 32, vocab_size: int = 1000, seed: int = 0) -> EmbeddingTable:
    from transformers import BertConfig, BertForMaskedLM

    specials = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", *(f"[unused{i}]" for i in range(5))]
    tokenizer = toy_tokenizer(specials, unk="[UNK]", pad="[PAD]", cls="[CLS]", sep="[SEP]", mask="[MASK]",
                              size=vocab_size)
    config = BertConfig(vocab_size=vocab_size, hidden_size=hidden_size, num_hidden_layers=2, num_attention_heads=2,
                        intermediate_size=2 * hidden_size, max_position_embeddings=128, pad_token_id=0)
    lm = seeded(seed, lambda: BertForMaskedLM(config))
    return table_from_lm("toy:table-masked", lm, tokenizer, "masked")


@EMBEDDING_TABLES.register("toy:table-causal", embed_dim=32,
                           description="tiny random LlamaForCausalLM (vocab 1000, 2 layers), for tests", **_TOY)
def toy_table_causal(hidden_size: int = 32, vocab_size: int = 1000, seed: int = 0) -> EmbeddingTable:
    from transformers import LlamaConfig, LlamaForCausalLM

    specials = ["<pad>", "<unk>", "<bos>", "<eos>"]
    tokenizer = toy_tokenizer(specials, unk="<unk>", pad="<pad>", bos="<bos>", eos="<eos>", size=vocab_size)
    config = LlamaConfig(vocab_size=vocab_size, hidden_size=hidden_size, intermediate_size=2 * hidden_size,
                         num_hidden_layers=2, num_attention_heads=2, num_key_value_heads=2,
                         max_position_embeddings=128, pad_token_id=0, bos_token_id=2, eos_token_id=3,
                         tie_word_embeddings=False)
    lm = seeded(seed, lambda: LlamaForCausalLM(config))
    lm.generation_config.pad_token_id = 0
    return table_from_lm("toy:table-causal", lm, tokenizer, "causal")


def toy_sentencepiece_tokenizer(specials: Sequence[str], size: int) -> Any:
    """An in-memory Gemma-style tokenizer: SentencePiece pieces ("▁" marks a word start), Unigram model.

    Pieces: ``specials``, "▁" + each caption word and syllable (whole words), then bare syllables and
    characters (word continuations), cut or padded with "▁" + two-syllable words to ``size``."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers
    from transformers import PreTrainedTokenizerFast

    syllables = [c + v for c, v in itertools.product(_CONSONANTS, _VOWELS)]
    pieces = [*specials, *("▁" + w for w in _WORDS), *("▁" + s for s in syllables), *syllables,
              *"abcdefghijklmnopqrstuvwxyz", *("▁" + a + b for a, b in itertools.product(syllables, syllables))]
    vocab = list(dict.fromkeys(pieces))[:size]
    if len(vocab) < size:
        raise ValueError(f"toy SentencePiece vocabulary has only {len(vocab)} pieces")
    unk = vocab.index("<unk>")
    tok = Tokenizer(models.Unigram([(p, -1.0) for p in vocab], unk_id=unk))
    tok.pre_tokenizer = pre_tokenizers.Metaspace(replacement="▁", prepend_scheme="always")
    tok.decoder = decoders.Metaspace(replacement="▁", prepend_scheme="always")
    return PreTrainedTokenizerFast(tokenizer_object=tok, pad_token="<pad>", eos_token="<eos>", bos_token="<bos>",
                                   unk_token="<unk>", mask_token="<mask>")


def toy_gemma_table(name: str = "toy:table-gemma", hidden_size: int = 32, vocab_size: int = 2048,
                    seed: int = 0) -> EmbeddingTable:
    """A tiny random ``Gemma3ForCausalLM`` (2 layers, tied head, embeddings scaled by sqrt(hidden)) with a
    Gemma-style vocabulary (``<pad> <eos> <bos> <unk> <mask>`` first, "▁" word starts).

    Not registered (the registered toys have a 1000-row WordPiece vocabulary that tests rely on); tests
    that need a Gemma-shaped causal LM register it under a name of their own."""
    from transformers import Gemma3ForCausalLM, Gemma3TextConfig

    specials = ["<pad>", "<eos>", "<bos>", "<unk>", "<mask>", *(f"<unused{i}>" for i in range(3))]
    tokenizer = toy_sentencepiece_tokenizer(specials, vocab_size)
    config = Gemma3TextConfig(vocab_size=vocab_size, hidden_size=hidden_size, intermediate_size=2 * hidden_size,
                              num_hidden_layers=2, num_attention_heads=2, num_key_value_heads=1, head_dim=16,
                              max_position_embeddings=128, sliding_window=64, pad_token_id=0, eos_token_id=1,
                              bos_token_id=2, tie_word_embeddings=True)
    lm = seeded(seed, lambda: Gemma3ForCausalLM(config))
    return table_from_lm(name, lm, tokenizer, "causal")
