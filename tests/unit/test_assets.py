"""Asset fetching against local file:// sources: pinning, fallbacks, atomicity, verification."""

from __future__ import annotations

import hashlib
import io
import zipfile
from pathlib import Path

import pytest

from align.assets.fetch import pull
from align.assets.spec import AssetSpec, Concat, Copy, Source, Unzip, Url, WriteText
from align.assets.store import asset_root, is_present, manifest_path, require_present, verify
from align.errors import AssetMissingError, SourceUnavailableError


def sha(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


@pytest.fixture
def served(tmp_path: Path) -> dict[str, tuple[str, bytes]]:
    """Files 'served' over file:// URLs: name -> (url, bytes)."""
    folder = tmp_path / "server"
    folder.mkdir()
    payloads = {"weights.bin": b"\x00weights" * 1000, "part0": b"first-half|", "part1": b"second-half"}
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as zf:
        zf.writestr("model/config.json", '{"dim": 4}')
        zf.writestr("model/desktop.ini", "junk")
    payloads["bundle.zip"] = buffer.getvalue()
    served = {}
    for name, data in payloads.items():
        (folder / name).write_bytes(data)
        served[name] = ((folder / name).as_uri(), data)
    return served


def single_file_spec(url: str, pinned: bytes, name: str = "toy-weights") -> AssetSpec:
    return AssetSpec(
        name=name, version="1", root=f"weights/{name}",
        sha256={"weights.bin": sha(pinned)},
        sources=(Source((Url(url, "weights.bin"),), (Copy("weights.bin", "weights.bin"),)),),
    )


def test_pull_installs_verifies_and_is_idempotent(isolated_home: Path, served) -> None:
    url, data = served["weights.bin"]
    spec = single_file_spec(url, data)
    with pytest.raises(AssetMissingError, match="align assets pull toy-weights"):
        require_present(spec)
    root = pull(spec)
    assert root == isolated_home / "weights/toy-weights"
    assert (root / "weights.bin").read_bytes() == data
    assert is_present(spec) and verify(spec) == []
    assert require_present(spec) == root
    mtime = (root / "weights.bin").stat().st_mtime_ns
    pull(spec)  # present: nothing fetched again
    assert (root / "weights.bin").stat().st_mtime_ns == mtime


def test_checksum_mismatch_leaves_nothing_that_looks_valid(isolated_home: Path, served) -> None:
    url, _ = served["weights.bin"]
    spec = single_file_spec(url, b"other bytes")
    with pytest.raises(SourceUnavailableError) as info:
        pull(spec)
    message = str(info.value)
    assert "toy-weights" in message and "sha256" in message and "\n" not in message
    assert not (asset_root(spec) / "weights.bin").exists()
    assert not manifest_path(spec).exists()
    assert not is_present(spec)
    leftovers = [p for p in (isolated_home / "tmp").rglob("*") if p.is_file()]
    assert leftovers == []


def test_falls_back_to_the_next_source(isolated_home: Path, served, tmp_path: Path) -> None:
    url, data = served["weights.bin"]
    dead = (tmp_path / "nowhere" / "weights.bin").as_uri()
    spec = AssetSpec(
        name="fallback", version="1", root="weights/fallback", sha256={"w.bin": sha(data)},
        sources=(
            Source((Url(dead, "w.bin"),), (Copy("w.bin", "w.bin"),)),
            Source((Url(url, "w.bin"),), (Copy("w.bin", "w.bin"),)),
        ),
    )
    assert (pull(spec) / "w.bin").read_bytes() == data


def test_unreachable_source_is_a_one_line_error(isolated_home: Path, tmp_path: Path) -> None:
    spec = single_file_spec((tmp_path / "missing.bin").as_uri(), b"x", name="unreachable")
    with pytest.raises(SourceUnavailableError, match="could not fetch asset 'unreachable'") as info:
        pull(spec)
    assert "\n" not in str(info.value)


def test_operations_concat_unzip_and_refs(isolated_home: Path, served) -> None:
    (u0, d0), (u1, d1), (uz, _) = served["part0"], served["part1"], served["bundle.zip"]
    spec = AssetSpec(
        name="multi", version="1", root="multi",
        sha256={"joined.bin": sha(d0 + d1), "snap/config.json": sha(b'{"dim": 4}')},
        sources=(Source(
            (Url(u0, "p0"), Url(u1, "p1"), Url(uz, "bundle.zip")),
            (Concat(("p0", "p1"), "joined.bin"), Unzip("bundle.zip", "snap", strip="model/", exclude=("desktop.ini",)),
             WriteText("refs/main", "abc")),
        ),),
    )
    root = pull(spec)
    assert (root / "joined.bin").read_bytes() == b"first-half|second-half"
    assert (root / "refs/main").read_text() == "abc"
    assert not (root / "snap/desktop.ini").exists()


def test_interrupted_install_is_not_present_and_resumes(isolated_home: Path, served) -> None:
    url, data = served["weights.bin"]
    spec = single_file_spec(url, data)
    pull(spec)
    manifest_path(spec).unlink()  # as if the process died before writing the manifest
    assert not is_present(spec)
    pull(spec)
    assert is_present(spec) and verify(spec) == []


def test_verify_detects_corruption(isolated_home: Path, served) -> None:
    url, data = served["weights.bin"]
    spec = single_file_spec(url, data)
    root = pull(spec)
    (root / "weights.bin").write_bytes(b"tampered")
    problems = verify(spec)
    assert problems == ["toy-weights: weights.bin has the wrong sha256 (corrupted or modified)"]
    pull(spec, force=True)
    assert verify(spec) == []


def test_catalog_specs_are_well_formed() -> None:
    from align.assets import CATALOG

    assert {"mobilenet_v2.imagenet1k_v1", "efficientnet_lite0.imagenet", "all-minilm-l6-v2",
            "gemma-3-270m.q4_k_m", "spacy-en-core-web-md", "mnist", "fashion-mnist", "emoji-google"} <= set(CATALOG)
    for spec in CATALOG.values():
        assert spec.sources and spec.sha256, spec.name
        assert all(len(h) == 64 and int(h, 16) >= 0 for h in spec.sha256.values()), spec.name
        assert not Path(spec.root).is_absolute() and ".." not in Path(spec.root).parts
