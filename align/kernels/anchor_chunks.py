"""Anchor features read chunk by chunk, so an anchor set larger than memory can be streamed.

A source is either an in-memory ``[N, D]`` tensor or a feature-cache folder (``index.json`` listing
``shard-00000.safetensors`` ... files, each holding one ``features`` tensor; the layout that
``align.features.cache.FeatureCache`` writes). Shards are opened lazily and only the rows of the
current chunk are read, so the peak memory is one chunk whatever the shard and the set sizes.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any, Union

import torch
import torch.nn.functional as F

from align.errors import AlignError, BadInputError

AnchorSource = Union[torch.Tensor, str, Path]


def read_index(folder: Path) -> dict[str, Any]:
    """The ``index.json`` of a feature-cache folder, checked for the fields a reader needs (shard
    names and their sha256 included), or a one-line error naming it."""
    from align.features.shards import DamagedShard
    from align.features.shards import read_index as read_checked

    path = Path(folder) / "index.json"
    if not path.is_file():
        raise BadInputError(f"{folder}: no index.json; not a complete feature-cache folder")
    try:
        return read_checked(path)
    except DamagedShard as err:
        raise BadInputError(f"{err}; write the folder again") from None


def source_shape(source: AnchorSource) -> tuple[int, int]:
    """``(N, D)`` of a source without reading its features."""
    if isinstance(source, torch.Tensor):
        if source.ndim != 2:
            raise BadInputError(f"anchors: expected a 2-D feature matrix, got shape {tuple(source.shape)}")
        return int(source.shape[0]), int(source.shape[1])
    index = read_index(Path(source))
    return int(index["num_items"]), int(index["dim"])


def iter_tensor_chunks(features: torch.Tensor, chunk_rows: int, limit: int | None = None) -> Iterator[torch.Tensor]:
    """Row slices (views, no copy) of at most ``chunk_rows`` rows of the first ``limit`` rows."""
    stop = features.shape[0] if limit is None else min(limit, features.shape[0])
    for start in range(0, stop, chunk_rows):
        yield features[start:min(stop, start + chunk_rows)]


def _check_shard(path: Path, expected: str) -> None:
    """Hash a shard before reading slices of it: a damaged one is a one-line error naming it."""
    import hashlib

    digest = hashlib.sha256()
    try:
        with open(path, "rb") as f:
            while block := f.read(1 << 20):
                digest.update(block)
    except OSError as err:
        raise BadInputError(f"{path}: cannot be read ({err.strerror or err})") from None
    if digest.hexdigest() != expected:
        raise AlignError(f"{path}: sha256 does not match the one in index.json (damaged); write the folder again")


def _check_rows(path: Path, header: dict[str, str], first: int, rows: int) -> None:
    """A shard's own header must give the rows its place in the index does: shards reordered, repeated
    or taken from another folder keep their bytes (and hashes) but would feed anchors in the wrong order."""
    if "start" not in header and "stop" not in header:
        return  # written without row headers: its hash and the total row count are all there is to check
    if header.get("start") != str(first) or header.get("stop") != str(first + rows):
        raise AlignError(f"{path}: holds rows {header.get('start')}-{header.get('stop')} but its place in "
                         f"index.json is rows {first}-{first + rows} (shards reordered?); write the folder again")


def iter_shard_chunks(folder: Path, chunk_rows: int, limit: int | None = None) -> Iterator[torch.Tensor]:
    """``[chunk_rows, D]`` float32 tensors (the last one shorter) of a feature-cache folder's first
    ``limit`` rows, read shard slice by shard slice: chunks may straddle shards."""
    from safetensors import safe_open

    folder = Path(folder)
    index = read_index(folder)
    total = index["num_items"] if limit is None else min(limit, index["num_items"])
    pending: list[torch.Tensor] = []
    have = seen = 0
    for name in index["shards"]:
        if seen >= total:
            break
        _check_shard(folder / name, index["sha256"][name])
        with safe_open(str(folder / name), framework="pt") as shard:
            part = shard.get_slice("features")
            rows, start = part.get_shape()[0], 0
            _check_rows(folder / name, shard.metadata() or {}, seen, rows)
            while start < rows and seen < total:
                take = min(rows - start, chunk_rows - have, total - seen)
                pending.append(part[start:start + take])
                start, have, seen = start + take, have + take, seen + take
                if have == chunk_rows:
                    yield (pending[0] if len(pending) == 1 else torch.cat(pending)).float()
                    pending, have = [], 0
    if pending:
        yield (pending[0] if len(pending) == 1 else torch.cat(pending)).float()
    if seen < total:
        raise AlignError(f"{folder}: shards hold {seen} rows but index.json says {total}; rebuild the folder")


def iter_chunks(
    source: AnchorSource, chunk_rows: int, limit: int | None = None, normalize: bool = False
) -> Iterator[torch.Tensor]:
    """Chunks of a tensor or a feature-cache folder; ``normalize`` L2-normalises each row as it is read."""
    if chunk_rows < 1:
        raise BadInputError(f"anchors: chunk_rows must be >= 1, got {chunk_rows}")
    chunks = (iter_tensor_chunks(source, chunk_rows, limit) if isinstance(source, torch.Tensor)
              else iter_shard_chunks(Path(source), chunk_rows, limit))
    for chunk in chunks:
        yield F.normalize(chunk.float(), dim=1) if normalize else chunk.float()


def write_shards(folder: Path, chunks: Iterable[torch.Tensor], key: dict[str, Any] | None = None) -> Path:
    """Write ``chunks`` as one shard each, in the feature-cache layout, index last; returns ``folder``.

    Used to stream synthetic anchor sets to disk (benchmarks, tests) without holding them whole."""
    from align.atomic import write_json_atomic
    from align.features.shards import write_shard

    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    names, hashes, rows, dim = [], {}, 0, None
    for i, chunk in enumerate(chunks):
        if chunk.ndim != 2 or (dim is not None and chunk.shape[1] != dim):
            raise BadInputError(f"write_shards: chunk {i} has shape {tuple(chunk.shape)}")
        dim, name = int(chunk.shape[1]), f"shard-{i:05d}.safetensors"
        hashes[name] = write_shard(folder / name, chunk.float(), {"start": str(rows), "stop": str(rows + len(chunk))})
        names.append(name)
        rows += int(chunk.shape[0])
    if dim is None:
        raise BadInputError("write_shards: no chunks to write")
    write_json_atomic(folder / "index.json", {"key": key, "num_items": rows, "dim": dim, "shards": names,
                                              "sha256": hashes})
    return folder
