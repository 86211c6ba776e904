"""ASIF: a shared space from anchor pairs alone, no training (Norelli et al., NeurIPS 2023).

An item is represented by its similarities to the n anchors of its own modality (papers.md §2.2):

    r(x) = normalize( keep_top_k( clamp_min_0( A x ) ) ** p )      A: L2-normalised anchors, x: L2-normalised

Image anchor i and text anchor i are a pair, so both modalities land in the same n-dimensional
"anchor-id" space and an image/text score is the cosine ``<r_I(x), r_T(y)>``. ``fit`` only stores the
normalised anchors.

Choices (and deviations from the official ``relreps.py``):

- ``k`` defaults to 800, the official code's default, which is sized for ~1.6M anchors. At small
  scale a much smaller k works better (k = 50 on ~1k emoji anchors, papers.md §2.5): set it. A ``k``
  above the number of anchors is clipped to it with a ``warnings.warn`` (the official code raises);
  ``k=None`` means all anchors, silently.
- ``clamp_negative=True`` (a deviation, the ablation switch): kept similarities are clamped at 0
  before the power, so an even ``p`` cannot turn a negative similarity into a strong positive one.
  With ``clamp_negative=False`` (the official behaviour) ``p`` must be an integer (a fractional power
  of a negative number is undefined).
- A row whose kept values are all 0 after the clamp (or a zero query) becomes the zero vector: its
  cosine with everything is 0, never NaN.
- The power is taken after dividing each row by its largest magnitude, which leaves the normalised
  result unchanged but keeps ``v ** p`` from underflowing for small similarities.

Representations are sparse (``SparseRel``: values and anchor indices ``[M, k]``); ``scores`` compares
two of them with a sparse product that never builds ``[M, n]``. ``encode_image``/``encode_text``
return the dense ``[M, n]`` matrix the benchmark tasks expect: fine for thousands of anchors; at
scale use ``represent_image``/``represent_text`` and ``scores`` (or ``relative_represent`` on a
feature-cache folder).
"""

from __future__ import annotations

import numbers
import warnings
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, replace
from typing import Any

import torch
import torch.nn.functional as F

from align.errors import BadInputError
from align.kernels.anchor_chunks import AnchorSource, source_shape
from align.methods.framework.base import Aligner, check_features, check_pairs
from align.methods.framework.hparams import MAX_ROWS, HParams, finite, param
from align.kernels.topk import (
    APPROX_BACKENDS, BACKENDS, DEFAULT_CHUNK_ROWS, DEFAULT_MEMORY_MB, TopK, approx_topk, build_approx_index,
    streamed_topk,
)
from align.registry import ALIGNERS


@dataclass
class SparseRel:
    """Sparse relative representations: row m has ``values[m]`` at anchors ``indices[m]``
    (``[M, k]`` each; index ``-1`` marks an empty slot, value 0) in an ``num_anchors``-wide space."""

    values: torch.Tensor
    indices: torch.Tensor
    num_anchors: int

    def __len__(self) -> int:
        return int(self.values.shape[0])

    def rows(self, which: slice | Sequence[int] | torch.Tensor) -> SparseRel:
        return SparseRel(self.values[which], self.indices[which], self.num_anchors)

    def to_dense(self) -> torch.Tensor:
        """``[M, num_anchors]`` float32 (empty slots add 0)."""
        dense = torch.zeros(len(self), self.num_anchors)
        return dense.scatter_add_(1, self.indices.clamp(min=0), self.values.masked_fill(self.indices < 0, 0.0))


# the largest power: similarities are scaled to at most 1 first, so a larger p only sends more of them to 0
MAX_P = 1000
K_WANT = f"an integer in [1, {MAX_ROWS}] (or None for all anchors)"
P_WANT = f"a number in (0, {MAX_P}]"


def check_k_p(k: Any, p: Any, clamp_negative: Any, what: str = "asif") -> None:
    """One-line errors for hyper-parameters ASIF cannot use."""
    if k is not None and (isinstance(k, bool) or not isinstance(k, numbers.Integral) or not 1 <= k <= MAX_ROWS):
        raise BadInputError(f"{what}: k must be {K_WANT}, got {k!r}")
    if isinstance(p, bool) or not isinstance(p, numbers.Real) or not finite(p) or not 0 < p <= MAX_P:
        raise BadInputError(f"{what}: p must be {P_WANT}, got {p!r}")
    if not isinstance(clamp_negative, bool):
        raise BadInputError(f"{what}: clamp_negative must be true or false, got {clamp_negative!r}")
    if not clamp_negative and float(p) != int(p):
        raise BadInputError(f"{what}: with clamp_negative=False, p must be an integer (got {p}); "
                            "negative similarities have no fractional power")


def effective_k(k: int | None, num_anchors: int, what: str = "asif") -> int:
    """``k`` clipped to the number of anchors, with a warning when it had to be clipped."""
    if k is None:
        return num_anchors
    if k > num_anchors:
        warnings.warn(f"{what}: k={k} exceeds the {num_anchors} anchors; using k={num_anchors}", stacklevel=3)
        return num_anchors
    return k


def relative_from_topk(top: TopK, num_anchors: int, p: float, clamp_negative: bool = True) -> SparseRel:
    """Clamp (optional), power, L2-normalise each row's kept similarities; all-zero rows stay zero."""
    check_k_p(None, p, clamp_negative)
    values = top.values.float()
    empty = top.indices < 0
    if clamp_negative:
        values = values.clamp(min=0)
    values = values.masked_fill(empty, 0.0)
    scale = values.abs().amax(dim=1, keepdim=True)
    values = torch.where(scale > 0, values / scale.clamp(min=torch.finfo(values.dtype).tiny), 0.0)
    values = values.pow(int(p) if float(p) == int(p) else float(p))
    norm = values.norm(dim=1, keepdim=True)
    values = torch.where(norm > 0, values / norm.clamp(min=torch.finfo(values.dtype).tiny), 0.0)
    return SparseRel(values.contiguous(), top.indices.contiguous(), num_anchors)


def _sparse_rows(rel: SparseRel, transpose: bool) -> torch.Tensor:
    """The non-empty entries of ``rel`` as a CSR matrix ``[M, n]`` (or ``[n, M]`` transposed)."""
    keep = (rel.indices >= 0) & (rel.values != 0)
    rows = torch.arange(len(rel))[:, None].expand_as(rel.indices)[keep]
    cols, vals = rel.indices[keep], rel.values[keep]
    coords, shape = (torch.stack([cols, rows]), (rel.num_anchors, len(rel))) if transpose else \
        (torch.stack([rows, cols]), (len(rel), rel.num_anchors))
    return torch.sparse_coo_tensor(coords, vals, shape, check_invariants=False).coalesce().to_sparse_csr()


def scores(a: SparseRel, b: SparseRel) -> torch.Tensor:
    """``[Ma, Mb]`` cosines ``<r_a, r_b>`` of two sets of (unit or zero) representations, as a sparse
    product that never builds a dense ``[M, n]`` matrix."""
    if a.num_anchors != b.num_anchors:
        raise BadInputError(f"asif.scores: {a.num_anchors} vs {b.num_anchors} anchors; representations must "
                            "come from the same anchor set")
    if len(a) == 0 or len(b) == 0:
        return torch.zeros(len(a), len(b))
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message="Sparse CSR tensor support is in beta state")
        return torch.sparse.mm(_sparse_rows(a, False), _sparse_rows(b, True)).to_dense()


def relative_represent(
    queries: torch.Tensor,
    anchors: AnchorSource,
    k: int | None = 800,
    p: float = 8,
    clamp_negative: bool = True,
    *,
    normalize_anchors: bool = True,
    backend: str = "torch",
    chunk_rows: int = DEFAULT_CHUNK_ROWS,
    memory_mb: float = DEFAULT_MEMORY_MB,
    search_precision: str = "float32",
) -> SparseRel:
    """ASIF representations of ``queries [M, D]`` against anchors in memory or in a feature-cache folder
    (streamed; ``normalize_anchors`` normalises each chunk as it is read). Exact backends only."""
    check_k_p(k, p, clamp_negative)
    n, _ = source_shape(anchors)
    queries = F.normalize(check_features(queries, "asif: queries"), dim=1)
    top = streamed_topk(queries, anchors, effective_k(k, n), backend=backend, chunk_rows=chunk_rows,
                        memory_mb=memory_mb, normalize=normalize_anchors, search_precision=search_precision)[n]
    return relative_from_topk(top, n, p, clamp_negative)


# "torch-bf16": the exact torch search with bf16 proposals re-scored in float32 (align.kernels.low_precision);
# a value of ``search`` rather than a new hyper-parameter, so existing results keep their identity.
BF16_SEARCH = "torch-bf16"
SEARCHES = (*BACKENDS, BF16_SEARCH)


def _exact_search(search: str) -> tuple[str, str]:
    """``(backend, search_precision)`` of an exact ``search`` value."""
    return ("torch", "bfloat16") if search == BF16_SEARCH else (search, "float32")


@dataclass(frozen=True)
class ASIFHParams(HParams):
    k: int | None = param(800, low=1, high=MAX_ROWS, want=K_WANT)
    p: float = param(8, above=0, high=MAX_P, want=P_WANT)
    clamp_negative: bool = True
    search: str = param("torch", choices=SEARCHES)
    chunk_size: int = param(DEFAULT_CHUNK_ROWS, low=1, high=MAX_ROWS)
    memory_mb: float = param(DEFAULT_MEMORY_MB, above=0, high=2**20)  # up to 1 TiB
    nlist: int | None = param(None, low=1, high=MAX_ROWS)  # faiss-ivf lists (None: default_nlist of the anchor count)
    nprobe: int = param(16, low=1, high=MAX_ROWS)
    hnsw_m: int = param(32, low=1, high=512)  # faiss-hnsw links per node (2 M of them in the bottom layer)
    ef_search: int = param(128, low=1, high=2**20)

    def check(self, aligner: str) -> ASIFHParams:
        check_k_p(self.k, self.p, self.clamp_negative, aligner)
        return replace(self, p=int(self.p) if float(self.p) == int(self.p) else float(self.p))  # 8.0 -> 8 in JSON


@ALIGNERS.register(
    "asif",
    description="ASIF: training-free relative representations against stored anchor pairs (top-k cosine "
    "similarities, clamped at 0, raised to p, normalised). k: kept anchors (default 800, the official "
    "code's; use ~50 at ~1k anchors), p: power (default 8), clamp_negative, "
    "search: torch|torch-bf16|faiss|faiss-ivf|faiss-hnsw.",
    citation="Norelli, Fumero, Maiorca, Moschella, Rodolà, Locatello, ASIF: Coupled Data Turns Unimodal "
    "Models to Multimodal Without Training, NeurIPS 2023 (arXiv 2210.01738)",
)
class ASIFAligner(Aligner):
    """Relative representations against stored anchor pairs; shared space = anchor-id space."""

    name = "asif"
    config_class = ASIFHParams
    config: ASIFHParams
    represents_by_anchors = True  # represent_image: the anchors behind each image

    def __init__(self, **hparams: Any) -> None:
        super().__init__(**hparams)
        self.anchors_image: torch.Tensor | None = None  # [n, Di], rows L2-normalised
        self.anchors_text: torch.Tensor | None = None  # [n, Dt]
        self._indexes: dict[str, Any] = {}  # approximate faiss indexes, built on first use, not saved

    @property
    def num_anchors(self) -> int:
        self._require_fitted()
        assert self.anchors_image is not None
        return int(self.anchors_image.shape[0])

    @property
    def k_(self) -> int:
        """The k actually used: ``k`` clipped to the number of anchors."""
        k = self.config.k
        return self.num_anchors if k is None else min(k, self.num_anchors)

    def fit(self, image_features: torch.Tensor, text_features: torch.Tensor) -> ASIFAligner:
        x, y = check_pairs(image_features, text_features, "asif.fit")
        self.anchors_image = F.normalize(x, dim=1).contiguous()
        self.anchors_text = F.normalize(y, dim=1).contiguous()
        self.image_dim, self.text_dim = x.shape[1], y.shape[1]
        self._indexes = {}
        effective_k(self.config.k, x.shape[0], "asif.fit")
        return self

    def _represent(self, features: torch.Tensor, modality: str) -> SparseRel:
        image_dim, text_dim = self._require_fitted()
        anchors = self.anchors_image if modality == "image" else self.anchors_text
        assert anchors is not None
        queries = check_features(features, f"asif.encode_{modality}", image_dim if modality == "image" else text_dim)
        queries = F.normalize(queries, dim=1)
        h = self.config
        if h.search in APPROX_BACKENDS:
            if modality not in self._indexes:
                self._indexes[modality] = build_approx_index(
                    anchors, h.search, nlist=h.nlist, nprobe=h.nprobe, hnsw_m=h.hnsw_m, ef_search=h.ef_search,
                    chunk_rows=h.chunk_size)
            top = approx_topk(queries, self._indexes[modality], self.k_)
        else:
            backend, precision = _exact_search(h.search)
            top = streamed_topk(queries, anchors, self.k_, backend=backend, chunk_rows=h.chunk_size,
                                memory_mb=h.memory_mb, search_precision=precision)[self.num_anchors]
        return relative_from_topk(top, self.num_anchors, h.p, h.clamp_negative)

    def represent_image(self, image_features: torch.Tensor) -> SparseRel:
        """Sparse ASIF representations of image features ``[M, Di]``."""
        return self._represent(image_features, "image")

    def represent_text(self, text_features: torch.Tensor) -> SparseRel:
        """Sparse ASIF representations of text features ``[M, Dt]``."""
        return self._represent(text_features, "text")

    def encode_image(self, image_features: torch.Tensor) -> torch.Tensor:
        return self.represent_image(image_features).to_dense()

    def encode_text(self, text_features: torch.Tensor) -> torch.Tensor:
        return self.represent_text(text_features).to_dense()

    def similarity(self, image_features: torch.Tensor, text_features: torch.Tensor) -> torch.Tensor:
        """``[M_images, M_texts]`` ASIF scores, through the sparse path."""
        return scores(self.represent_image(image_features), self.represent_text(text_features))

    def state_dict(self) -> dict[str, torch.Tensor]:
        self._require_fitted()
        assert self.anchors_image is not None and self.anchors_text is not None
        return {"anchors_image": self.anchors_image, "anchors_text": self.anchors_text}

    def load_state_dict(self, state: dict[str, torch.Tensor]) -> None:
        self.anchors_image = state["anchors_image"].float().contiguous()
        self.anchors_text = state["anchors_text"].float().contiguous()
        self.image_dim, self.text_dim = self.anchors_image.shape[1], self.anchors_text.shape[1]
        self._indexes = {}


# ------------------------------------------------------------------ sweeps


@dataclass
class ASIFSweep:
    """Top-``k_max`` per anchor-count prefix, from which every ``(n, k, p)`` representation derives:
    the best k of a prefix are the first k of its best k_max, and p only reshapes kept values."""

    topk: dict[int, TopK]  # keyed by the prefix size actually used (counts above N clipped to N)
    num_anchors: int
    anchor_counts: tuple[int, ...]
    ks: tuple[int | None, ...]
    ps: tuple[float, ...]
    clamp_negative: bool = True

    def keys(self) -> Iterator[tuple[int, int | None, float]]:
        for n in self.anchor_counts:
            for k in self.ks:
                for p in self.ps:
                    yield n, k, p

    def relative(self, n: int, k: int | None, p: float) -> SparseRel:
        """Representations for the first ``n`` anchors, top ``k`` (clipped to n, silently) and power ``p``."""
        used = min(n, self.num_anchors)
        if used not in self.topk:
            raise BadInputError(f"asif sweep: no results for {n} anchors; swept {list(self.anchor_counts)}")
        top = self.topk[used]
        k_used = used if k is None else min(k, used)
        if k_used > top.values.shape[1]:
            raise BadInputError(f"asif sweep: k={k} exceeds the swept maximum {top.values.shape[1]}")
        return relative_from_topk(top.first(k_used), used, p, self.clamp_negative)


def sweep(
    queries: torch.Tensor,
    anchors: AnchorSource,
    anchor_counts: Sequence[int],
    ks: Sequence[int | None],
    ps: Sequence[float],
    *,
    clamp_negative: bool = True,
    normalize_anchors: bool = True,
    backend: str = "torch",
    chunk_rows: int = DEFAULT_CHUNK_ROWS,
    memory_mb: float = DEFAULT_MEMORY_MB,
    search_precision: str = "float32",
) -> ASIFSweep:
    """Every (anchor count, k, p) of ASIF for ``queries`` in ONE pass over the anchors (prefixes of the
    anchor order, so shuffle the anchors first if their order is meaningful). Results equal separate
    runs with each setting (ties aside)."""
    if not anchor_counts or not ks or not ps:
        raise BadInputError("asif sweep: needs at least one anchor count, one k and one p")
    for k in ks:
        for p in ps:
            check_k_p(k, p, clamp_negative, "asif sweep")
    n, _ = source_shape(anchors)
    largest = min(max(anchor_counts), n)
    k_max = min(largest, max(largest if k is None else k for k in ks))
    queries = F.normalize(check_features(queries, "asif sweep: queries"), dim=1)
    tops = streamed_topk(queries, anchors, k_max, prefixes=anchor_counts, backend=backend, chunk_rows=chunk_rows,
                         memory_mb=memory_mb, normalize=normalize_anchors, search_precision=search_precision)
    return ASIFSweep(tops, n, tuple(int(c) for c in anchor_counts), tuple(ks), tuple(ps), clamp_negative)


def sweep_scores(images: ASIFSweep, texts: ASIFSweep) -> Iterator[tuple[tuple[int, int | None, float], torch.Tensor]]:
    """``((n, k, p), [M_images, M_texts] scores)`` for every setting of an image sweep and the text sweep
    over the paired text anchors (same counts, ks and ps)."""
    if (images.anchor_counts, images.ks, images.ps) != (texts.anchor_counts, texts.ks, texts.ps):
        raise BadInputError("asif sweep_scores: the image and text sweeps must use the same counts, ks and ps")
    for key in images.keys():
        yield key, scores(images.relative(*key), texts.relative(*key))
