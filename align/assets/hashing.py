"""sha256 of files that are about to be trusted, hashed once per process and checked against pins.

Hashing is memoised by ``(path, size, mtime)``: a weight file read by several encoders, or by the
feature-cache key and then by the loader, is hashed once, while a file replaced in the meantime
(new size or mtime) is hashed again. ``verified_files`` compares a packaged asset's files with the
catalogue's pins, so a damaged or replaced file is a one-line error naming it and the command
that fetches it again, never silently used.
"""

from __future__ import annotations

import hashlib
import json
import os
from collections.abc import Iterable, Mapping
from pathlib import Path

from align.assets.spec import AssetSpec
from align.errors import AssetVerificationError, BadInputError

_CHUNK = 1 << 20
_MEMO: dict[tuple[str, int, int], str] = {}


def _stat_key(path: Path) -> tuple[str, int, int]:
    stat = path.stat()
    return str(path.resolve()), stat.st_size, stat.st_mtime_ns


def file_sha256(path: str | Path) -> str:
    """sha256 of ``path``, memoised by (resolved path, size, mtime); a one-line error if unreadable."""
    path = Path(path)
    try:
        key = _stat_key(path)
        if key not in _MEMO:
            digest = hashlib.sha256()
            with open(path, "rb") as f:
                while block := f.read(_CHUNK):
                    digest.update(block)
            _MEMO[key] = digest.hexdigest()
    except OSError as err:
        raise BadInputError(f"{path}: cannot be read to check its sha256 ({err.strerror or err})") from None
    return _MEMO[key]


def combined_sha256(hashes: Mapping[str, str]) -> str:
    """One digest for several files: sha256 of the sorted ``(relative path, sha256)`` pairs."""
    return hashlib.sha256(json.dumps(sorted(hashes.items())).encode()).hexdigest()


def files_sha256(root: Path, paths: Iterable[Path]) -> str:
    """``combined_sha256`` of files under ``root`` (names relative to it); a single file is its own hash."""
    hashes = {p.relative_to(root).as_posix(): file_sha256(p) for p in paths}
    if len(hashes) == 1:
        return next(iter(hashes.values()))
    return combined_sha256(hashes)


def verified_files(spec: AssetSpec, root: Path) -> dict[str, str]:
    """The actual sha256 of every pinned file of ``spec`` under ``root``; each must match its pin."""
    actual = {}
    for rel, expected in sorted(spec.sha256.items()):
        path = root / rel
        if not path.is_file():
            raise AssetVerificationError(
                f"{path}: missing from asset {spec.name!r}; fetch it again with `align assets pull --force {spec.name}`")
        found = file_sha256(path)
        if found != expected:
            raise AssetVerificationError(
                f"{path}: sha256 {found[:12]}... does not match the catalogue's {expected[:12]}... for asset "
                f"{spec.name!r} (damaged or replaced); fetch it again with `align assets pull --force {spec.name}`")
        actual[rel] = found
    return actual


def asset_fingerprint(spec: AssetSpec, root: Path) -> str:
    """sha256 of a verified asset's files: the file's own hash for a one-file asset, else combined."""
    actual = verified_files(spec, root)
    if len(actual) == 1:
        return next(iter(actual.values()))
    return combined_sha256(actual)


# Files a Hugging Face / sentence-transformers loader reads from a model folder (besides weights).
_CONFIG_SUFFIXES = (".json", ".txt", ".model", ".py")
_SKIP_DIRS = {"onnx", "openvino", ".git", ".cache"}


def model_folder_files(folder: Path) -> list[Path]:
    """The files that decide a Hugging Face model folder's outputs: configs, tokenizer files and the
    weights the loader picks (safetensors when there are any, else ``.bin``/``.pth``)."""
    found = []
    for dirpath, dirnames, filenames in os.walk(folder, followlinks=True):
        dirnames[:] = sorted(d for d in dirnames if d not in _SKIP_DIRS)
        found += [Path(dirpath) / name for name in sorted(filenames)]
    safetensors = [p for p in found if p.suffix == ".safetensors"]
    weights = safetensors or [p for p in found if p.suffix in (".bin", ".pth", ".pt")]
    configs = [p for p in found if p.suffix in _CONFIG_SUFFIXES]
    return sorted(set(weights + configs))


def hf_folder(identifier: str, cache_dir: str | Path | None = None, revision: str | None = None) -> Path | None:
    """The local folder a Hugging Face loader reads ``identifier`` from: the folder itself, or its
    snapshot in the hub cache (no network); None when it is in neither."""
    folder = Path(identifier).expanduser()
    if folder.is_dir():
        return folder
    try:
        from huggingface_hub import snapshot_download  # offline-ok: local_files_only, under hub_offline

        from align.assets.offline import hub_offline

        with hub_offline():
            found = snapshot_download(identifier, cache_dir=None if cache_dir is None else str(cache_dir),  # offline-ok
                                      revision=revision, local_files_only=True)
    except Exception:  # noqa: BLE001 - not cached, malformed id, hub library quirks: unknown, not an error
        return None
    return Path(found)


def hf_folder_sha256(identifier: str, cache_dir: str | Path | None = None, revision: str | None = None) -> str | None:
    """``files_sha256`` of the files a loader reads from a Hugging Face model folder, or None if not local."""
    folder = hf_folder(identifier, cache_dir, revision)
    if folder is None:
        return None
    files = model_folder_files(folder)
    return files_sha256(folder, files) if files else None
