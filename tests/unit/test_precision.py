"""Encoder precision: bfloat16 features stay close to float32 ones, live under their own cache key
and result identity, and float32 keys do not move."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from PIL import Image

from align.data.base import DatasetSplit
from align.errors import AlignError, BadInputError
from align.features.cache import FeatureCache, FeatureKey, image_features, text_features
from align.precision import precision_of, split_precision, with_precision
from align.registry import TEXT_ENCODERS, VISION_ENCODERS


def noise_split(n: int = 6) -> DatasetSplit:
    rng = np.random.default_rng(0)
    images = [Image.fromarray(rng.integers(0, 256, (32, 32, 3), dtype=np.uint8)) for _ in range(n)]
    return DatasetSplit(dataset="toyset", split="test", version="1", num_items=n, load_image=lambda i: images[i])


def test_float32_feature_key_is_pinned() -> None:
    """The digest of a float32 key is what it was before precisions existed: old caches stay valid."""
    key = FeatureKey("toy:enc", "abc", "{}", "toyset", "1", "test", "image")
    assert key.digest() == "de0635c6a5126b3607afd266a31e6e71ce6f299918186e3560867686c291ec08"


def test_names_carry_only_non_default_precisions() -> None:
    assert with_precision("toy:cnn", "float32") == "toy:cnn"
    assert with_precision("toy:cnn", "bfloat16") == "toy:cnn@bfloat16"
    assert with_precision("toy:cnn@bfloat16", "float32") == "toy:cnn@bfloat16"
    assert split_precision("toy:cnn@bfloat16") == ("toy:cnn", "bfloat16")
    assert split_precision("hf:/home/me@host/model") == ("hf:/home/me@host/model", "float32")


@pytest.mark.parametrize("call", [lambda: with_precision("toy:cnn", "bf16"),
                                  lambda: VISION_ENCODERS.create("toy:cnn@half"),
                                  lambda: split_precision("toy:cnn@float32")])
def test_bad_precision_is_a_one_line_error_naming_it(call: object) -> None:
    with pytest.raises(BadInputError) as err:
        call()  # type: ignore[operator]
    message = str(err.value)
    assert "\n" not in message and ("bf16" in message or "half" in message or "float32" in message)


def test_registry_builds_a_bfloat16_encoder_with_the_same_weights() -> None:
    plain, bf16 = VISION_ENCODERS.create("toy:cnn"), VISION_ENCODERS.create("toy:cnn@bfloat16")
    assert precision_of(plain) == "float32" and precision_of(bf16) == "bfloat16"
    assert VISION_ENCODERS.meta("toy:cnn@bfloat16").name == "toy:cnn@bfloat16"
    for a, b in zip(plain.state_dict().values(), bf16.state_dict().values()):
        assert torch.equal(a, b)
    assert bf16.trunk[0].weight.is_contiguous(memory_format=torch.channels_last)
    assert plain.trunk[0].weight.is_contiguous()  # float32 untouched


def test_bfloat16_features_are_close_but_cached_apart(tmp_path: Path) -> None:
    cache = FeatureCache(tmp_path)
    fp32 = image_features("toy:cnn", noise_split(), cache=cache, progress=False)
    bf16 = image_features("toy:cnn@bfloat16", noise_split(), cache=cache, progress=False)
    assert fp32.dtype == bf16.dtype == torch.float32
    assert not torch.equal(fp32, bf16)  # really computed in bfloat16
    assert float(F.cosine_similarity(fp32, bf16).min()) > 0.99
    folders = sorted(p.parent.relative_to(tmp_path).parts[0] for p in tmp_path.rglob("index.json"))
    assert folders == ["toy__cnn", "toy__cnn_bfloat16"]
    # the float32 entry sits where it always did: under the key built without any precision
    encoder = VISION_ENCODERS.create("toy:cnn")
    expected = FeatureKey("toy:cnn", encoder.weights_sha256 or _weights("toy:cnn"),
                          _preprocessing(encoder), "toyset", "1", "test", "image")
    assert (expected.folder(tmp_path) / "index.json").is_file()


def test_bfloat16_text_features_are_cached_apart(tmp_path: Path) -> None:
    cache = FeatureCache(tmp_path)
    texts = ["a red cat", "a blue dog", "three birds"]
    common = dict(dataset="toyset", version="1", split="test", cache=cache, progress=False)
    fp32 = text_features("toy:text", texts, **common)
    bf16 = text_features("toy:text@bfloat16", texts, **common)
    assert float(F.cosine_similarity(fp32, bf16).min()) > 0.99
    assert len(list(tmp_path.rglob("index.json"))) == 2
    assert precision_of(TEXT_ENCODERS.create("toy:text@bfloat16")) == "bfloat16"


def test_registering_a_name_with_the_separator_is_refused() -> None:
    with pytest.raises(ValueError, match="reserved"):
        VISION_ENCODERS.add("toy:odd@name", lambda: None)


def test_unknown_base_name_is_still_unknown() -> None:
    with pytest.raises(AlignError, match="toy:nope"):
        VISION_ENCODERS.meta("toy:nope@bfloat16")


def _weights(name: str) -> str | None:
    from align.features.weights import weights_fingerprint

    return weights_fingerprint(VISION_ENCODERS, name)


def _preprocessing(encoder: object) -> str:
    import dataclasses
    import json

    return json.dumps(dataclasses.asdict(encoder.data_config), sort_keys=True)  # type: ignore[attr-defined]
