"""Feature shards on disk: written atomically with their checksums, verified before any use.

A shard is one safetensors file holding a ``features`` tensor ``[rows, dim]``. Its header records the
entry it belongs to, its row range and the sha256 of its tensor data, so a shard found without an
index (an interrupted run, a lost ``index.json``) is checked on its own before it is reused; once an
entry is complete its index records the sha256 of every shard file, checked on every read, and the
shards' own row ranges must follow one another in index order (bytes and structure: a hash per file
does not notice shards listed out of order, twice, or with one left out). A shard or index that fails
any check raises :class:`DamagedShard`, which the cache turns into a recompute.
"""

from __future__ import annotations

import hashlib
import json
import re
import struct
from pathlib import Path
from typing import Any

import torch

from align.atomic import atomic_path
from align.errors import AlignError


SHARD_NAME = re.compile(r"shard-\d{5}\.safetensors")


class DamagedShard(AlignError):
    """A shard or index that is truncated, garbled, or not the one its checksum names."""


def data_sha256(tensor: torch.Tensor) -> str:
    """sha256 of a tensor's raw bytes (dtype and shape are checked separately)."""
    flat = tensor.detach().contiguous().cpu().reshape(-1)
    return hashlib.sha256(flat.view(torch.uint8).numpy().tobytes()).hexdigest()


def write_shard(path: Path, tensor: torch.Tensor, header: dict[str, str]) -> str:
    """Write ``tensor`` to ``path`` in one atomic rename, ``header`` plus its data hash in the file's
    metadata; return the sha256 of the file written."""
    from safetensors.torch import save

    blob = save({"features": tensor.contiguous()}, metadata={**header, "data_sha256": data_sha256(tensor)})
    with atomic_path(path) as tmp:
        tmp.write_bytes(blob)
    return hashlib.sha256(blob).hexdigest()


def _metadata(blob: bytes, path: Path) -> dict[str, str]:
    if len(blob) < 8:
        raise DamagedShard(f"{path}: truncated ({len(blob)} bytes)")
    (size,) = struct.unpack("<Q", blob[:8])
    try:
        header = json.loads(blob[8:8 + size])
    except (ValueError, UnicodeDecodeError, RecursionError):
        raise DamagedShard(f"{path}: unreadable safetensors header") from None
    meta = header.get("__metadata__") if isinstance(header, dict) else None
    return meta if isinstance(meta, dict) else {}


def read_shard(path: Path, *, sha256: str | None = None, header: dict[str, str] | None = None,
               dtype: torch.dtype | None = None, first_row: int | None = None) -> torch.Tensor:
    """The ``features`` tensor ``[rows, dim]`` of ``path``, after checking it.

    ``sha256``: the file's hash recorded in an index. ``header``: fields its own header must carry;
    without ``sha256`` (a shard found without an index) its data is also checked against the hash in
    its header. ``first_row``: the row it starts at by its place in the index; its header must give
    exactly the rows ``first_row`` to ``first_row + rows``."""
    from safetensors import SafetensorError
    from safetensors.torch import load

    if not path.is_file():  # a folder, a FIFO (reading one would block), nothing
        raise DamagedShard(f"{path}: {'a folder' if path.is_dir() else 'not a regular file'}, not a shard")
    try:
        blob = path.read_bytes()
    except OSError as err:
        raise DamagedShard(f"{path}: cannot be read ({err.strerror or err})") from None
    if sha256 is not None and hashlib.sha256(blob).hexdigest() != sha256:
        raise DamagedShard(f"{path}: sha256 does not match the one recorded in index.json")
    try:
        features = load(blob)["features"]
    except (SafetensorError, KeyError, ValueError, RuntimeError) as err:
        raise DamagedShard(f"{path}: not a readable shard ({str(err).splitlines()[0] if str(err) else type(err).__name__})") from None
    if dtype is not None and features.dtype != dtype:
        raise DamagedShard(f"{path}: holds {features.dtype}, expected {dtype}")
    if features.ndim != 2:
        raise DamagedShard(f"{path}: holds a {features.ndim}-D tensor, expected [rows, dim]")
    if header is None and first_row is None:
        return features
    meta = _metadata(blob, path)
    wrong = [k for k, v in (header or {}).items() if meta.get(k) != v]
    if wrong:
        raise DamagedShard(f"{path}: its header does not match ({', '.join(wrong)}); written for another entry")
    if first_row is not None:
        stop = first_row + int(features.shape[0])
        if (meta.get("start"), meta.get("stop")) != (str(first_row), str(stop)):
            raise DamagedShard(f"{path}: its header says rows {meta.get('start')}:{meta.get('stop')}, but its place "
                               f"in index.json makes it rows {first_row}:{stop}; shards out of order, repeated or missing")
    if sha256 is None and header is not None and meta.get("data_sha256") != data_sha256(features):
        raise DamagedShard(f"{path}: data does not match the sha256 in its header")
    return features


def _count(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool) and value >= 0


def read_index(path: Path) -> dict[str, Any]:
    """A complete entry's ``index.json`` with the fields a reader relies on, or :class:`DamagedShard`."""
    try:
        index = json.loads(path.read_text(encoding="utf-8"))
    except RecursionError:  # nested deeper than the parser goes: no index of ours
        raise DamagedShard(f"{path}: unreadable index (JSON nested too deep)") from None
    except (OSError, ValueError, UnicodeDecodeError) as err:
        raise DamagedShard(f"{path}: unreadable index ({type(err).__name__})") from None
    ok = (isinstance(index, dict) and isinstance(index.get("shards"), list)
          and isinstance(index.get("sha256"), dict) and _count(index.get("num_items")) and _count(index.get("dim"))
          and isinstance(index.get("dtype", ""), str)
          and all(isinstance(n, str) and SHARD_NAME.fullmatch(n) and n in index["sha256"] for n in index["shards"]))
    if not ok:
        raise DamagedShard(f"{path}: index without shards, their sha256, num_items or dim (or one of the wrong type)")
    return index
