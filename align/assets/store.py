"""The on-disk cache of assets: layout, manifests, sha256 checks and atomic writes.

Layout under ``ALIGN_HOME`` (default ``~/.cache/align``) follows the loaders' own conventions, so
plain library calls find the files too: ``torch/hub/checkpoints`` (``TORCH_HOME=$ALIGN_HOME/torch``)
and ``hf/hub/models--org--name/snapshots/<rev>`` (``HF_HUB_CACHE=$ALIGN_HOME/hf/hub``).
An asset counts as present only once its manifest is written, which happens last, after every
file was verified and moved into place.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

from align.assets.spec import AssetSpec
from align.atomic import atomic_path, write_json_atomic  # noqa: F401  (re-exported)
from align.checksum import file_sha256
from align.errors import AssetMissingError, AssetVerificationError



def align_home() -> Path:
    """Cache root: ``$ALIGN_HOME`` or ``~/.cache/align``."""
    return Path(os.environ.get("ALIGN_HOME") or Path.home() / ".cache" / "align").expanduser()


def hf_hub_cache() -> Path:
    """The Hugging Face hub cache inside ALIGN_HOME (pass as ``cache_dir``/``cache_folder``)."""
    return align_home() / "hf" / "hub"


def torch_hub_checkpoints() -> Path:
    """torch.hub's checkpoint folder inside ALIGN_HOME (pass as ``model_dir``)."""
    return align_home() / "torch" / "hub" / "checkpoints"


def sha256_file(path: Path) -> str:
    """sha256 of a file's bytes (:func:`align.checksum.file_sha256`)."""
    return file_sha256(path)


def asset_root(spec: AssetSpec) -> Path:
    return align_home() / spec.root


def manifest_path(spec: AssetSpec) -> Path:
    return align_home() / "manifests" / f"{spec.name}.json"


def read_manifest(spec: AssetSpec) -> dict[str, str] | None:
    """Files (relative to the root) and their sha256, or None if the asset was never completed."""
    path = manifest_path(spec)
    if not path.is_file():
        return None
    data = json.loads(path.read_text())
    if data.get("version") != spec.version:
        return None
    return dict(data["files"])


def is_present(spec: AssetSpec) -> bool:
    """Cheap check: manifest written for this version and every listed file exists."""
    files = read_manifest(spec)
    root = asset_root(spec)
    return files is not None and all((root / rel).is_file() for rel in files)


def require_present(spec: AssetSpec) -> Path:
    """The asset's root folder, or a one-line error saying which command fetches it."""
    if not is_present(spec):
        raise AssetMissingError(
            f"asset {spec.name!r} is not in the cache {align_home()}; "
            f"fetch it with `align assets pull {spec.name}`"
        )
    return asset_root(spec)


def verify(spec: AssetSpec) -> list[str]:
    """Re-hash every file of a present asset; return the problems found (empty when intact)."""
    files = read_manifest(spec)
    if files is None:
        return [f"{spec.name}: not pulled"]
    root = asset_root(spec)
    problems = []
    for rel, expected in sorted({**files, **spec.sha256}.items()):
        path = root / rel
        if not path.is_file():
            problems.append(f"{spec.name}: {rel} is missing")
        elif sha256_file(path) != expected:
            problems.append(f"{spec.name}: {rel} has the wrong sha256 (corrupted or modified)")
    return problems


def check_pinned(spec: AssetSpec, produced: dict[str, str]) -> None:
    """Raise unless every pinned file was produced with exactly its pinned hash."""
    for rel, expected in spec.sha256.items():
        actual = produced.get(rel)
        if actual is None:
            raise AssetVerificationError(f"asset {spec.name!r}: source did not provide {rel}")
        if actual != expected:
            raise AssetVerificationError(
                f"asset {spec.name!r}: {rel} has sha256 {actual[:12]}..., expected {expected[:12]}..."
            )
