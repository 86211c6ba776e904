"""The feature cache: reuse, invalidation by key, resume after interruption, refusal of NaN, every
shard verified before use, and keys naming the weights really loaded."""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import pytest
import torch
from PIL import Image

from align.data.base import DatasetSplit
from align.errors import BadInputError
from align.features.cache import FeatureCache, FeatureKey, image_features, text_features
from align.registry import TEXT_ENCODERS


def key(**changes: object) -> FeatureKey:
    base = FeatureKey("toy:enc", "abc", "{}", "toyset", "1", "test", "image")
    return dataclasses.replace(base, **changes)


class Counter:
    """An embed_batch that records which rows it computed and can fail on demand."""

    def __init__(self, dim: int = 4, fail_from: int | None = None) -> None:
        self.rows: list[int] = []
        self.dim, self.fail_from = dim, fail_from

    def __call__(self, start: int, stop: int) -> torch.Tensor:
        if self.fail_from is not None and stop > self.fail_from:
            raise KeyboardInterrupt
        self.rows.extend(range(start, stop))
        return torch.arange(start, stop, dtype=torch.float32)[:, None].repeat(1, self.dim)


def test_second_call_reads_the_cache(tmp_path: Path) -> None:
    cache = FeatureCache(tmp_path, shard_size=4)
    first = Counter()
    features = cache.compute(key(), 10, first, batch_size=3, progress=False)
    assert features.shape == (10, 4) and first.rows == list(range(10))
    again = Counter()
    assert torch.equal(cache.compute(key(), 10, again, progress=False), features)
    assert again.rows == []


@pytest.mark.parametrize("field,value", [("weights_sha256", "other"), ("preprocessing", '{"size": 1}'),
                                         ("dataset_version", "2"), ("split", "train"), ("encoder", "toy:other")])
def test_any_key_change_recomputes(tmp_path: Path, field: str, value: str) -> None:
    cache = FeatureCache(tmp_path, shard_size=4)
    cache.compute(key(), 6, Counter(), progress=False)
    changed = Counter()
    cache.compute(key(**{field: value}), 6, changed, progress=False)
    assert changed.rows == list(range(6))


def test_interrupted_run_resumes_at_the_first_missing_shard(tmp_path: Path) -> None:
    cache = FeatureCache(tmp_path, shard_size=4)
    with pytest.raises(KeyboardInterrupt):
        cache.compute(key(), 10, Counter(fail_from=9), batch_size=2, progress=False)
    assert cache.load(key()) is None  # no index: not complete
    resumed = Counter()
    features = cache.compute(key(), 10, resumed, batch_size=2, progress=False)
    assert resumed.rows == [8, 9]  # shards 0 and 1 came from disk
    assert torch.equal(features[:, 0], torch.arange(10, dtype=torch.float32))


def test_nan_features_are_refused_and_not_cached(tmp_path: Path) -> None:
    cache = FeatureCache(tmp_path, shard_size=4)
    with pytest.raises(BadInputError, match="NaN"):
        cache.compute(key(), 3, lambda a, b: torch.full((b - a, 2), float("nan")), progress=False)
    assert list(tmp_path.rglob("*.safetensors")) == []


def toy_split(version: str = "1") -> DatasetSplit:
    colours = [(255, 0, 0), (0, 255, 0), (0, 0, 255), (250, 250, 0), (0, 0, 0)]
    return DatasetSplit(dataset="toyset", split="test", version=version, num_items=len(colours),
                        load_image=lambda i: Image.new("RGB", (32, 32), colours[i]))


def test_image_features_from_a_registered_encoder(tmp_path: Path) -> None:
    cache = FeatureCache(tmp_path)
    features = image_features("toy:cnn", toy_split(), cache=cache, progress=False)
    assert features.shape[0] == 5 and torch.isfinite(features).all()
    assert torch.equal(image_features("toy:cnn", toy_split(), cache=cache, progress=False), features)
    assert len(list(tmp_path.rglob("index.json"))) == 1
    image_features("toy:cnn", toy_split(version="2"), cache=cache, progress=False)
    assert len(list(tmp_path.rglob("index.json"))) == 2


def test_text_features_are_keyed_by_content(tmp_path: Path) -> None:
    cache = FeatureCache(tmp_path)
    a = text_features("toy:text", ["a cat", "a dog"], dataset="toyset", version="1", split="test",
                      cache=cache, progress=False)
    b = text_features("toy:text", ["a cat", "a bird"], dataset="toyset", version="1", split="test",
                      cache=cache, progress=False)
    assert a.shape == b.shape and torch.equal(a[0], b[0]) and not torch.equal(a[1], b[1])
    assert len(list(tmp_path.rglob("index.json"))) == 2



def test_repeated_texts_are_embedded_once(tmp_path: Path) -> None:
    """Class-name fit captions repeat a few strings thousands of times: each distinct one is encoded
    once, every input still gets its own row, and the cache keeps only the distinct rows."""
    seen: list[str] = []

    class Counting:
        def __init__(self) -> None:
            self.inner = TEXT_ENCODERS.create("toy:text")

        def encode_text(self, texts, batch_size=64):  # noqa: ANN001, ANN201
            seen.extend(texts)
            return self.inner.encode_text(texts, batch_size=batch_size)

    texts = ["a cat", "a dog", "a cat", "a cat", "a bird", "a dog"]
    cache = FeatureCache(tmp_path)
    args = dict(dataset="toyset", version="1", split="test", cache=cache, progress=False)
    repeated = text_features("toy:text", texts, make_encoder=Counting, **args)
    distinct = text_features("toy:text", ["a cat", "a dog", "a bird"], make_encoder=Counting, **args)
    assert seen == ["a cat", "a dog", "a bird"]  # the second call is a cache hit on the same distinct list
    assert repeated.shape[0] == len(texts)
    for i, text in enumerate(texts):
        assert torch.equal(repeated[i], distinct[["a cat", "a dog", "a bird"].index(text)])
    assert len(list(tmp_path.rglob("index.json"))) == 1


# ---- verification: every shard is checked before it is used --------------------------------------

def shards_of(root: Path) -> list[Path]:
    return sorted(root.rglob("shard-*.safetensors"))


def flip_last_byte(path: Path) -> None:
    data = bytearray(path.read_bytes())
    data[-1] ^= 0x40  # inside the tensor data: the file still parses
    path.write_bytes(bytes(data))


def test_flipped_bytes_in_a_shard_are_recomputed_not_used(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    cache = FeatureCache(tmp_path, shard_size=4)
    genuine = cache.compute(key(), 10, Counter(), progress=False)
    flip_last_byte(shards_of(tmp_path)[1])
    again = Counter()
    with caplog.at_level("WARNING"):
        features = cache.compute(key(), 10, again, progress=False)
    assert torch.equal(features, genuine)  # not the flipped value
    assert again.rows == [4, 5, 6, 7]  # only the damaged shard was computed again
    warnings = [r.getMessage() for r in caplog.records if "shard-00001" in r.getMessage()]
    assert warnings and all("\n" not in w for w in warnings)
    assert torch.equal(cache.load(key()), genuine)  # and the entry is whole again


def test_truncated_shard_is_a_recompute_not_a_traceback(tmp_path: Path) -> None:
    cache = FeatureCache(tmp_path, shard_size=4)
    genuine = cache.compute(key(), 10, Counter(), progress=False)
    shard = shards_of(tmp_path)[0]
    shard.write_bytes(shard.read_bytes()[:40])
    assert cache.load(key()) is None
    assert torch.equal(cache.compute(key(), 10, Counter(), progress=False), genuine)


@pytest.mark.parametrize("garbage", [b"", b"{not json", b"[]", b'{"shards": ["../../x"], "sha256": {}}'])
def test_garbage_index_is_a_recompute(tmp_path: Path, garbage: bytes) -> None:
    cache = FeatureCache(tmp_path, shard_size=4)
    genuine = cache.compute(key(), 10, Counter(), progress=False)
    next(tmp_path.rglob("index.json")).write_bytes(garbage)
    assert cache.load(key()) is None
    again = Counter()
    assert torch.equal(cache.compute(key(), 10, again, progress=False), genuine)
    assert again.rows == []  # the shards verified against their own headers: nothing recomputed


def test_lost_index_does_not_reindex_a_damaged_shard(tmp_path: Path) -> None:
    cache = FeatureCache(tmp_path, shard_size=4)
    genuine = cache.compute(key(), 10, Counter(), progress=False)
    next(tmp_path.rglob("index.json")).unlink()
    flip_last_byte(shards_of(tmp_path)[0])
    resumed = Counter()
    features = cache.compute(key(), 10, resumed, progress=False)
    assert torch.equal(features, genuine)
    assert resumed.rows == [0, 1, 2, 3]


def test_a_shard_from_another_entry_is_not_reused_on_resume(tmp_path: Path) -> None:
    cache = FeatureCache(tmp_path, shard_size=4)
    cache.compute(key(), 4, Counter(), progress=False)
    other = key(split="train")
    folder = other.folder(tmp_path)
    folder.mkdir(parents=True)
    shards_of(tmp_path)[0].rename(folder / "shard-00000.safetensors")  # moved, not written for this key
    resumed = Counter(dim=4)
    cache.compute(other, 4, resumed, progress=False)
    assert resumed.rows == [0, 1, 2, 3]


def test_float16_storage_is_verified_too(tmp_path: Path) -> None:
    cache = FeatureCache(tmp_path, shard_size=4)
    genuine = cache.compute(key(modality="image-tokens-float16"), 6, Counter(), progress=False, dtype=torch.float16)
    assert genuine.dtype == torch.float16
    flip_last_byte(shards_of(tmp_path)[1])
    again = cache.compute(key(modality="image-tokens-float16"), 6, Counter(), progress=False, dtype=torch.float16)
    assert torch.equal(again, genuine) and again.dtype == torch.float16


def test_index_records_the_sha256_of_every_shard(tmp_path: Path) -> None:
    import hashlib
    import json

    cache = FeatureCache(tmp_path, shard_size=4)
    cache.compute(key(), 10, Counter(), progress=False)
    index = json.loads(next(tmp_path.rglob("index.json")).read_text())
    assert index["sha256"] == {p.name: hashlib.sha256(p.read_bytes()).hexdigest() for p in shards_of(tmp_path)}


# ---- weights: the key names the files really loaded ----------------------------------------------

def tiny_clip_weights(path: Path, scale: float) -> Path:
    from align.encoders.open_clip_models import load_open_clip

    model, _, _ = load_open_clip("align-tiny-clip")
    torch.save({k: v * scale for k, v in model.state_dict().items()}, path)
    return path


def test_two_weight_files_never_share_a_cache_entry(tmp_path: Path) -> None:
    """Features from one weight file must never be served for another under the same encoder name."""
    from align.registry import VISION_ENCODERS

    cache = FeatureCache(tmp_path / "cache")
    name = "open_clip:align-tiny-clip"
    first = VISION_ENCODERS.create(name, pretrained=str(tiny_clip_weights(tmp_path / "a.pt", 1.0)))
    second = VISION_ENCODERS.create(name, pretrained=str(tiny_clip_weights(tmp_path / "b.pt", 0.5)))
    a = image_features(name, toy_split(), cache=cache, encoder=first, progress=False)
    b = image_features(name, toy_split(), cache=cache, encoder=second, progress=False)
    assert not torch.allclose(a, b)
    assert torch.allclose(b, second.encode_images([toy_split().load_image(i) for i in range(5)]), atol=1e-5)


def test_text_features_are_filed_under_the_weights_really_loaded(tmp_path: Path) -> None:
    """The key is first guessed from the registry (no model load on a hit); once an encoder is built,
    its own record of the files it loaded decides where the features go."""

    class Scaled:
        def __init__(self, sha: str, scale: float) -> None:
            self.inner, self.weights_sha256, self.scale = TEXT_ENCODERS.create("toy:text"), sha, scale

        def encode_text(self, texts, batch_size=64):  # noqa: ANN001, ANN201
            return self.inner.encode_text(texts, batch_size=batch_size) * self.scale

    cache = FeatureCache(tmp_path)
    args = dict(dataset="toyset", version="1", split="test", cache=cache, progress=False)
    a = text_features("toy:text", ["a cat"], make_encoder=lambda: Scaled("a" * 64, 1.0), **args)
    b = text_features("toy:text", ["a cat"], make_encoder=lambda: Scaled("b" * 64, 2.0), **args)
    assert torch.allclose(b, 2 * a)
    assert {json.loads(p.read_text())["key"]["weights_sha256"] for p in tmp_path.rglob("index.json")} == \
        {"a" * 64, "b" * 64}
