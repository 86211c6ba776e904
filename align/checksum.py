"""Checksums sealed into the JSON files the suite writes and later trusts (results, fitted aligners).

A sealed file carries ``"checksum": {"sha256": ...}``: the sha256 of the canonical JSON of every
other field (sorted keys, no spaces), so it does not depend on the order the fields are written in
(results keep CLIP_benchmark's fields first). A reader recomputes it before using a number: a flipped
byte, a truncated file or a hand edit is found, never used.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping
from pathlib import Path
from typing import Any

FIELD = "checksum"


def canonical(payload: Any) -> bytes:
    """One byte string per JSON value, whatever the key order (NaN and inf kept as JSON's extensions)."""
    return json.dumps(payload, sort_keys=True, separators=(",", ":"), ensure_ascii=False).encode("utf-8")


def digest(payload: Mapping[str, Any]) -> str:
    """sha256 of ``payload`` without its checksum field."""
    return hashlib.sha256(canonical({k: v for k, v in payload.items() if k != FIELD})).hexdigest()


def seal(payload: Mapping[str, Any]) -> dict[str, Any]:
    """``payload`` as JSON will read it back (tuples as lists, keys as strings), with its checksum last."""
    plain = json.loads(json.dumps(dict(payload)))
    plain.pop(FIELD, None)
    return {**plain, FIELD: {"sha256": digest(plain)}}


def problem(payload: Mapping[str, Any]) -> str | None:
    """Why ``payload`` (read from a sealed file) cannot be trusted, or None when its checksum matches."""
    stamp = payload.get(FIELD)
    if not isinstance(stamp, Mapping) or not isinstance(stamp.get("sha256"), str):
        return "no checksum"
    if stamp["sha256"] != digest(payload):
        return "checksum mismatch (the file was changed or damaged after it was written)"
    return None


def file_sha256(path: Path) -> str:
    """sha256 of a file's bytes, read in blocks."""
    sha = hashlib.sha256()
    with open(path, "rb") as f:
        while block := f.read(1 << 20):
            sha.update(block)
    return sha.hexdigest()
