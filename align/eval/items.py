"""Per-item outputs of a scored task: what each test item got, enough to recompute every metric exactly.

A metric is a summary of its items (a recall is the share of queries whose first correct candidate
ranks below k; an accuracy the share of images whose label is among their first predictions), so the
items are kept beside every result. Two things follow: anyone can check a reported number from
them, and test items can be resampled (:mod:`align.eval.bootstrap`) to say how sure a number is and
whether two aligners scored on the same items really differ.

Each kind is a frozen dataclass of numpy arrays (plus a little metadata), with

- ``metrics()``: the task's metrics, computed from the items alone (the task reports these);
- ``num_units``: how many resampling units there are (test images: a text query resamples with its
  image, so the candidate sets of retrieval stay fixed);
- ``resampled(metric, counts)``: the metric under each row of ``counts [B, num_units]`` (how often
  each unit was drawn), so one draw serves every aligner scored on the same items (a paired draw);
- ``arrays()`` / ``meta()`` and ``from_stored(arrays, meta)``: a lossless round trip through a
  safetensors file (numbers as tensors, strings as JSON metadata; nothing is pickled).
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
from collections.abc import Mapping, Sequence
from typing import Any, ClassVar

import numpy as np

from align.errors import BadInputError


def _ratio(counts: np.ndarray, numerator: np.ndarray, denominator: np.ndarray) -> np.ndarray:
    """``sum(w * numerator) / sum(w * denominator)`` for each row ``w`` of ``counts`` (NaN where empty)."""
    top = counts @ numerator.astype(np.float64)
    bottom = counts @ denominator.astype(np.float64)
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(bottom > 0, top / np.where(bottom > 0, bottom, 1.0), np.nan)


def _fingerprint(*arrays: np.ndarray) -> str:
    """sha256 of what identifies the test items (labels, the image of each text): two results can be
    compared item by item only when these agree."""
    sha = hashlib.sha256()
    for array in arrays:
        sha.update(np.ascontiguousarray(array, dtype=np.int64).tobytes())
        sha.update(b"|")
    return sha.hexdigest()


def _compact(array: np.ndarray) -> np.ndarray:
    """Non-negative ids in the narrowest unsigned type that holds them (read back as int64 by
    :func:`_int_array`): a study keeps every test image's codes, 8 bytes each as int64, 2 as uint16."""
    if array.size == 0 or array.min() < 0:
        return array
    return array.astype(next(t for t in (np.uint8, np.uint16, np.uint32, np.int64)
                              if array.max() <= np.iinfo(t).max))


def _int_array(values: Any, what: str, ndim: int) -> np.ndarray:
    array = np.asarray(values)
    if array.ndim != ndim or (array.size and not np.issubdtype(array.dtype, np.integer)):
        raise BadInputError(f"{what}: expected a {ndim}-D integer array, got shape {array.shape} ({array.dtype})")
    return array.astype(np.int64)


@dataclasses.dataclass(frozen=True)
class ClassificationItems:
    """Each test image's first predictions (class ids, best first) and label, ranked by the tie rule of
    :mod:`align.eval.ties`: a wrong class tied with the label comes before it (column 0 is the argmax
    except where a wrong class ties with the label at the top)."""

    kind: ClassVar[str] = "classification"
    predictions: np.ndarray  # [n, k] int64, k = min(5, num_classes)
    labels: np.ndarray  # [n] int64
    num_classes: int

    @property
    def num_units(self) -> int:
        return int(self.labels.shape[0])

    @property
    def fingerprint(self) -> str:
        return _fingerprint(self.labels, np.asarray([self.num_classes]))

    def _correct(self, k: int) -> np.ndarray:
        return (self.predictions[:, :k] == self.labels[:, None]).any(axis=1)

    def metrics(self) -> dict[str, float]:
        """``acc1``, ``acc5`` (with >= 5 classes) and ``mean_per_class_recall`` (scikit-learn's balanced
        accuracy: recall averaged over the classes present in the labels), as CLIP_benchmark reports them."""
        n = self.num_units
        out = {"acc1": int(self._correct(1).sum()) / n}
        if self.num_classes >= 5:
            out["acc5"] = int(self._correct(5).sum()) / n
        present = np.unique(self.labels)
        true = np.bincount(self.labels, minlength=self.num_classes)[present]
        hits = np.bincount(self.labels[self._correct(1)], minlength=self.num_classes)[present]
        out["mean_per_class_recall"] = float(np.mean(hits / true))
        return out

    def value(self, metric: str) -> float:
        return self.metrics()[metric]

    def resampled(self, metric: str, counts: np.ndarray) -> np.ndarray:
        if metric in ("acc1", "acc5"):
            return _ratio(counts, self._correct(int(metric[-1])), np.ones(self.num_units))
        if metric == "mean_per_class_recall":
            onehot = np.zeros((self.num_units, self.num_classes))
            onehot[np.arange(self.num_units), self.labels] = 1.0
            true = counts @ onehot  # [B, C] how many drawn images of each class
            hits = counts @ (onehot * self._correct(1)[:, None])
            with np.errstate(invalid="ignore", divide="ignore"):
                recall = np.where(true > 0, hits / np.where(true > 0, true, 1.0), np.nan)
            return np.nanmean(recall, axis=1)
        raise BadInputError(f"classification items have no metric {metric!r}")

    def arrays(self) -> dict[str, np.ndarray]:
        return {"predictions": self.predictions, "labels": self.labels}

    def meta(self) -> dict[str, Any]:
        return {"num_classes": self.num_classes}

    @classmethod
    def from_stored(cls, arrays: Mapping[str, np.ndarray], meta: Mapping[str, Any]) -> ClassificationItems:
        return cls(_int_array(arrays["predictions"], "predictions", 2), _int_array(arrays["labels"], "labels", 1),
                   int(meta["num_classes"]))

    @classmethod
    def from_scores(cls, scores: Any, labels: Any) -> ClassificationItems:
        """From ``[n, C]`` scores (only their order matters; ``-inf`` marks an unreachable class) and labels;
        the label's place among the predictions is its rank under :func:`align.eval.ties.ranked_predictions`."""
        import torch

        from align.eval.ties import ranked_predictions

        scores = torch.as_tensor(scores).float()
        if scores.ndim != 2 or scores.shape[0] == 0 or scores.shape[1] == 0:
            raise BadInputError(f"classification_metrics: expected non-empty [n, C] scores, got shape {tuple(scores.shape)}")
        if torch.isnan(scores).any() or torch.isposinf(scores).any():
            raise BadInputError("classification_metrics: scores contain NaN or +inf")
        n, num_classes = scores.shape
        labels = torch.as_tensor(labels, dtype=torch.long)
        if labels.shape != (n,):
            raise BadInputError(f"classification_metrics: labels have shape {tuple(labels.shape)}, expected ({n},)")
        if labels.min() < 0 or labels.max() >= num_classes:
            raise BadInputError(f"classification_metrics: labels must lie in [0, {num_classes})")
        # -inf (unreachable class) becomes a finite floor below every real score: same order
        real = scores[torch.isfinite(scores)]
        lowest = float(real.min()) if real.numel() else 0.0
        finite = scores.masked_fill(torch.isneginf(scores), lowest - 1.0 - abs(lowest))
        top = ranked_predictions(finite, labels, k=min(5, num_classes))  # ties count against the image
        return cls(top.numpy().astype(np.int64), labels.numpy().astype(np.int64), int(num_classes))


@dataclasses.dataclass(frozen=True)
class RetrievalItems:
    """For every query, how many wrong candidates score at least as high as its best correct one (0: its
    first candidate is correct); text queries look for their image, image queries for any of their texts."""

    kind: ClassVar[str] = "retrieval"
    text_ranks: np.ndarray  # [n_texts] int64: text -> image queries
    image_ranks: np.ndarray  # [n_images] int64: image -> text queries; -1 for an image without texts
    text_image_index: np.ndarray  # [n_texts] int64: the image each text describes
    ks: tuple[int, ...]

    @property
    def num_units(self) -> int:
        return int(self.image_ranks.shape[0])

    @property
    def fingerprint(self) -> str:
        return _fingerprint(self.text_image_index, np.asarray([self.num_units]))

    def _queried_images(self) -> np.ndarray:
        return self.image_ranks >= 0

    def metrics(self) -> dict[str, float]:
        """CLIP_benchmark's recall@k both ways: a query is a hit at k when its rank is below k."""
        images = self.image_ranks[self._queried_images()]
        out = {}
        for k in self.ks:
            out[f"image_retrieval_recall@{k}"] = int((self.text_ranks < k).sum()) / len(self.text_ranks)
            out[f"text_retrieval_recall@{k}"] = int((images < k).sum()) / len(images)
        return out

    def value(self, metric: str) -> float:
        return self.metrics()[metric]

    def resampled(self, metric: str, counts: np.ndarray) -> np.ndarray:
        direction, _, k_text = metric.partition("_retrieval_recall@")
        if direction not in ("image", "text") or not k_text.isdigit():
            raise BadInputError(f"retrieval items have no metric {metric!r}")
        k = int(k_text)
        if direction == "image":  # text queries, each drawn as often as its image
            hits = np.bincount(self.text_image_index, weights=(self.text_ranks < k), minlength=self.num_units)
            texts = np.bincount(self.text_image_index, minlength=self.num_units)
            return _ratio(counts, hits, texts)
        queried = self._queried_images()
        return _ratio(counts, queried & (self.image_ranks < k), queried)

    def arrays(self) -> dict[str, np.ndarray]:
        return {"text_ranks": self.text_ranks, "image_ranks": self.image_ranks, "text_image_index": self.text_image_index}

    def meta(self) -> dict[str, Any]:
        return {"ks": list(self.ks)}

    @classmethod
    def from_stored(cls, arrays: Mapping[str, np.ndarray], meta: Mapping[str, Any]) -> RetrievalItems:
        return cls(_int_array(arrays["text_ranks"], "text_ranks", 1), _int_array(arrays["image_ranks"], "image_ranks", 1),
                   _int_array(arrays["text_image_index"], "text_image_index", 1), tuple(int(k) for k in meta["ks"]))

    @classmethod
    def merged(cls, image_to_text: RetrievalItems, text_to_image: RetrievalItems) -> RetrievalItems:
        """Image queries from one scoring, text queries from another (a re-ranker scores each direction apart)."""
        return cls(text_to_image.text_ranks, image_to_text.image_ranks, text_to_image.text_image_index, text_to_image.ks)


@dataclasses.dataclass(frozen=True)
class CaptionItems:
    """Each test image's generated caption, its references and its CIDEr-D score (the corpus CIDEr-D is
    their mean, as pycocoevalcap computes it; BLEU and ROUGE-L are recomputed from the captions)."""

    kind: ClassVar[str] = "captioning"
    cider: np.ndarray  # [n] float64
    generated: tuple[str, ...]
    references: tuple[tuple[str, ...], ...]

    @property
    def num_units(self) -> int:
        return int(self.cider.shape[0])

    @property
    def fingerprint(self) -> str:
        return hashlib.sha256(json.dumps(self.references).encode("utf-8")).hexdigest()

    def metrics(self) -> dict[str, float]:
        from align.eval.captioning import caption_scores

        return caption_scores(self.generated, self.references)[0]

    def value(self, metric: str) -> float:
        return float(np.mean(self.cider)) if metric == "CIDEr" else self.metrics()[metric]

    def resampled(self, metric: str, counts: np.ndarray) -> np.ndarray:
        if metric != "CIDEr":  # BLEU is a corpus statistic (clipped n-gram counts), not a mean over images
            raise BadInputError(f"caption items resample CIDEr only, not {metric!r}")
        return _ratio(counts, self.cider, np.ones(self.num_units))

    def arrays(self) -> dict[str, np.ndarray]:
        return {"cider": self.cider}

    def meta(self) -> dict[str, Any]:
        return {"generated": list(self.generated), "references": [list(r) for r in self.references]}

    @classmethod
    def from_stored(cls, arrays: Mapping[str, np.ndarray], meta: Mapping[str, Any]) -> CaptionItems:
        return cls(np.asarray(arrays["cider"], dtype=np.float64), tuple(str(g) for g in meta["generated"]),
                   tuple(tuple(str(r) for r in refs) for refs in meta["references"]))


@dataclasses.dataclass(frozen=True)
class CodeItems:
    """Each test image's discrete codes (``[n, T]`` ids) and label, and the k-means seed of the histogram NMI."""

    kind: ClassVar[str] = "codes"
    codes: np.ndarray  # [n, T] int64
    labels: np.ndarray  # [n] int64
    seed: int

    @property
    def num_units(self) -> int:
        return int(self.codes.shape[0])

    @property
    def fingerprint(self) -> str:
        return _fingerprint(self.labels)

    def metrics(self) -> dict[str, float]:
        from align.eval.token_stats import code_usage, histogram_cluster_nmi, token_nmi

        usage = code_usage(self.codes)
        return {"codes_used": usage["distinct"], "code_perplexity": usage["perplexity"],
                "code_class_nmi": token_nmi(self.codes, self.labels),
                "code_histogram_nmi": histogram_cluster_nmi(self.codes, self.labels, seed=self.seed)}

    def value(self, metric: str) -> float:
        from align.eval.token_stats import code_usage, histogram_cluster_nmi, token_nmi

        if metric == "code_class_nmi":
            return token_nmi(self.codes, self.labels)
        if metric == "code_histogram_nmi":
            return histogram_cluster_nmi(self.codes, self.labels, seed=self.seed)
        usage = code_usage(self.codes)
        return {"codes_used": usage["distinct"], "code_perplexity": usage["perplexity"]}[metric]

    def resampled(self, metric: str, counts: np.ndarray) -> np.ndarray:
        """Not resampled: codes in use, their perplexity and code/class NMI are statistics of the pooled codes,
        not means over images, and a bootstrap draw (repeating some images, dropping others) shifts them
        (fewer codes, lower perplexity, higher plug-in NMI), so a percentile interval can miss the value."""
        raise BadInputError(f"{metric} is a statistic of the pooled codes, not a mean over images: no interval")

    def arrays(self) -> dict[str, np.ndarray]:
        return {"codes": _compact(self.codes), "labels": self.labels}

    def meta(self) -> dict[str, Any]:
        return {"seed": self.seed}

    @classmethod
    def from_stored(cls, arrays: Mapping[str, np.ndarray], meta: Mapping[str, Any]) -> CodeItems:
        return cls(_int_array(arrays["codes"], "codes", 2), _int_array(arrays["labels"], "labels", 1), int(meta["seed"]))


@dataclasses.dataclass(frozen=True)
class MeanItems:
    """A metric that is the mean of one value per test item (a study's per-image correctness of a probe,
    per-episode accuracy of an in-context evaluation, per-image error), under one name."""

    kind: ClassVar[str] = "mean"
    values: np.ndarray  # [n] float64
    name: str
    units: np.ndarray | None = None  # [n] int64 ids of what was resampled (same ids: same items); default 0..n-1

    @property
    def num_units(self) -> int:
        return int(self.values.shape[0])

    @property
    def fingerprint(self) -> str:
        return _fingerprint(self.units if self.units is not None else np.arange(self.num_units))

    def metrics(self) -> dict[str, float]:
        return {self.name: float(np.mean(self.values))}

    def value(self, metric: str) -> float:
        return self.metrics()[metric]

    def resampled(self, metric: str, counts: np.ndarray) -> np.ndarray:
        if metric != self.name:
            raise BadInputError(f"per-item values of {self.name!r} have no metric {metric!r}")
        return _ratio(counts, self.values, np.ones(self.num_units))

    def arrays(self) -> dict[str, np.ndarray]:
        return {"values": self.values, **({"units": self.units} if self.units is not None else {})}

    def meta(self) -> dict[str, Any]:
        return {"name": self.name}

    @classmethod
    def from_stored(cls, arrays: Mapping[str, np.ndarray], meta: Mapping[str, Any]) -> MeanItems:
        units = _int_array(arrays["units"], "units", 1) if "units" in arrays else None
        return cls(np.asarray(arrays["values"], dtype=np.float64), str(meta["name"]), units)


@dataclasses.dataclass(frozen=True)
class QueryItems:
    """Queries about test images (a visual arithmetic query from its source image, a question about its
    image), each with the rank of its best right answer under the tie rule of :mod:`align.eval.ties`.

    The resampling unit is the image a query is about, not the query: one image's queries share its
    embedding, so they hit or miss together and drawing them one by one would make intervals too
    narrow (retrieval's text queries are resampled with their image for the same reason). Each metric
    is a hit rate at one depth: ``metric_ks`` pairs its name with k (a hit at k when the rank is below k)."""

    kind: ClassVar[str] = "queries"
    ranks: np.ndarray  # [Q] int64: wrong candidates scoring at least as high as the best right one
    images: np.ndarray  # [Q] int64: the image each query is about, in [0, num_images)
    num_images: int  # every test image, with or without queries: the resampling units
    metric_ks: tuple[tuple[str, int], ...]  # e.g. (("recall@1", 1), ("recall@5", 5)) or (("acc1", 1),)

    def __post_init__(self) -> None:
        if self.ranks.shape != self.images.shape or self.ranks.ndim != 1 or not len(self.ranks):
            raise BadInputError(f"query items: expected as many ranks as images, at least one, got "
                                f"{self.ranks.shape} and {self.images.shape}")
        if self.images.min() < 0 or self.images.max() >= self.num_images:
            raise BadInputError(f"query items: image ids must lie in [0, {self.num_images})")

    @property
    def num_units(self) -> int:
        return int(self.num_images)

    @property
    def fingerprint(self) -> str:
        return _fingerprint(self.images, np.asarray([self.num_images]))

    def _k(self, metric: str) -> int:
        ks = dict(self.metric_ks)
        if metric not in ks:
            raise BadInputError(f"query items have no metric {metric!r} (have: {', '.join(ks)})")
        return ks[metric]

    def metrics(self) -> dict[str, float]:
        """Each metric's share of queries whose rank is below its k."""
        return {name: int((self.ranks < k).sum()) / len(self.ranks) for name, k in self.metric_ks}

    def value(self, metric: str) -> float:
        return int((self.ranks < self._k(metric)).sum()) / len(self.ranks)

    def resampled(self, metric: str, counts: np.ndarray) -> np.ndarray:
        hits = np.bincount(self.images, weights=(self.ranks < self._k(metric)), minlength=self.num_images)
        asked = np.bincount(self.images, minlength=self.num_images)
        return _ratio(counts, hits, asked)

    def arrays(self) -> dict[str, np.ndarray]:
        return {"ranks": self.ranks, "images": self.images}

    def meta(self) -> dict[str, Any]:
        return {"num_images": int(self.num_images), "metric_ks": [[name, int(k)] for name, k in self.metric_ks]}

    @classmethod
    def from_stored(cls, arrays: Mapping[str, np.ndarray], meta: Mapping[str, Any]) -> QueryItems:
        return cls(_int_array(arrays["ranks"], "ranks", 1), _int_array(arrays["images"], "images", 1),
                   int(meta["num_images"]), tuple((str(name), int(k)) for name, k in meta["metric_ks"]))


Items = ClassificationItems | RetrievalItems | CaptionItems | CodeItems | MeanItems | QueryItems
KINDS: dict[str, type] = {cls.kind: cls for cls in (ClassificationItems, RetrievalItems, CaptionItems, CodeItems,
                                                     MeanItems, QueryItems)}


def items_from_stored(kind: str, arrays: Mapping[str, np.ndarray], meta: Mapping[str, Any]) -> Items:
    """The items of ``kind`` from their stored arrays and metadata (a one-line error when they do not fit)."""
    if kind not in KINDS:
        raise BadInputError(f"unknown kind of per-item outputs {kind!r}; known: {', '.join(sorted(KINDS))}")
    try:
        return KINDS[kind].from_stored(arrays, meta)
    except (KeyError, TypeError, ValueError) as err:
        raise BadInputError(f"{kind} per-item outputs are incomplete or malformed ({err})") from None


def check_same_items(items: Sequence[Items], what: str = "results") -> None:
    """A one-line error unless every entry was scored on the very same test items (kind, count, labels)."""
    kinds = {(type(i).kind, i.num_units, i.fingerprint) for i in items}
    if len(kinds) > 1:
        raise BadInputError(f"{what}: were not scored on the same test items, so they cannot be compared item by item")
