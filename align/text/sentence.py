"""Sentence encoders through sentence-transformers (``hf:<model id or local folder>``).

The packaged models (all-MiniLM-L6-v2, all-mpnet-base-v2) are registered explicitly with their
metadata and load from the asset cache only; any other id goes through the generic ``hf:`` source
and the standard Hugging Face cache inside ``ALIGN_HOME`` (downloading when the hub is reachable).
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import torch
from torch import nn

from align.errors import AssetMissingError
from align.registry import TEXT_ENCODERS
from align.text.base import TextEncoder, check_texts

_SBERT_CITATION = (
    "Reimers & Gurevych, Sentence-BERT: Sentence Embeddings using Siamese BERT-Networks, EMNLP 2019"
)


class SentenceTransformerEncoder(TextEncoder):
    """Adapter from a ``SentenceTransformer`` to :class:`TextEncoder`.

    With ``normalize=True`` (the default) every embedding has unit L2 norm, so dot products are
    cosines. With ``normalize=False`` the output is whatever the model's own pipeline produces; note
    that all-MiniLM-L6-v2 and all-mpnet-base-v2 end in a ``Normalize`` module, so they are unit-norm
    either way.
    """

    def __init__(self, model: nn.Module, name: str, normalize: bool = True) -> None:
        super().__init__()
        self.model = model.eval().requires_grad_(False)
        self.name = name
        self.normalize = normalize
        dim = model.get_embedding_dimension() if hasattr(model, "get_embedding_dimension") else None
        self.embed_dim = int(dim or model.get_sentence_embedding_dimension())

    @torch.no_grad()
    def encode_text(self, texts: Sequence[str], batch_size: int = 64) -> torch.Tensor:
        texts = check_texts(texts)
        out = self.model.encode(texts, batch_size=batch_size, convert_to_tensor=True,
                                normalize_embeddings=self.normalize, show_progress_bar=False)
        return out.float().cpu()


def load_sentence_transformer(identifier: str, *, local_files_only: bool = False,
                              device: str | None = None, **kwargs: Any) -> nn.Module:
    """``SentenceTransformer(identifier)`` from a local folder or the HF cache inside ALIGN_HOME.

    A model that is neither cached nor downloadable raises :class:`AssetMissingError` in one line."""
    from sentence_transformers import SentenceTransformer

    from align.assets import hf_hub_cache
    from align.assets.offline import hub_offline

    if Path(identifier).expanduser().is_dir():
        with hub_offline():
            return SentenceTransformer(str(Path(identifier).expanduser()), device=device, **kwargs)
    try:
        with hub_offline(local_files_only):
            return SentenceTransformer(identifier, cache_folder=str(hf_hub_cache()),
                                       local_files_only=local_files_only, device=device, **kwargs)
    except OSError as err:
        raise AssetMissingError(
            f"sentence-transformers model {identifier!r} is not in the cache {hf_hub_cache()} and could not be "
            f"downloaded ({type(err).__name__}); pass a local folder as hf:/path/to/model or go online once"
        ) from err


def _packaged(asset: str, repo: str, normalize: bool, device: str | None) -> SentenceTransformerEncoder:
    from align.assets import require

    from align.assets import asset_fingerprint, get_spec

    root = require(asset)  # one-line error naming `align assets pull` when absent or damaged
    model = load_sentence_transformer(repo, local_files_only=True, device=device)
    encoder = SentenceTransformerEncoder(model, f"hf:{repo}", normalize=normalize)
    encoder.weights_sha256 = asset_fingerprint(get_spec(asset), root)
    return encoder


@TEXT_ENCODERS.register(
    "hf:sentence-transformers/all-MiniLM-L6-v2",
    embed_dim=384,
    license="Apache-2.0",
    citation=_SBERT_CITATION,
    weights="all-minilm-l6-v2",
    description="all-MiniLM-L6-v2 sentence encoder (6-layer BERT, 384-d, unit-norm)",
)
def all_minilm_l6_v2(normalize: bool = True, device: str | None = None) -> SentenceTransformerEncoder:
    return _packaged("all-minilm-l6-v2", "sentence-transformers/all-MiniLM-L6-v2", normalize, device)


@TEXT_ENCODERS.register(
    "hf:sentence-transformers/all-mpnet-base-v2",
    embed_dim=768,
    license="Apache-2.0",
    citation=_SBERT_CITATION,
    weights="all-mpnet-base-v2",
    description="all-mpnet-base-v2 sentence encoder (MPNet-base, 768-d, unit-norm)",
)
def all_mpnet_base_v2(normalize: bool = True, device: str | None = None) -> SentenceTransformerEncoder:
    return _packaged("all-mpnet-base-v2", "sentence-transformers/all-mpnet-base-v2", normalize, device)


@TEXT_ENCODERS.register_source(
    "hf",
    description="any sentence-transformers model id (HF cache in ALIGN_HOME) or local folder",
)
def hf_sentence_encoder(identifier: str, normalize: bool = True, device: str | None = None,
                        local_files_only: bool = False, **kwargs: Any) -> SentenceTransformerEncoder:
    from align.assets import hf_hub_cache
    from align.assets.hashing import hf_folder_sha256

    model = load_sentence_transformer(identifier, local_files_only=local_files_only, device=device, **kwargs)
    encoder = SentenceTransformerEncoder(model, f"hf:{identifier}", normalize=normalize)
    encoder.weights_sha256 = hf_folder_sha256(identifier, hf_hub_cache(), kwargs.get("revision"))
    return encoder
