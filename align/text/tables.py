"""Word-embedding tables of Hugging Face models (``hf:<model id or local folder>``).

The table is the model's ``get_input_embeddings().weight``; ``tokens`` are the tokenizer's pieces in
row order. The language model behind it is loaded only when :meth:`EmbeddingTable.load_lm` is called.

The packaged sentence-transformers checkpoints (MiniLM, MPNet) are plain encoders: their MLM head is
*not* in the checkpoint. ``load_lm()`` builds ``BertForMaskedLM`` / ``MPNetForMaskedLM`` with the
decoder tied to the word embeddings and the head's transform (dense + LayerNorm) and bias freshly
initialised (seeded, so reproducible), and logs a warning saying so. Such a head predicts nothing
useful until trained; contrastive fine-tuning has also eroded the encoder's MLM ability
(shared/assets.md §4).
"""

from __future__ import annotations

import logging
import re
from pathlib import Path
from typing import Any

import torch
from torch import nn

from align.errors import AssetMissingError
from align.registry import EMBEDDING_TABLES
from align.text.base import EmbeddingTable, seeded

log = logging.getLogger(__name__)

_RESERVED = re.compile(r"\[unused\d+\]|<unused\d+>|\[PAD\d*\]|<extra_id_\d+>")
_SBERT_CITATION = (
    "Reimers & Gurevych, Sentence-BERT: Sentence Embeddings using Siamese BERT-Networks, EMNLP 2019"
)


def vocab_rows(tokenizer: Any, n_rows: int) -> tuple[list[str], list[int]]:
    """Tokens of rows ``0..n_rows-1`` and the ids that are not words.

    Special ids are the tokenizer's special tokens, added tokens flagged special, reserved
    placeholders ([unusedN], <unusedN>, ...) and rows the tokenizer has no token for (models often pad
    the table to a multiple of 64); those rows get a ``<row N>`` placeholder string."""
    known = min(n_rows, len(tokenizer))
    tokens = [t if t is not None else f"<row {i}>" for i, t in
              enumerate(tokenizer.convert_ids_to_tokens(list(range(known))))]
    tokens += [f"<row {i}>" for i in range(known, n_rows)]
    special = set(tokenizer.all_special_ids) | set(range(known, n_rows))
    special |= {i for i, t in getattr(tokenizer, "added_tokens_decoder", {}).items() if getattr(t, "special", False)}
    special |= {i for i, t in enumerate(tokens) if _RESERVED.fullmatch(t) or t.startswith("<row ")}
    return tokens, sorted(i for i in special if 0 <= i < n_rows)


def infer_lm_kind(config: Any) -> str | None:
    """"causal" or "masked" from a config's architectures, else from its model type, else None."""
    from transformers.models.auto.modeling_auto import (
        MODEL_FOR_CAUSAL_LM_MAPPING_NAMES,
        MODEL_FOR_MASKED_LM_MAPPING_NAMES,
    )

    for arch in getattr(config, "architectures", None) or ():
        if arch.endswith(("ForCausalLM", "LMHeadModel")):
            return "causal"
        if arch.endswith("ForMaskedLM"):
            return "masked"
    if config.model_type in MODEL_FOR_MASKED_LM_MAPPING_NAMES:
        return "masked"
    if config.model_type in MODEL_FOR_CAUSAL_LM_MAPPING_NAMES:
        return "causal"
    return None


def load_hf_lm(identifier: str, lm_kind: str, seed: int = 0, **load_kw: Any) -> nn.Module:
    """``AutoModelFor{MaskedLM,CausalLM}`` in float32; warns when the checkpoint lacks head weights."""
    from transformers import AutoModelForCausalLM, AutoModelForMaskedLM

    from align.assets.offline import hub_offline

    cls = AutoModelForMaskedLM if lm_kind == "masked" else AutoModelForCausalLM
    with hub_offline(bool(load_kw.get("local_files_only")) or Path(identifier).is_dir()):
        lm, info = seeded(seed, lambda: cls.from_pretrained(identifier, dtype=torch.float32,
                                                             output_loading_info=True, **load_kw))
    missing = sorted(info.get("missing_keys", ()))
    if missing:
        log.warning(
            "%s: %d weights of %s are not in the checkpoint and were initialised randomly (seed %d): %s%s. "
            "Tied decoders still share the word embeddings; train the head before trusting its predictions.",
            identifier, len(missing), type(lm).__name__, seed, ", ".join(missing[:6]),
            ", ..." if len(missing) > 6 else "",
        )
    return lm


def hf_table(identifier: str, *, name: str | None = None, lm_kind: str | None = "auto", seed: int = 0,
             **load_kw: Any) -> EmbeddingTable:
    """Table, tokenizer and (lazy) LM of a Hugging Face model; ``load_kw`` go to every ``from_pretrained``."""
    from transformers import AutoConfig, AutoModel, AutoTokenizer

    from align.assets.offline import hub_offline

    with hub_offline(bool(load_kw.get("local_files_only")) or Path(identifier).is_dir()):
        config = AutoConfig.from_pretrained(identifier, **load_kw)
        tokenizer = AutoTokenizer.from_pretrained(identifier, **load_kw)
        base = AutoModel.from_pretrained(identifier, dtype=torch.float32, **load_kw)
    weight = base.get_input_embeddings().weight.detach().float().clone()
    del base
    kind = infer_lm_kind(config) if lm_kind == "auto" else lm_kind
    tokens, special = vocab_rows(tokenizer, weight.shape[0])
    return EmbeddingTable(
        name=name or f"hf:{identifier}",
        weight=weight,
        tokens=tokens,
        special_ids=special,
        tokenizer=tokenizer,
        lm_kind=kind,
        lm_loader=(lambda: load_hf_lm(identifier, kind, seed, **load_kw)) if kind else None,
    )


def _packaged(asset: str, repo: str, seed: int) -> EmbeddingTable:
    from align.assets import hf_hub_cache, require

    require(asset)
    return hf_table(repo, lm_kind="masked", seed=seed, cache_dir=str(hf_hub_cache()), local_files_only=True)


@EMBEDDING_TABLES.register(
    "hf:sentence-transformers/all-MiniLM-L6-v2",
    embed_dim=384,
    license="Apache-2.0",
    citation=_SBERT_CITATION,
    weights="all-minilm-l6-v2",
    description="BERT-uncased WordPiece table (30522 x 384) of all-MiniLM-L6-v2; "
                "masked LM whose MLM head is NOT in the checkpoint (random transform + bias, tied decoder)",
)
def all_minilm_l6_v2_table(seed: int = 0) -> EmbeddingTable:
    return _packaged("all-minilm-l6-v2", "sentence-transformers/all-MiniLM-L6-v2", seed)


@EMBEDDING_TABLES.register(
    "hf:sentence-transformers/all-mpnet-base-v2",
    embed_dim=768,
    license="Apache-2.0",
    citation=_SBERT_CITATION,
    weights="all-mpnet-base-v2",
    description="MPNet table (30527 x 768) of all-mpnet-base-v2; "
                "masked LM whose LM head is NOT in the checkpoint (random transform + bias, tied decoder)",
)
def all_mpnet_base_v2_table(seed: int = 0) -> EmbeddingTable:
    return _packaged("all-mpnet-base-v2", "sentence-transformers/all-mpnet-base-v2", seed)


@EMBEDDING_TABLES.register_source(
    "hf",
    description="input embeddings + tokenizer of any Hugging Face model id (HF cache in ALIGN_HOME) or folder",
)
def hf_source_table(identifier: str, lm_kind: str | None = "auto", seed: int = 0,
                    local_files_only: bool = False, **load_kw: Any) -> EmbeddingTable:
    from align.assets import hf_hub_cache

    folder = Path(identifier).expanduser()
    if folder.is_dir():
        return hf_table(str(folder), name=f"hf:{identifier}", lm_kind=lm_kind, seed=seed, **load_kw)
    load_kw.setdefault("cache_dir", str(hf_hub_cache()))
    try:
        return hf_table(identifier, name=f"hf:{identifier}", lm_kind=lm_kind, seed=seed,
                        local_files_only=local_files_only, **load_kw)
    except OSError as err:
        raise AssetMissingError(
            f"Hugging Face model {identifier!r} is not in the cache {load_kw['cache_dir']} and could not be "
            f"downloaded ({type(err).__name__}); pass a local folder as hf:/path/to/model or go online once"
        ) from err


def table_from_lm(name: str, lm: nn.Module, tokenizer: Any, lm_kind: str) -> EmbeddingTable:
    """A table over an already built LM (toy models, user models); ``load_lm()`` returns ``lm`` itself."""
    weight = lm.get_input_embeddings().weight.detach().float().clone()
    tokens, special = vocab_rows(tokenizer, weight.shape[0])
    return EmbeddingTable(name=name, weight=weight, tokens=tokens, special_ids=special,
                          tokenizer=tokenizer, lm_kind=lm_kind, lm_loader=lambda: lm)

