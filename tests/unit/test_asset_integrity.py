"""Packaged files are checked against the catalogue before use, weights are hashed from the file
really loaded, and nothing in the cache is unpickled or executed."""

from __future__ import annotations

import gzip
import json
import os
import pickle
import shutil
from pathlib import Path

import pytest

from align.assets import CATALOG, file_sha256
from align.assets.spec import AssetSpec
from align.errors import AlignError, AssetVerificationError, BadInputError
from align.registry import Registry

REAL_HOME = Path(os.environ.get("ALIGN_HOME") or Path.home() / ".cache" / "align").expanduser()


def install_fake_asset(home: Path, spec: AssetSpec, files: dict[str, bytes]) -> Path:
    """Files of ``spec`` under ``home`` with the manifest ``align assets pull`` would write."""
    root = home / spec.root
    for rel, data in files.items():
        (root / rel).parent.mkdir(parents=True, exist_ok=True)
        (root / rel).write_bytes(data)
    manifest = {"name": spec.name, "version": spec.version,
                "files": {rel: file_sha256(root / rel) for rel in files}}
    (home / "manifests").mkdir(parents=True, exist_ok=True)
    (home / "manifests" / f"{spec.name}.json").write_text(json.dumps(manifest))
    return root


def damage(path: Path) -> None:
    data = bytearray(path.read_bytes())
    data[len(data) // 2] ^= 0xFF
    path.write_bytes(bytes(data))
    os.utime(path, ns=(1, 1))  # a new mtime for sure, as any real edit gives


def one_line(err: BaseException) -> str:
    text = str(err)
    assert text and "\n" not in text, text
    return text


@pytest.fixture
def fake_weights(isolated_home: Path, monkeypatch: pytest.MonkeyPatch) -> tuple[Registry, Path]:
    import hashlib

    blob = b"pretend weights " * 100
    spec = AssetSpec(name="fake-weights", version="1", root="weights/fake", sources=(),
                     sha256={"w.bin": hashlib.sha256(blob).hexdigest()})
    monkeypatch.setitem(CATALOG, spec.name, spec)
    root = install_fake_asset(isolated_home, spec, {"w.bin": blob})
    registry: Registry = Registry("encoders")
    registry.add("fake:enc", lambda: None, weights=spec.name, weights_sha256=spec.sha256["w.bin"])
    return registry, root / "w.bin"


def test_fingerprint_is_the_hash_of_the_file_on_disk(fake_weights: tuple[Registry, Path]) -> None:
    from align.features.cache import weights_fingerprint

    registry, path = fake_weights
    assert weights_fingerprint(registry, "fake:enc") == file_sha256(path)


def test_damaged_packaged_weights_are_a_one_line_error_naming_file_and_pull(
        fake_weights: tuple[Registry, Path]) -> None:
    """The catalogue's hash alone would put features of the damaged file under the genuine key."""
    from align.features.cache import weights_fingerprint

    registry, path = fake_weights
    damage(path)
    with pytest.raises(AssetVerificationError) as caught:
        weights_fingerprint(registry, "fake:enc")
    message = one_line(caught.value)
    assert str(path) in message and "align assets pull" in message


def test_file_hash_is_memoised_by_size_and_mtime(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import align.assets.hashing as hashing

    path = tmp_path / "w.bin"
    path.write_bytes(b"a" * 1000)
    opened: list[str] = []
    real_open = open
    monkeypatch.setattr(hashing, "open", lambda p, mode="r": opened.append(str(p)) or real_open(p, mode),
                        raising=False)
    first = file_sha256(path)
    assert file_sha256(path) == first and len(opened) == 1  # hashed once
    damage(path)
    assert file_sha256(path) != first and len(opened) == 2  # a changed file is hashed again


def test_damaged_mobilenet_checkpoint_is_refused(isolated_home: Path) -> None:
    """End to end with the real packaged checkpoint (copied): flipped bytes never load."""
    spec = CATALOG["mobilenet_v2.imagenet1k_v1"]
    (rel,) = spec.sha256
    source = REAL_HOME / spec.root / rel
    if not source.is_file():
        pytest.skip("mobilenet_v2.imagenet1k_v1 not pulled; `align assets pull mobilenet_v2.imagenet1k_v1`")
    root = isolated_home / spec.root
    root.mkdir(parents=True)
    shutil.copyfile(source, root / rel)
    install_fake_asset(isolated_home, spec, {})
    (isolated_home / "manifests" / f"{spec.name}.json").write_text(
        json.dumps({"name": spec.name, "version": spec.version, "files": dict(spec.sha256)}))
    damage(root / rel)
    from align.features.cache import FeatureCache, image_features
    from align.registry import VISION_ENCODERS

    with pytest.raises(AssetVerificationError) as caught:
        VISION_ENCODERS.create("torchvision:mobilenet_v2.imagenet1k_v1")
    assert str(root / rel) in one_line(caught.value) and "align assets pull" in str(caught.value)
    with pytest.raises(AssetVerificationError):
        image_features("torchvision:mobilenet_v2.imagenet1k_v1", None,  # type: ignore[arg-type]
                       cache=FeatureCache(isolated_home / "features"), progress=False)
    assert not (isolated_home / "features").exists()


# ---- nothing from the cache is unpickled -----------------------------------------------------------

class Payload:
    """A pickle that would create ``marker`` when loaded by ``pickle.load``."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self):  # noqa: ANN204
        return (os.system, (f"touch {self.marker}",))


def evil_pickle(path: Path, marker: Path) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    with gzip.open(path, "wb") as f:
        pickle.dump(((Payload(marker), [1]), ([0.0], [1]), ([0.0], [1])), f)
    return path


def test_replaced_mnist_asset_never_runs_code(isolated_home: Path, tmp_path: Path) -> None:
    from align.registry import DATASETS

    spec = CATALOG["mnist"]
    marker = tmp_path / "pwned"
    root = isolated_home / spec.root
    evil_pickle(root / "mnist.pkl.gz", marker)
    (isolated_home / "manifests").mkdir(parents=True)
    (isolated_home / "manifests" / "mnist.json").write_text(
        json.dumps({"name": "mnist", "version": spec.version, "files": dict(spec.sha256)}))
    before = (root / "mnist.pkl.gz").read_bytes()
    with pytest.raises(AssetVerificationError) as caught:
        DATASETS.create("mnist").load("train")
    assert "mnist.pkl.gz" in one_line(caught.value)
    assert not marker.exists()
    assert (root / "mnist.pkl.gz").read_bytes() == before  # nothing lost either


def test_mnist_reader_refuses_code_even_from_a_user_folder(tmp_path: Path) -> None:
    """``mnist(root=...)`` is not checked against the catalogue, and still never unpickles code."""
    from align.data.mnist import MNIST

    marker = tmp_path / "pwned"
    evil_pickle(tmp_path / "data" / "mnist.pkl.gz", marker)
    with pytest.raises(BadInputError) as caught:
        MNIST(tmp_path / "data").load("train")
    assert "mnist.pkl.gz" in one_line(caught.value) and "posix.system" in str(caught.value)
    assert not marker.exists()


def test_no_unsafe_loading_anywhere_in_align() -> None:
    """pickle.load, np.load(allow_pickle=True) and torch.load without weights_only=True are banned."""
    import re

    root = Path(__file__).resolve().parents[2] / "align"
    # a call, not a mention in a docstring (``torch.load(...``); weights_only=True anywhere later on the line
    # (``torch.load(str(path), weights_only=True)`` has a ")" before it)
    unsafe = re.compile(r"(?<!``)(?:pickle\.loads?\(|allow_pickle\s*=\s*True|torch\.load\((?!.*weights_only=True))")
    offenders = [f"{p.relative_to(root.parent)}:{n}" for p in root.rglob("*.py")
                 for n, line in enumerate(p.read_text().split("\n"), 1) if unsafe.search(line)]
    assert offenders == []


def test_asset_errors_are_align_errors() -> None:
    assert issubclass(AssetVerificationError, AlignError)


def test_hub_offline_is_restored_after_the_block(monkeypatch: pytest.MonkeyPatch) -> None:
    import huggingface_hub.constants as constants

    from align.assets.offline import hub_offline

    monkeypatch.delenv("HF_HUB_OFFLINE", raising=False)
    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", False)
    with hub_offline():
        assert constants.HF_HUB_OFFLINE and os.environ["HF_HUB_OFFLINE"] == "1"
    assert not constants.HF_HUB_OFFLINE and "HF_HUB_OFFLINE" not in os.environ
