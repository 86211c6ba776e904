"""Top-k inner-product search of queries against anchors streamed in chunks.

The anchors are read once, chunk by chunk (``anchor_chunks``); for each chunk the queries go in
row blocks sized so the ``q_block x a_chunk`` float32 similarity block (plus its boolean mask)
stays within ``memory_mb``. Each block's candidates are merged into running per-query top-k
buffers that start at value ``-inf`` and index ``-1``, so nothing phantom (anchor 0 with value 0, the
official ASIF code's initialisation) can survive when every real similarity is negative.

Speed: once a query's buffer is full, only block entries above its current k-th value can enter,
so the block is filtered with one vectorised comparison and only the few survivors are kept and,
pooled over several blocks, merged. A block goes through ``torch.topk`` only while buffers fill up
(the first anchor chunk) or when the filter keeps too many (e.g. anchors sorted by similarity).
This keeps the search close to the cost of the matmul itself once there are many chunks.

Backends: ``"torch"`` (exact, default), ``"faiss"`` (exact ``IndexFlatIP`` per chunk), and the
approximate ``"faiss-ivf"`` (``IndexIVFFlat``, ``nlist``/``nprobe``) and ``"faiss-hnsw"``
(``IndexHNSWFlat``), which index the whole anchor set in memory; ``recall_at_k`` measures them
against the exact result. faiss is imported only when a faiss backend is used.

Ties between equal similarities are broken arbitrarily (as ``torch.topk`` does).
"""

from __future__ import annotations

import numbers
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch

from align.errors import BadInputError
from align.kernels.anchor_chunks import AnchorSource, iter_chunks, source_shape
from align.kernels.low_precision import DEFAULT_OVERFETCH, check_overfetch, check_search_precision, rescored_block

EXACT_BACKENDS = ("torch", "faiss")
APPROX_BACKENDS = ("faiss-ivf", "faiss-hnsw")
BACKENDS = EXACT_BACKENDS + APPROX_BACKENDS
DEFAULT_CHUNK_ROWS = 65536
DEFAULT_MEMORY_MB = 256
_FILTER_MAX_FRACTION = 1 / 4  # above this share of a block surviving the filter, a topk is cheaper


@dataclass
class TopK:
    """Per-query best anchors: ``values [M, k]`` float32 in descending order, ``indices [M, k]`` int64
    (global anchor rows; ``-1`` with value ``-inf`` where a search found fewer than k)."""

    values: torch.Tensor
    indices: torch.Tensor

    def first(self, k: int) -> TopK:
        """The best ``k`` of each row (rows are sorted, so a prefix)."""
        return TopK(self.values[:, :k], self.indices[:, :k])


class _Pending:
    """Filter survivors of one query block awaiting a merge, with their slots in a padded layout."""

    def __init__(self, num_rows: int) -> None:
        self.counts = torch.zeros(num_rows, dtype=torch.long)
        self.parts: list[tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]] = []
        self.total = 0

    def add(self, rows: torch.Tensor, values: torch.Tensor, indices: torch.Tensor) -> None:
        """Survivors in row-major order (``rows`` non-decreasing), as ``nonzero`` lists them."""
        counts = torch.bincount(rows, minlength=self.counts.shape[0])
        starts = torch.cumsum(counts, 0) - counts - self.counts  # slot = rank within this add + earlier adds
        slots = torch.arange(rows.shape[0]) - starts[rows]
        self.parts.append((rows, slots, values, indices))
        self.counts += counts
        self.total += rows.shape[0]

    def padded(self) -> tuple[torch.Tensor, torch.Tensor]:
        """``[rows, widest]`` candidate values (``-inf`` padding) and global indices (``-1`` padding)."""
        width = int(self.counts.max())
        values = torch.full((self.counts.shape[0], width), float("-inf"))
        indices = torch.full((self.counts.shape[0], width), -1, dtype=torch.long)
        rows, slots, vals, idx = (torch.cat(t) if len(self.parts) > 1 else t[0] for t in zip(*self.parts))
        where = rows * width + slots
        values.view(-1).scatter_(0, where, vals)
        indices.view(-1).scatter_(0, where, idx)
        return values, indices


class RunningTopK:
    """Top-k buffers for M queries, updated block by block (see the module docstring).

    Buffers are kept unsorted (sorted once by ``result``), with ``floor``, each row's current k-th best
    value. Survivors of the floor filter are pooled per query block and merged once they reach k per
    row on average, so merges are rare once the buffers have settled."""

    def __init__(self, num_queries: int, k: int) -> None:
        self.k = k
        self.values = torch.full((num_queries, k), float("-inf"))
        self.indices = torch.full((num_queries, k), -1, dtype=torch.long)
        self.floor = torch.full((num_queries, 1), float("-inf"))
        self._pending: dict[tuple[int, int], _Pending] = {}

    def merge(self, rows: slice, values: torch.Tensor, indices: torch.Tensor) -> None:
        """Merge candidates ``[rows, c]`` (global anchor indices, any order) into rows ``rows`` now."""
        both = torch.cat([self.values[rows], values], dim=1)
        best, where = both.topk(min(self.k, both.shape[1]), dim=1, sorted=False)
        self.values[rows] = best
        self.indices[rows] = torch.cat([self.indices[rows], indices], dim=1).gather(1, where)
        self.floor[rows] = best.amin(dim=1, keepdim=True)

    def update(self, rows: slice, block: torch.Tensor, offset: int, mask: torch.Tensor | None = None) -> None:
        """Take in a similarity block ``[rows, a]`` whose column j is anchor ``offset + j``.

        ``mask``: optional preallocated contiguous bool buffer of at least ``block.numel()`` entries."""
        if bool(torch.isinf(self.floor[rows]).any()):
            # some buffers are not full yet (the first block): a plain topk; filtering slices of doubling
            # width against a rising floor was measured slower, the survivors' bookkeeping outweighs it
            top_values, top_columns = block.topk(min(self.k, block.shape[1]), dim=1, sorted=False)
            self.merge(rows, top_values, top_columns + offset)
            return
        self._filter(rows, block, offset, mask)

    def _filter(self, rows: slice, block: torch.Tensor, offset: int, mask: torch.Tensor | None) -> None:
        """Pool the block entries above each row's floor; merge the pool once it holds k a row on average."""
        width = block.shape[1]
        if mask is None or mask.numel() < block.numel():
            mask = torch.empty(block.numel(), dtype=torch.bool)
        mask = mask.view(-1)[:block.numel()].view(block.shape)
        torch.gt(block, self.floor[rows], out=mask)
        flat = mask.view(-1).nonzero().squeeze(1)
        if flat.shape[0] == 0:
            return
        if flat.shape[0] > block.numel() * _FILTER_MAX_FRACTION:  # e.g. anchors sorted by similarity
            top_values, top_columns = block.topk(min(self.k, width), dim=1, sorted=False)
            self.merge(rows, top_values, top_columns + offset)
            return
        hit_rows = flat // width
        hit_cols = flat - hit_rows * width
        values = block.view(-1).index_select(0, flat) if block.is_contiguous() else block[hit_rows, hit_cols]
        key = (rows.start, rows.stop)
        pending = self._pending.setdefault(key, _Pending(block.shape[0]))
        pending.add(hit_rows, values, hit_cols + offset)
        if pending.total >= block.shape[0] * self.k:
            self._flush(key)

    def _flush(self, key: tuple[int, int]) -> None:
        pending = self._pending.pop(key, None)
        if pending is not None:
            self.merge(slice(*key), *pending.padded())

    def result(self) -> TopK:
        """The current top-k of every query, sorted descending (copies; the search can go on)."""
        for key in list(self._pending):
            self._flush(key)
        values, order = self.values.sort(dim=1, descending=True)
        return TopK(values, self.indices.gather(1, order))


def query_block_rows(anchor_rows: int, memory_mb: float) -> int:
    """Query rows per block so ``rows x anchor_rows`` float32 similarities plus a bool mask (5 bytes an
    entry) fit in ``memory_mb``; at least 1."""
    return max(1, int(memory_mb * 2**20 // (5 * max(1, anchor_rows))))


def _is_count(value: Any) -> bool:
    """A positive integer (numpy integers included, booleans not)."""
    return isinstance(value, numbers.Integral) and not isinstance(value, bool) and value >= 1


def _check_search(queries: torch.Tensor, k: int, dim: int, backend: str, memory_mb: float) -> None:
    if backend not in BACKENDS:
        raise BadInputError(f"top-k search: unknown backend {backend!r}; choose one of {', '.join(BACKENDS)}")
    if queries.ndim != 2 or queries.shape[1] != dim:
        raise BadInputError(f"top-k search: queries of shape {tuple(queries.shape)} against {dim}-d anchors")
    if not _is_count(k):
        raise BadInputError(f"top-k search: k must be a positive integer, got {k!r}")
    if not memory_mb > 0:
        raise BadInputError(f"top-k search: memory_mb must be > 0, got {memory_mb!r}")


def _faiss_threads_like_torch() -> Any:
    import faiss

    faiss.omp_set_num_threads(torch.get_num_threads())
    return faiss


def _as_faiss(x: torch.Tensor) -> np.ndarray:
    """faiss wants C-contiguous float32 numpy arrays."""
    return np.ascontiguousarray(x.detach().float().numpy(), dtype=np.float32)


def streamed_topk(
    queries: torch.Tensor,
    anchors: AnchorSource,
    k: int,
    *,
    prefixes: Sequence[int] | None = None,
    backend: str = "torch",
    chunk_rows: int = DEFAULT_CHUNK_ROWS,
    memory_mb: float = DEFAULT_MEMORY_MB,
    normalize: bool = False,
    search_precision: str = "float32",
    overfetch: int = DEFAULT_OVERFETCH,
) -> dict[int, TopK]:
    """Exact top-``k`` of ``queries @ anchors.T`` over each anchor prefix in ``prefixes`` (default: all
    anchors), in ONE pass over the anchors: the running buffers are snapshot as each prefix ends.

    ``normalize`` L2-normalises anchor chunks as they are read (queries are used as given). Returns
    ``{n: TopK}``, with prefixes above N clipped to N; ``k`` larger than a prefix leaves ``-1``/``-inf``
    padding in that prefix's rows.

    ``search_precision="bfloat16"`` (torch backend) proposes each block's best ``k + overfetch``
    anchors by bf16 score and keeps the top-k of their exact float32 scores
    (:mod:`align.kernels.low_precision`)."""
    n, dim = source_shape(anchors)
    queries = queries.float().contiguous()
    _check_search(queries, k, dim, backend, memory_mb)
    k = int(k)
    if backend not in EXACT_BACKENDS:
        raise BadInputError(f"streamed_topk: {backend!r} is approximate; use approx_topk")
    low = check_search_precision(search_precision, "streamed_topk") != "float32"
    overfetch = check_overfetch(overfetch, "streamed_topk")
    if low and backend != "torch":
        raise BadInputError(f"streamed_topk: search_precision={search_precision!r} needs backend 'torch', "
                            f"got {backend!r}")
    stops = sorted({min(int(p), n) for p in (prefixes or [n])})
    if not stops or stops[0] < 1:
        raise BadInputError(f"streamed_topk: anchor counts must be >= 1, got {list(prefixes or [])}")
    running = RunningTopK(queries.shape[0], k)
    results: dict[int, TopK] = {}
    chunk_rows = min(chunk_rows, stops[-1])
    q_rows = query_block_rows(chunk_rows, memory_mb)
    faiss = _faiss_threads_like_torch() if backend == "faiss" else None
    queries_low = queries.to(torch.bfloat16) if low else None
    scratch_size = 0 if faiss is not None or low else min(q_rows, queries.shape[0]) * chunk_rows
    scratch, mask = torch.empty(scratch_size), torch.empty(scratch_size, dtype=torch.bool)  # reused per block
    offset, stop_iter = 0, iter(stops)
    next_stop = next(stop_iter)
    for chunk in iter_chunks(anchors, chunk_rows, limit=stops[-1], normalize=normalize):
        start = 0
        while start < chunk.shape[0]:  # split at prefix boundaries, so snapshots land exactly
            end = min(chunk.shape[0], next_stop - offset)
            part = chunk[start:end]
            if faiss is not None:
                _faiss_chunk(faiss, queries, part, offset + start, running, q_rows)
            elif low:
                _bf16_chunk(queries, queries_low, part, offset + start, running, q_rows, k + overfetch)
            else:
                _torch_chunk(queries, part, offset + start, running, q_rows, scratch, mask)
            if offset + end == next_stop:
                results[next_stop] = running.result()
                next_stop = next(stop_iter, n + 1)
            start = end
        offset += chunk.shape[0]
    return results


def _torch_chunk(queries: torch.Tensor, part: torch.Tensor, offset: int, running: RunningTopK, q_rows: int,
                 scratch: torch.Tensor, mask: torch.Tensor) -> None:
    a_rows = part.shape[0]
    part_t = part.T
    for q0 in range(0, queries.shape[0], q_rows):
        q1 = min(queries.shape[0], q0 + q_rows)
        size = (q1 - q0) * a_rows
        block = scratch[:size].view(q1 - q0, a_rows)
        torch.mm(queries[q0:q1], part_t, out=block)
        running.update(slice(q0, q1), block, offset, mask)


def _bf16_chunk(queries: torch.Tensor, queries_low: torch.Tensor, part: torch.Tensor, offset: int,
                running: RunningTopK, q_rows: int, keep: int) -> None:
    """bf16 proposals, exact float32 scores: each query block's ``keep`` candidates go to the buffers."""
    for q0 in range(0, queries.shape[0], q_rows):
        q1 = min(queries.shape[0], q0 + q_rows)
        values, columns = rescored_block(queries[q0:q1], queries_low[q0:q1], part, keep)
        running.merge(slice(q0, q1), values, columns + offset)


def _faiss_chunk(faiss: Any, queries: torch.Tensor, part: torch.Tensor, offset: int, running: RunningTopK,
                 q_rows: int) -> None:
    index = faiss.IndexFlatIP(part.shape[1])
    index.add(_as_faiss(part))
    k = min(running.k, part.shape[0])
    step = max(q_rows, 1024)  # faiss blocks its own work; this only bounds the [rows, k] results
    for q0 in range(0, queries.shape[0], step):
        q1 = min(queries.shape[0], q0 + step)
        values, found = index.search(_as_faiss(queries[q0:q1]), k)
        running.merge(slice(q0, q1), torch.from_numpy(values), torch.from_numpy(found).long() + offset)


def exact_topk(queries: torch.Tensor, anchors: AnchorSource, k: int, **options: Any) -> TopK:
    """Exact top-``k`` over all anchors; ``options`` as for ``streamed_topk`` (minus ``prefixes``)."""
    (result,) = streamed_topk(queries, anchors, k, **options).values()
    return result


# ------------------------------------------------------------------ approximate (faiss)


def default_nlist(n: int) -> int:
    """About 4 sqrt(N) inverted lists, with at least 39 training points each (faiss's k-means floor)."""
    return max(1, min(int(4 * n**0.5), n // 39))


def build_approx_index(
    anchors: AnchorSource,
    backend: str = "faiss-ivf",
    *,
    nlist: int | None = None,
    nprobe: int = 16,
    hnsw_m: int = 32,
    ef_search: int = 128,
    chunk_rows: int = DEFAULT_CHUNK_ROWS,
    normalize: bool = False,
) -> Any:
    """An inner-product faiss index over all anchors (held in memory by faiss), filled chunk by chunk.

    IVF trains its coarse quantiser on the first ``max(64 nlist, chunk_rows)`` rows, so a source sorted
    by topic trains a skewed quantiser: shuffle such sets first."""
    if backend not in APPROX_BACKENDS:
        raise BadInputError(f"approximate index: backend must be one of {', '.join(APPROX_BACKENDS)}, got {backend!r}")
    faiss = _faiss_threads_like_torch()
    n, dim = source_shape(anchors)
    if backend == "faiss-hnsw":
        index = faiss.IndexHNSWFlat(dim, hnsw_m, faiss.METRIC_INNER_PRODUCT)
        index.hnsw.efSearch = ef_search
    else:
        nlist = nlist or default_nlist(n)
        if not 1 <= nlist <= n:
            raise BadInputError(f"approximate index: nlist must lie in [1, {n}], got {nlist}")
        quantizer = faiss.IndexFlatIP(dim)  # faiss's wrapper keeps it alive with the index
        index = faiss.IndexIVFFlat(quantizer, dim, nlist, faiss.METRIC_INNER_PRODUCT)
        index.nprobe = min(nprobe, nlist)
        train_rows = min(n, max(64 * nlist, chunk_rows))
        sample = torch.cat(list(iter_chunks(anchors, chunk_rows, limit=train_rows, normalize=normalize)))
        index.train(_as_faiss(sample))
    for chunk in iter_chunks(anchors, chunk_rows, normalize=normalize):
        index.add(_as_faiss(chunk))
    return index


def approx_topk(queries: torch.Tensor, index: Any, k: int, *, ef_search: int | None = None,
                query_rows: int = 4096) -> TopK:
    """Top-``k`` from an approximate index; HNSW's ``efSearch`` is raised to at least ``k``."""
    if not _is_count(k):
        raise BadInputError(f"approximate search: k must be a positive integer, got {k!r}")
    k = int(k)
    if hasattr(index, "hnsw"):
        index.hnsw.efSearch = max(k, ef_search or index.hnsw.efSearch)
    values, found = [], []
    for q0 in range(0, queries.shape[0], query_rows):
        v, i = index.search(_as_faiss(queries[q0:q0 + query_rows]), k)
        values.append(torch.from_numpy(v))
        found.append(torch.from_numpy(i).long())
    indices = torch.cat(found) if found else torch.empty(0, k, dtype=torch.long)
    scores = torch.cat(values) if values else torch.empty(0, k)
    return TopK(scores.masked_fill(indices < 0, float("-inf")), indices)


def recall_at_k(found: torch.Tensor, exact: torch.Tensor) -> float:
    """Mean over queries of |found ∩ exact| / k for ``[M, k]`` index sets (``-1`` never matches)."""
    if found.shape != exact.shape:
        raise BadInputError(f"recall_at_k: shapes {tuple(found.shape)} and {tuple(exact.shape)} differ")
    if found.numel() == 0:
        raise BadInputError("recall_at_k: no results to compare")
    width = int(max(found.max(), exact.max())) + 2
    rows = torch.arange(found.shape[0])[:, None] * width
    hit = torch.isin(found + rows, exact + rows) & (found >= 0)
    return float(hit.float().mean())


def approx_recall(
    queries: torch.Tensor, anchors: AnchorSource, k: int, backend: str = "faiss-ivf", **index_options: Any
) -> float:
    """Recall@k of an approximate backend against the exact torch search on the same data."""
    exact = exact_topk(queries, anchors, k)
    index = build_approx_index(anchors, backend, **index_options)
    return recall_at_k(approx_topk(queries, index, k).indices, exact.indices)
