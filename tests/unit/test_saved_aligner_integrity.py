"""A saved aligner is verified before it is used: every kind of damage to its ``.json`` or ``.safetensors``
is a one-line ``BadInputError`` naming the file through ``load_aligner`` (never a traceback, never an
aligner with altered numbers); files saved before checksums existed still load, with a warning."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path

import pytest
import torch

from align.checksum import seal
from align.errors import BadInputError
from align.methods.base import load_aligner
from align.registry import ALIGNERS


@pytest.fixture
def saved(tmp_path: Path) -> Path:
    torch.manual_seed(0)
    aligner = ALIGNERS.create("ridge", alpha=2.0).fit(torch.randn(12, 6), torch.randn(12, 5))
    aligner.save(tmp_path / "fit")
    return tmp_path / "fit"


def fails(path: Path, *names: str) -> str:
    with pytest.raises(BadInputError) as caught:
        load_aligner(path)
    message = str(caught.value)
    assert message and "\n" not in message, message
    for name in names:
        assert name in message, (name, message)
    return message


def test_round_trip_is_exact_and_records_checksums(saved: Path) -> None:
    meta = json.loads(saved.with_suffix(".json").read_text())
    assert {"checksum", "safetensors_sha256", "version"} <= set(meta)
    loaded = load_aligner(saved)
    probe = torch.randn(3, 6)
    assert loaded.hparams["alpha"] == 2.0 and loaded.encode_image(probe).shape == (3, 5)


def flip(path: Path, at: int) -> None:
    data = bytearray(path.read_bytes())
    data[at] ^= 0x01
    path.write_bytes(bytes(data))


def edit_json(change: Callable[[dict], object]) -> Callable[[Path], None]:
    def apply(path: Path) -> None:
        meta = json.loads(path.read_text())
        change(meta)
        path.write_text(json.dumps(meta))
    return apply


DAMAGE = {
    "tensor byte flipped": (".safetensors", lambda p: flip(p, -2), "sha256 does not match"),
    "tensors truncated": (".safetensors", lambda p: p.write_bytes(p.read_bytes()[:40]), "sha256 does not match"),
    "tensors missing": (".safetensors", Path.unlink, "missing"),
    "hyper-parameter edited": (".json", edit_json(lambda m: m["hparams"].update(alpha=3.0)), "checksum mismatch"),
    "json truncated": (".json", lambda p: p.write_bytes(p.read_bytes()[:50]), "not valid JSON"),
    "json binary garbage": (".json", lambda p: p.write_bytes(b"\x00\xff\xfe garbage"), "not valid JSON"),
    "json is a list": (".json", lambda p: p.write_text("[1, 2]"), "not an object"),
    "json missing": (".json", Path.unlink, "no saved aligner"),
    "key 'aligner' missing": (".json", edit_json(lambda m: m.pop("aligner")), "no 'aligner'"),
    "key 'hparams' missing": (".json", edit_json(lambda m: m.pop("hparams")), "no 'hparams'"),
    "dims of the wrong type": (".json", edit_json(lambda m: m.update(image_dim="six")), "'image_dim'"),
    "tensor hash removed": (".json", edit_json(lambda m: m.pop("safetensors_sha256")), "checksum"),
}


@pytest.mark.parametrize("case", list(DAMAGE))
def test_damaged_saved_aligner(saved: Path, case: str) -> None:
    suffix, damage, why = DAMAGE[case]
    damage(saved.with_suffix(suffix))
    fails(saved, saved.name, why)


def reseal(path: Path, change: Callable[[dict], object]) -> None:
    """A consistent file (checksums recomputed) with wrong content: what a buggy writer could leave."""
    meta = json.loads(path.read_text())
    change(meta)
    path.write_text(json.dumps(seal(meta)))


@pytest.mark.parametrize("change,why", [
    (lambda m: m.update(aligner="no-such-aligner"), "unknown aligners 'no-such-aligner'"),
    (lambda m: m["hparams"].update(alhpa=1.0), "unknown hyper-parameter 'alhpa'"),
    (lambda m: m.update(aligner="procrustes", hparams={}), "does not hold a fitted procrustes aligner"),
])
def test_consistent_file_with_wrong_content(saved: Path, change: Callable[[dict], object], why: str) -> None:
    reseal(saved.with_suffix(".json"), change)
    fails(saved, saved.name, why)


def make_legacy(path: Path) -> None:
    meta = json.loads(path.with_suffix(".json").read_text())
    for key in ("checksum", "safetensors_sha256", "version"):
        meta.pop(key)
    path.with_suffix(".json").write_text(json.dumps(meta))


def test_a_file_saved_before_checksums_loads_with_a_warning(saved: Path) -> None:
    make_legacy(saved)
    with pytest.warns(UserWarning, match="without checksums"):
        assert load_aligner(saved).hparams["alpha"] == 2.0


def test_a_damaged_file_saved_before_checksums_is_still_one_line(saved: Path) -> None:
    make_legacy(saved)
    tensors = saved.with_suffix(".safetensors")
    tensors.write_bytes(tensors.read_bytes()[:40])
    with pytest.warns(UserWarning):
        fails(saved, tensors.name, "not a readable safetensors file")
