"""benchmarks/codebook_vlp_compare.py's scoring: what one fitted model (an arm, or the contrastive baseline
seen through the same interface) scores on a dataset's test items, with the per-item outputs every score is
read from (so the study's intervals and paired claims are computed from saved files), and the code gallery's
data."""

from __future__ import annotations

import dataclasses
import time
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
import torch

from _codebook_vlp_baseline import PooledContrastive
from _codebook_vlp_tables import METRICS
from _common import PER_ITEM  # benchmarks/_common.py
from align.data.base import LabelSet
from align.eval.items import CodeItems
from align.eval.metrics import classification_items
from align.eval.retrieval import flatten_captions, retrieval_items, retrieval_items_from_scores
from align.eval.zeroshot import class_prompts, zeroshot_logits
from align.methods.codebook_vlp.aligner import CodebookVLPAligner


@dataclasses.dataclass(frozen=True)
class Eval:
    """What one model is scored on: tokens and captions per image (retrieval; captions None: no
    retrieval), zero-shot label sets by result key (of :data:`METRICS`), the tokens they label
    (``zeroshot_tokens``; None: ``tokens``), and the tokens codes are counted on (``code_tokens``; None:
    ``tokens``) with the per-image labels code/class NMI is measured against."""

    tokens: torch.Tensor
    captions: Sequence[Sequence[str]] | None
    zeroshot: Mapping[str, LabelSet]
    code_labels: Any
    zeroshot_tokens: torch.Tensor | None = None
    code_tokens: torch.Tensor | None = None


def score(aligner: CodebookVLPAligner | PooledContrastive, data: Eval, rerank_k: int) -> dict[str, Any]:
    """The scores of one fitted model (an arm, or the baseline seen through the same interface) on ``data``,
    and under ``PER_ITEM`` the per-item outputs they are read from (each metric of METRICS and the code NMI,
    used codes and perplexity)."""
    started = time.perf_counter()
    images = aligner.encode_image(data.tokens)
    out: dict[str, Any] = {}
    items: dict[str, Any] = {}
    if data.captions is not None:
        texts, owner = flatten_captions(data.captions)
        items["retrieval"] = retrieval_items(images, aligner.encode_text_strings(texts), owner, ks=(1, 5))
        if rerank_k > 0:
            aligner.hparams["rerank_k"] = rerank_k  # read by retrieval_scores; the fitted weights are unchanged
            try:
                items["retrieval_rr"] = retrieval_items_from_scores(*aligner.retrieval_scores(data.tokens, texts),
                                                                    owner, ks=(1, 5))
            finally:
                aligner.hparams["rerank_k"] = 0
    if data.zeroshot_tokens is not None:
        images = aligner.encode_image(data.zeroshot_tokens)
    for key, labels in data.zeroshot.items():
        prompts = class_prompts(labels.class_names, labels.templates)
        logits = zeroshot_logits(images, aligner.encode_text_strings(prompts), len(labels.class_names), "mean")
        items[METRICS[key][2][0]] = classification_items(logits, torch.as_tensor(labels.labels))
    if aligner.hparams["codebook"]:
        code_tokens = data.tokens if data.code_tokens is None else data.code_tokens
        codes = aligner.code_indices(code_tokens)
        usage = aligner.code_usage(code_tokens)
        items["codes"] = CodeItems(codes.cpu().numpy().astype("int64"), np.asarray(data.code_labels, dtype=np.int64),
                                   int(aligner.hparams["seed"]))
        out |= {"perplexity": usage["perplexity"], "used_codes": usage["used_codes"],
                "dead_codes": usage["dead_codes"], "top_share": usage["top_share"],
                "code_nmi": items["codes"].value("code_class_nmi")}
    for key, (_, _, (name, metric)) in METRICS.items():
        if name in items and (not name.startswith("zeroshot") or key in data.zeroshot):
            out[key] = items[name].value(metric)
    out["eval_s"] = time.perf_counter() - started
    return {k: float(v) for k, v in out.items()} | {PER_ITEM: items}


def grid_data(aligner: CodebookVLPAligner, tokens: torch.Tensor, codes_shown: int = 6,
              per_code: int = 8) -> dict[str, Any]:
    """The most used codes on ``tokens`` and, for each, the images with most tokens on it (the figure's data)."""
    indices = aligner.code_indices(tokens)  # [N, T]
    counts = torch.nn.functional.one_hot(indices, aligner.core.codebook.num_codes).sum(1)  # [N, K]
    rows = []
    for code in counts.sum(0).argsort(descending=True)[:codes_shown].tolist():
        images = counts[:, code].argsort(descending=True)[:per_code].tolist()
        rows.append({"code": code, "tokens": int(counts[:, code].sum()), "images": images,
                     "counts": [int(counts[i, code]) for i in images]})
    return {"tokens_per_image": int(indices.shape[1]), "codes": rows}
