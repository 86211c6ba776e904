"""Per-item outputs beside a result file, sealed by it.

``…__seed0.json`` gets ``…__seed0.items.safetensors``: the task's per-item outputs
(:mod:`align.eval.items`) as tensors, with their kind and small metadata (class count, recall ks,
captions) in the safetensors header. Nothing is pickled. The result records the file's sha256 in its
``items`` field, which its own checksum seals, so a swapped, edited or truncated items file is found
before any number of it is used, and a result whose items file is missing or damaged is recomputed.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np

from align.atomic import atomic_path
from align.checksum import file_sha256
from align.errors import AlignError, BadInputError
from align.eval.items import Items, items_from_stored

SUFFIX = ".items.safetensors"


class ItemsProblem(AlignError):
    """Per-item outputs that cannot be used: missing, damaged, or not the ones the result sealed."""


def items_path(result_path: Path) -> Path:
    """``<dataset>__<task>__seed<k>.items.safetensors`` beside ``<dataset>__<task>__seed<k>.json``."""
    result_path = Path(result_path)
    return result_path.with_name(result_path.name.removesuffix(".json") + SUFFIX)


def write_items(result_path: Path, items: Items) -> dict[str, Any]:
    """Write ``items`` beside ``result_path`` atomically; return the record the result seals."""
    from safetensors.numpy import save_file

    target = items_path(result_path)
    arrays = {name: np.ascontiguousarray(array) for name, array in items.arrays().items()}
    header = {"kind": type(items).kind, "meta": json.dumps(items.meta(), ensure_ascii=False)}
    try:
        with atomic_path(target) as tmp:
            save_file(arrays, str(tmp), metadata=header)
    except OSError as err:
        raise AlignError(f"{target}: cannot write the per-item outputs ({err.strerror or err})") from None
    return {"file": target.name, "kind": type(items).kind, "sha256": file_sha256(target),
            "num_units": items.num_units}


def read_items(result: dict[str, Any], result_path: Path) -> Items:
    """The verified per-item outputs of ``result`` (read from ``result_path``, already verified), or an
    :class:`ItemsProblem` naming the file and what is wrong."""
    from safetensors import SafetensorError, safe_open

    record = result.get("items")
    if not isinstance(record, dict) or not isinstance(record.get("sha256"), str):
        raise ItemsProblem(f"{result_path}: has no per-item outputs (written by an older align)")
    path = items_path(result_path)
    if record.get("file") != path.name:
        raise ItemsProblem(f"{result_path}: names per-item outputs {record.get('file')!r}, not {path.name!r}")
    if not path.is_file():
        raise ItemsProblem(f"{path}: per-item outputs are missing")
    try:
        if file_sha256(path) != record["sha256"]:
            raise ItemsProblem(f"{path}: per-item outputs changed or damaged after their result was written")
        with safe_open(str(path), framework="np") as handle:
            header = handle.metadata() or {}
            arrays = {name: handle.get_tensor(name) for name in handle.keys()}
        meta = json.loads(header.get("meta", "{}"))
        items = items_from_stored(header.get("kind", ""), arrays, meta if isinstance(meta, dict) else {})
    except OSError as err:
        raise ItemsProblem(f"{path}: cannot read the per-item outputs ({err.strerror or err})") from None
    except (SafetensorError, ValueError, RecursionError, BadInputError) as err:
        raise ItemsProblem(f"{path}: not valid per-item outputs ({err})") from None
    if type(items).kind != record.get("kind") or items.num_units != record.get("num_units"):
        raise ItemsProblem(f"{path}: holds {type(items).kind} outputs of {items.num_units} items, "
                           f"not the {record.get('kind')} outputs of {record.get('num_units')} its result names")
    return items
