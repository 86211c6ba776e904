"""The linear contrastive head beside Codebook-VLP's arms (issue 32: is the full model within reach of it?).

The ``contrastive`` aligner at its validated defaults (``configs/aligners/contrastive.yaml``, the settings
``align bench`` gives it by name) is fitted on each study dataset's fit pairs, for every seed, and scored on
the same test items as every arm, so its per-item outputs pair with theirs. Its image side is the frozen
encoder's own pooled embedding of the same tokens (``encoder.pool``: MobileNetV2 averages its grid, which is
what the benchmark's image features are); its text side is frozen all-MiniLM-L6-v2 sentence embeddings, the
model whose first layers start every arm's text side. It trains in seconds, so it is refitted with the study.

Beside it, the same head on a shallow text side (:data:`SHALLOW`): the mean of the token states of the arms'
own text tower as it is built from MiniLM's first ``text_layers`` layers, frozen, which is where every arm's
text encoder starts (the arms then train it). The two heads differ only in how much of the pretrained text
model they read, so their paired difference measures what the deeper text side alone is worth to a linear
map, to hold against the gap between the arms and the sentence-embedding head.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

import torch
import yaml

from _codebook_vlp_tables import BASELINE, SHALLOW  # their labels in the tables
from align.features.cache import FeatureCache, text_features
from align.methods.contrastive import ContrastiveAligner

SLUGS = {BASELINE: "contrastive", SHALLOW: "contrastive_first_layers"}  # run files: <dataset>/<slug>_seed<seed>.json
TEXT_ENCODER = "hf:sentence-transformers/all-MiniLM-L6-v2"
CONFIG = Path(__file__).resolve().parents[1] / "configs" / "aligners" / "contrastive.yaml"
# not part of a fit's identity (where it runs, what it shows), so not part of the run's key
RUNTIME_FIELDS = ("checkpoint_dir", "progress", "accelerator", "devices", "strategy")


def baseline_hparams() -> dict[str, Any]:
    """The contrastive aligner's config by name (what ``align bench`` fits), less the runtime fields."""
    hparams = yaml.safe_load(CONFIG.read_text())["hparams"]
    return {k: v for k, v in hparams.items() if k not in RUNTIME_FIELDS}


SHALLOW_FIELDS = ("table", "text_layers", "max_text_tokens")  # what of the arms' settings the shallow head reads


def shallow_text_side(arm_hparams: Mapping[str, Any]) -> dict[str, Any]:
    """What :func:`first_layers_embedder` reads of the arms' settings: the shallow head's text side, so that an
    arm with another table, depth or token limit gives the head another key (and a refit, not a stale run)."""
    return {field: arm_hparams[field] for field in SHALLOW_FIELDS}


def baseline_run(runs: Path, dataset: str, hparams: Mapping[str, Any], seed: int, info: Mapping[str, Any],
                 label: str = BASELINE, text_side: Mapping[str, Any] | None = None) -> tuple[Path, dict[str, Any]]:
    """Where a baseline's fit on ``dataset`` with ``seed`` is saved, and its key (:data:`SHALLOW` is keyed by
    ``text_side``, :func:`shallow_text_side` of the arms' settings)."""
    key = {"stage": "study", "dataset": dataset, "variant": label, "hparams": dict(hparams, seed=seed),
           "data": dict(info), "image_features": "encoder.pool(tokens)", "text_encoder": TEXT_ENCODER}
    if label == SHALLOW:
        if text_side is None:
            raise ValueError(f"{SHALLOW}: its run key needs the arms' text side ({', '.join(SHALLOW_FIELDS)})")
        key["text_features"] = f"mean of the token states after layer {text_side['text_layers']}"
        key["text_side"] = dict(text_side)
    return runs / dataset / f"{SLUGS[label]}_seed{seed}.json", key


class PooledContrastive:
    """A fitted contrastive head seen through the arms' interface: ``encode_image`` takes token grids (pooled
    as the encoder pools them) and ``encode_text_strings`` takes strings (embedded by the frozen text
    encoder), so the study scores it with the arms' own scoring function."""

    def __init__(self, aligner: ContrastiveAligner, pool: Callable[[torch.Tensor], torch.Tensor],
                 embed_texts: Callable[[Sequence[str]], torch.Tensor]) -> None:
        self.aligner, self.pool, self.embed_texts = aligner, pool, embed_texts
        self.hparams = {"codebook": False, "seed": aligner.hparams["seed"]}  # no codes to count, no ITM

    def encode_image(self, tokens: torch.Tensor) -> torch.Tensor:
        return self.aligner.encode_image(self.pool(tokens))

    def encode_text_strings(self, texts: Sequence[str]) -> torch.Tensor:
        return self.aligner.encode_text(self.embed_texts(texts))


def text_embedder(cache: FeatureCache) -> Callable[[Sequence[str]], torch.Tensor]:
    """Frozen sentence embeddings of any strings, through the feature cache (keyed by the texts' hash)."""
    def embed(texts: Sequence[str]) -> torch.Tensor:
        return text_features(TEXT_ENCODER, list(texts), dataset="codebook_vlp_study", version="1",
                             split="texts", cache=cache, progress=False)
    return embed


def first_layers_embedder(hparams: Mapping[str, Any], layers: int | None = None,
                          batch_size: int = 256) -> Callable[[Sequence[str]], torch.Tensor]:
    """Frozen, unit-norm means over the real tokens of the text states every arm starts from: an arm's own
    tokenizer (``table``, ``max_text_tokens`` of its ``hparams``) and its text tower built from the masked LM
    with ``layers`` layers (default: the arm's ``text_layers``), before any training."""
    from align.methods.codebook_vlp.core import load_table, tokenize
    from align.methods.codebook_vlp.layers import TextEncoder, bert_shape

    table = load_table(hparams["table"])
    lm = table.load_lm()
    shape = bert_shape(lm)
    tower = TextEncoder(table.vocab_size, shape["width"], shape["heads"], shape["ffn"],
                        hparams["text_layers"] if layers is None else layers, shape["positions"], lm).eval()

    @torch.no_grad()
    def embed(texts: Sequence[str]) -> torch.Tensor:
        out = []
        for start in range(0, len(texts), batch_size):
            ids, mask = tokenize(table, texts[start:start + batch_size], hparams["max_text_tokens"])
            weights = mask.unsqueeze(-1).float()
            out.append(torch.nn.functional.normalize((tower(ids, mask) * weights).sum(1) / weights.sum(1), dim=-1))
        return torch.cat(out)
    return embed


def fit_baseline(hparams: Mapping[str, Any], seed: int, fit_tokens: torch.Tensor, captions: Sequence[str],
                 pool: Callable[[torch.Tensor], torch.Tensor], embed_texts: Callable[[Sequence[str]], torch.Tensor],
                 ) -> PooledContrastive:
    """The contrastive head fitted on the pooled fit tokens and the fit captions' sentence embeddings."""
    aligner = ContrastiveAligner(**dict(hparams, seed=seed))
    aligner.fit(pool(fit_tokens), embed_texts(captions))
    return PooledContrastive(aligner, pool, embed_texts)
