"""The feature cache: reuse, invalidation by key, resume after interruption, refusal of NaN."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import pytest
import torch
from PIL import Image

from align.data.base import DatasetSplit
from align.errors import BadInputError
from align.features.cache import FeatureCache, FeatureKey, image_features, text_features


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
