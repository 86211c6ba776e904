"""Codebook-VLP: ALBEF-style vision-language pretraining plus a jointly trained visual codebook whose
code indices are the targets of masked image modeling (Guo et al., ICPR 2022, arXiv 2208.00475;
papers.md §5, §7.5). No official code exists; this is the reconstruction of papers.md §5.2 at a scale
that trains on CPU. The model and its losses are in :mod:`align.methods.codebook_vlp.core`.

Objectives, each with an on/off switch (``L = Σ w · L``):

* ``itc``: image-text contrastive on projections of the pooled states; ``momentum`` adds ALBEF's
  momentum encoders and distillation, ``queue_size`` > 0 a queue of past (momentum) features; pairs
  whose captions are identical count as positives;
* ``itm``: match / no match from the fusion [CLS], one hard negative text per image and one hard
  negative image per text drawn from ``softmax(ITC similarity / temperature)`` (uniform when ITC is off);
* ``mlm``: BERT masking (15%, at least one token per caption) predicted from the fusion output;
* ``codebook``: the visual codebook (k-means initialised, EMA codes, dead-code restarts) and its VQ loss;
* ``mim``: predict the code of each masked image token from the image encoder's states.

"Without codebook and MIM" is the same model with ``codebook: false`` and ``mim: false``.

Evaluation uses the unimodal ITC embeddings (``encode_image`` / ``encode_text_strings``). With
``rerank_k`` > 0, :meth:`CodebookVLPAligner.retrieval_scores` re-scores each query's top ``rerank_k``
candidates with the ITM head (ALBEF uses k = 128), and the benchmark's retrieval task uses those scores.

Version 2 (issue 15, "codes that mean something"): codes of the frozen tokens with k-means
initialisation and window restarts, MIM on the evaluated image encoder with frequency weighting, ITM
negatives at the ITC temperature, optional re-ranking, two image layers. Fits saved by version 1 load
with the settings that reproduce them (``legacy_hparams``).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from align.errors import BadInputError
from align.methods.framework.base import caption_strings, check_caption_pairs, check_tokens, is_number
from align.methods.framework.hparams import (
    MAX_CODES, MAX_EPOCHS, MAX_LAYERS, MAX_ROWS, MAX_STEPS, MAX_TOKENS, MAX_WIDTH, param,
)
from align.methods.framework.trained import TrainedAligner, TrainedHParams
from align.methods.codebook_vlp.codebook import UPDATES, codebook_health
from align.methods.codebook_vlp.core import (
    CODE_SOURCES, CODEBOOK_INITS, DEFAULT_TABLE, MIM_INPUTS, MIM_WEIGHTINGS, OBJECTIVES, POOLINGS, CodebookVLPCore,
    load_table, tokenize,
)
from align.methods.codebook_vlp.rerank import rerank
from align.registry import ALIGNERS
from align.text.base import check_texts

__all__ = ["OBJECTIVES", "CodebookVLPAligner", "CodebookVLPCore", "CodebookVLPHParams", "check_tokens",
           "load_table", "tokenize"]


@dataclass(frozen=True)
class CodebookVLPHParams(TrainedHParams):
    table: str = param(DEFAULT_TABLE, want="an embedding-table name")  # the masked LM the text side starts from
    image_width: int = param(128, low=1, high=MAX_WIDTH)
    image_heads: int = param(4, low=1, high=MAX_LAYERS)
    image_layers: int = param(2, low=0, high=MAX_LAYERS)  # the image encoder's depth; MIM needs >= 1 to see other tokens
    text_layers: int = param(1, low=0, high=MAX_LAYERS)  # the LM's first layers, copied
    fusion_layers: int = param(1, low=1, high=MAX_LAYERS)  # the LM's next layers, with fresh cross-attention
    embed_dim: int = param(128, low=1, high=MAX_WIDTH)  # the ITC space
    itc: bool = True
    itm: bool = True
    mlm: bool = True
    codebook: bool = True  # the visual codebook and its VQ loss
    mim: bool = True  # masked image modeling of code indices (needs the codebook)
    momentum: bool = True  # ALBEF's momentum encoders and distillation
    queue_size: int = param(256, low=0, high=MAX_ROWS)
    momentum_decay: float = param(0.995, low=0, below=1)
    distill_alpha: float = param(0.4, low=0, below=1)
    temperature: float = param(0.07, above=0)
    num_codes: int = param(64, low=2, high=MAX_CODES)
    code_dim: int = param(32, low=1, high=MAX_WIDTH)
    codebook_update: str = param("ema", choices=UPDATES)
    commitment: float = param(0.25, low=0)
    codebook_decay: float = param(0.99, low=0, below=1)
    restart_threshold: float = param(1.0, low=0)  # restart_window=0: dead-code restarts below this EMA usage
    restart_window: int = param(10, low=0, high=MAX_STEPS)  # restart a code that won no token in this many training steps
    code_source: str = param("tokens", choices=CODE_SOURCES)  # the frozen tokens, or projected encoder states
    codebook_init: str = param("kmeans", choices=CODEBOOK_INITS)  # k-means of the fit tokens, or the first batch
    reconstruction: float = param(0.0, low=0)  # weight of VQ-VAE's reconstruction term (code_source=states)
    mlm_ratio: float = param(0.15, low=0, below=1)
    mim_ratio: float = param(0.4, low=0, below=1)
    mim_input: str = param("encoder", choices=MIM_INPUTS)  # the evaluated image encoder, or an image-side fusion
    mim_weighting: str = param("inverse_frequency", choices=MIM_WEIGHTINGS)  # of each target code's loss
    hard_negative_temperature: bool = True  # ITM negatives from softmax(sim / ITC temperature), as ALBEF
    rerank_k: int = param(0, low=0, high=MAX_ROWS)  # retrieval: re-score each query's top k by ITM (0: ITC similarity only)
    weights: dict[str, float] | None = param(None, want=f"a mapping from {', '.join(OBJECTIVES)} to numbers >= 0")
    pretrained_text: bool = True
    freeze_word_embeddings: bool = True
    pooling: str = param("mean", choices=POOLINGS)
    weight_decay: float = param(0.02, low=0)
    batch_size: int = param(64, low=2, high=MAX_ROWS)
    max_epochs: int = param(24, low=0, high=MAX_EPOCHS)  # chosen on validation (docs/studies/codebook_vlp.md)
    max_text_tokens: int = param(32, low=3, high=MAX_TOKENS)

    def check(self, aligner: str) -> CodebookVLPHParams:
        if self.mim and not self.codebook:
            raise BadInputError(f"{aligner}: mim=true needs codebook=true (MIM predicts the codebook's indices)")
        if self.reconstruction > 0 and self.code_source != "states":
            raise BadInputError(f"{aligner}: reconstruction={self.reconstruction} needs code_source='states' "
                                "(codes of the frozen tokens have nothing to reconstruct through)")
        if self.rerank_k > 0 and not self.itm:
            raise BadInputError(f"{aligner}: rerank_k={self.rerank_k} needs itm=true (the ITM head re-scores)")
        if self.codebook and self.code_source == "tokens" and not (self.itc or self.itm or self.mlm or self.mim):
            raise BadInputError(f"{aligner}: with code_source='tokens' the codebook alone trains no weights "
                                "(its codes follow the frozen tokens); switch on another objective")
        if not (self.itc or self.itm or self.mlm or self.codebook):
            raise BadInputError(f"{aligner}: every objective is switched off; nothing would be trained")
        if self.image_width % self.image_heads:
            raise self.bad(aligner, "image_width", f"divisible by image_heads={self.image_heads}")
        if any(k not in OBJECTIVES or not (is_number(v) and v >= 0) for k, v in (self.weights or {}).items()):
            raise self.bad(aligner, "weights", f"a mapping from {', '.join(OBJECTIVES)} to numbers >= 0")
        return self


@ALIGNERS.register(
    "codebook_vlp",
    description="ALBEF-style pretraining (ITC with momentum queue, ITM with hard negatives, MLM) on frozen "
    "spatial tokens plus a learned visual codebook and masked image modeling of its code indices. "
    "Needs [N, T, D] tokens and caption strings: fit_captions(tokens, captions).",
    citation="Guo et al., Augmenting Vision Language Pretraining by Learning Codebook with Visual Semantics, "
    "ICPR 2022 (arXiv 2208.00475)",
)
class CodebookVLPAligner(TrainedAligner):
    """Codebook-VLP trained on frozen spatial tokens and caption strings.

    Shared space = the ITC space: ``encode_image(tokens)`` and ``encode_text_strings(captions)`` give
    L2-normalised ``[M, embed_dim]`` embeddings to compare by cosine."""

    name = "codebook_vlp"
    version = "2"  # issue 15: codes of the frozen tokens, MIM on the evaluated encoder, tempered ITM negatives
    image_input = "tokens"
    text_input = "strings"  # its own text encoder, trained from the table's word embeddings
    config_class = CodebookVLPHParams
    config: CodebookVLPHParams
    core_class = CodebookVLPCore
    shape_args = ("image_dim", "num_tokens")  # the token grid's width and length
    reranks_retrieval = True  # retrieval_scores: ITM re-ranking (None with rerank_k 0)
    # hyper-parameters added in version 2, at the values that reproduce a version-1 fit
    legacy_hparams = {"restart_window": 0, "code_source": "states", "codebook_init": "batch", "reconstruction": 0.0,
                      "mim_input": "fusion", "mim_weighting": "none", "hard_negative_temperature": False,
                      "rerank_k": 0}

    def __init__(self, **hparams: Any) -> None:
        super().__init__(**hparams)
        self.num_tokens: int | None = None

    # ------------------------------------------------------------------ training

    def fit(self, image_features: torch.Tensor, text_features: Any) -> CodebookVLPAligner:
        """Caption strings are delegated to :meth:`fit_captions`; feature tensors are refused."""
        why = "it trains its own text encoder"
        return self.fit_captions(image_features, caption_strings(text_features, "codebook_vlp.fit", why))

    def fit_captions(self, image_tokens: torch.Tensor, captions: Sequence[str],
                     ckpt_path: str | Path | None = None) -> CodebookVLPAligner:
        """Pretrain on N images (``[N, T, D]`` frozen spatial tokens) and their N captions; with
        ``checkpoint_dir`` set, a later fit of the same pairs resumes from its ``last.ckpt``."""
        x = check_tokens(image_tokens, "codebook_vlp.fit_captions: image tokens")
        captions = check_caption_pairs(len(x), captions, "codebook_vlp.fit_captions")
        ids, mask = tokenize(load_table(self.config.table), captions, self.config.max_text_tokens)
        return self._train("codebook_vlp.fit_captions", (x, ids, mask),
                           dict(image_dim=x.shape[2], num_tokens=x.shape[1]), prepare=self._prepare(x),
                           ckpt_path=ckpt_path)

    @staticmethod
    def _prepare(x: torch.Tensor) -> Any:
        """The fit-time initialisation of the core (k-means codes on the training tokens)."""
        from align.methods.framework.data import balanced_batch_size

        def prepare(core: CodebookVLPCore, data: Any) -> None:
            rows = data.train_rows
            core.prepare(x, balanced_batch_size(len(rows), data.batch_size) * x.shape[1], rows)

        return prepare

    def _set_dims(self, module: Any) -> None:
        args = module.hparams.core_args
        self.image_dim, self.num_tokens = args["image_dim"], args["num_tokens"]
        self.text_dim = module.core.text_proj.out_features

    def _load_shape(self, state: dict[str, torch.Tensor]) -> dict[str, Any]:
        """``image_dim`` (set first, as ``Aligner.load`` does) and ``num_tokens``, read from the state's positions."""
        image_dim, _ = self._require_fitted()
        return dict(image_dim=image_dim, num_tokens=int(state["image_encoder.pos"].shape[1]) - 1)

    # ------------------------------------------------------------------ embedding

    def _tokens(self, tokens: Any, what: str) -> torch.Tensor:
        image_dim, _ = self._require_fitted()
        return check_tokens(tokens, f"codebook_vlp.{what}", (self.num_tokens, image_dim))

    def _batched(self, fn: Any, tokens: torch.Tensor, batch_size: int = 256) -> torch.Tensor:
        with torch.no_grad():
            return torch.cat([fn(tokens[i:i + batch_size]) for i in range(0, len(tokens), batch_size)])

    def encode_image(self, image_features: torch.Tensor) -> torch.Tensor:
        """L2-normalised ITC embeddings ``[M, embed_dim]`` of ``[M, T, D]`` spatial tokens."""
        return self._batched(self.core.encode_image, self._tokens(image_features, "encode_image"))

    def encode_text(self, text_features: Sequence[str]) -> torch.Tensor:
        """Caption strings through the model's own text encoder (``encode_text_strings``)."""
        why = "the model has its own text encoder"
        return self.encode_text_strings(caption_strings(text_features, "codebook_vlp.encode_text", why))

    @torch.no_grad()
    def encode_text_strings(self, captions: Sequence[str], batch_size: int = 256) -> torch.Tensor:
        """L2-normalised ITC embeddings ``[M, embed_dim]`` of caption strings."""
        self._require_fitted()
        ids, mask = tokenize(load_table(self.config.table), check_texts(captions), self.config.max_text_tokens)
        return torch.cat([self.core.encode_text(ids[i:i + batch_size], mask[i:i + batch_size])
                          for i in range(0, len(ids), batch_size)])

    def code_indices(self, image_tokens: torch.Tensor) -> torch.Tensor:
        """``[M, T]`` codebook index of every spatial token."""
        if self.core.codebook is None:
            raise BadInputError("codebook_vlp: this model was trained with codebook=false; it has no codes")
        return self._batched(self.core.code_indices, self._tokens(image_tokens, "code_indices"))

    @property
    def quantizes_images(self) -> bool:  # per instance: codebook on or off
        """Whether ``image_codes`` has codes to give (the benchmark's ``code_statistics`` task)."""
        return self.config.codebook

    gives_code_indices = quantizes_images  # code_indices: the same codes

    def image_codes(self, image_tokens: torch.Tensor) -> torch.Tensor:
        """``[M, T]`` code ids of each image's tokens (as :meth:`code_indices`)."""
        return self.code_indices(image_tokens)

    def code_usage(self, image_tokens: torch.Tensor, max_share: float = 0.5,
                   min_perplexity: float = 2.0) -> dict[str, Any]:
        """Perplexity, used and dead codes, the top code's share and whether the codebook has collapsed
        (:func:`~align.methods.codebook_vlp.codebook.codebook_health`) over every token of ``image_tokens``."""
        return codebook_health(self.code_indices(image_tokens), self.core.codebook.num_codes, max_share, min_perplexity)

    @torch.no_grad()
    def itm_scores(self, image_tokens: torch.Tensor, captions: Sequence[str]) -> torch.Tensor:
        """``[M]`` ITM match logits of row-aligned (image, caption) pairs, for re-ranking candidates."""
        core = self.core
        if core.itm_head is None:
            raise BadInputError("codebook_vlp: this model was trained with itm=false; it has no ITM head")
        x = self._tokens(image_tokens, "itm_scores")
        ids, mask = tokenize(load_table(self.config.table), check_texts(captions), self.config.max_text_tokens)
        if len(ids) != len(x):
            raise BadInputError(f"codebook_vlp.itm_scores: {len(x)} images but {len(ids)} captions")
        return core.itm_logit(core.text_encoder(ids, mask), mask, core.image_states(x))

    @torch.no_grad()
    def retrieval_scores(self, image_tokens: torch.Tensor, captions: Sequence[str],
                         batch_size: int = 256) -> tuple[torch.Tensor, torch.Tensor] | None:
        """``(image->text, text->image)`` scores ``[M images, C captions]`` with each query's top
        ``rerank_k`` candidates (by ITC similarity) re-scored by the ITM head, as ALBEF retrieves; None
        when ``rerank_k`` is 0 (retrieval then compares ``encode_image`` and ``encode_text`` by cosine)."""
        # read from the dict: a fitted model's re-ranking may be changed there (benchmarks/codebook_vlp_compare.py)
        k = self.hparams["rerank_k"]
        if k == 0:
            return None
        core = self.core
        x = self._tokens(image_tokens, "retrieval_scores")
        ids, mask = tokenize(load_table(self.config.table), check_texts(captions), self.config.max_text_tokens)
        images = self._batched(core.image_states, x, batch_size)
        texts = torch.cat([core.text_encoder(ids[i:i + batch_size], mask[i:i + batch_size])
                           for i in range(0, len(ids), batch_size)])
        similarity = core.image_embedding(images) @ core.text_embedding(texts, mask).T

        def score(image_rows: torch.Tensor, text_rows: torch.Tensor) -> torch.Tensor:
            return torch.cat([core.itm_logit(texts[text_rows[i:i + batch_size]], mask[text_rows[i:i + batch_size]],
                                             images[image_rows[i:i + batch_size]])
                              for i in range(0, len(image_rows), batch_size)])

        return rerank(similarity, k, score)
