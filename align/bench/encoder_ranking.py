"""``align pairs``: rank image x text encoder pairs by how aligned their features already are.

Each pair is scored on the same pairs an aligner would be fitted on (a dataset's fit split and
:func:`~align.bench.execute.features.fit_captions`), read through the feature cache under the keys the benchmark
runner uses, so features computed by ``align bench`` are reused and vice versa. The scores
(:mod:`align.eval.alignment_metrics`) need no fit: they say which pairs are worth a benchmark run.

A fit pair whose features are all zeros under one of the encoders compared (a caption with no word in a
word-vector table, e.g. spaCy's md vectors) has no cosine neighbours; it is left out of every pair's
scores alike, so all pairs are scored on the same items, and the table says how many were left out.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

import torch

from align.atomic import atomic_path
from align.bench.execute.features import FeatureBank, fit_captions
from align.errors import AlignError, BadInputError
from align.eval.alignment_metrics import METRICS, alignment_scores


@dataclass(frozen=True)
class PairScores:
    image_encoder: str
    text_encoder: str
    scores: dict[str, float]

    @property
    def label(self) -> str:
        return f"{self.image_encoder} + {self.text_encoder}"


@dataclass(frozen=True)
class PairTable:
    dataset: str
    split: str
    k: int
    num_pairs: int
    pairing: str
    rows: tuple[PairScores, ...]
    left_out: tuple[tuple[str, int], ...] = ()  # (encoder, fit pairs left out for its all-zero features)


def score_pairs(dataset: str, split: str, image_encoders: Sequence[str], text_encoders: Sequence[str], *,
                k: int = 10, bank: FeatureBank | None = None,
                echo: Callable[[str], None] = lambda line: None) -> PairTable:
    """Every metric for every (image encoder, text encoder) pair on ``dataset``/``split``."""
    from align.registry import DATASETS, TEXT_ENCODERS, VISION_ENCODERS

    for name in image_encoders:
        VISION_ENCODERS.meta(name)  # an unknown name fails before any feature is computed
    for name in text_encoders:
        TEXT_ENCODERS.meta(name)
    bank = bank or FeatureBank()
    data = DATASETS.create(dataset).load(split)
    captions, pairing = fit_captions(data)
    _check_k(k, len(captions), dataset, split)  # before any feature is computed
    texts = {name: bank.texts(name, captions, data, "fit-captions") for name in text_encoders}
    images = {name: bank.images(name, data) for name in image_encoders}
    zero = {name: features.norm(dim=1) == 0 for name, features in (*images.items(), *texts.items())}
    keep = ~torch.stack(list(zero.values())).any(dim=0)
    left_out = tuple((name, int(rows.sum())) for name, rows in zero.items() if rows.any())
    if left_out:
        echo(f"{int((~keep).sum())} of {len(captions)} fit pairs left out (all-zero features): "
             + ", ".join(f"{name} {n}" for name, n in left_out))
    num_pairs = int(keep.sum())
    _check_k(k, num_pairs, dataset, split)
    rows = []
    for image_encoder in image_encoders:
        for text_encoder in text_encoders:
            scores = alignment_scores(images[image_encoder][keep], texts[text_encoder][keep], k,
                                      names=(f"{image_encoder} features", f"{text_encoder} features"))
            echo(f"{image_encoder} + {text_encoder}: " + ", ".join(f"{m} {v:.3f}" for m, v in scores.items()))
            rows.append(PairScores(image_encoder, text_encoder, scores))
    return PairTable(dataset, split, k, num_pairs, pairing, tuple(rows), left_out)


def _check_k(k: int, num_pairs: int, dataset: str, split: str) -> None:
    if not 1 <= k < num_pairs:
        raise BadInputError(f"--k {k}: {dataset}/{split} has {num_pairs} pairs; k must be from 1 to {num_pairs - 1}")


def ranks(rows: Sequence[PairScores], metric: str) -> list[int]:
    """Rank of each row by ``metric`` (1 = most aligned; NaN ranks last; ties share the better rank)."""
    values = [r.scores[metric] for r in rows]
    key = [-math.inf if math.isnan(v) else v for v in values]
    return [1 + sum(other > mine for other in key) for mine in key]


def markdown(table: PairTable, sort: str = "mutual_knn") -> str:
    """One row per pair, sorted by ``sort``; each cell is the score and its rank by that column's metric."""
    if sort not in METRICS:
        raise BadInputError(f"--sort {sort!r}: expected one of {', '.join(METRICS)}")
    by_metric = {metric: ranks(table.rows, metric) for metric in METRICS}
    order = sorted(range(len(table.rows)), key=lambda i: (by_metric[sort][i], table.rows[i].label))
    left_out = ""
    if table.left_out:
        left_out = ("; left out of every pair: the fit pairs with all-zero features under "
                    + ", ".join(f"{name} ({n})" for name, n in table.left_out))
    lines = [f"Alignment before fitting on {table.dataset}/{table.split} ({table.num_pairs} pairs: {table.pairing}"
             f"{left_out}); k = {table.k} for mutual_knn and cknna; (n) = rank by that column.", "",
             "| pair | " + " | ".join(METRICS) + " |", "|---|" + "---:|" * len(METRICS)]
    for i in order:
        row = table.rows[i]
        cells = [f"{row.scores[m]:.3f} ({by_metric[m][i]})" for m in METRICS]
        lines.append(f"| {row.label} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def write_markdown(path: Path, text: str) -> None:
    """Write the table atomically; a place that cannot take it is a one-line error naming it."""
    try:
        with atomic_path(Path(path)) as tmp:
            tmp.write_text(text + "\n")
    except OSError as err:
        raise AlignError(f"{path}: cannot write the table ({err.strerror or err})") from None
